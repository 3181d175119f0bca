"""The agent as a LangGraph graph: state (what changes during a run), context (model, stores,
config), nodes, routing, and the unbuilt builder (`graph.builder`)."""

from agent.graph.context import AgentContext
from agent.graph.graph import build_graph, builder
from agent.graph.state import AgentState

__all__ = ["AgentContext", "AgentState", "build_graph", "builder"]
