"""The agent graph: which node runs next is a pure function of the state.

    START -route_request-> ingest | retrieve | self_edit
    retrieve -route_after_retrieve-> answer (a question) | ingest (a stated fact or correction)
    ingest -route_after_ingest-> gate | report
    gate -route_after_gate-> self_edit | report (nothing to learn, or learning is deferred to
                                                 the background worker, which runs "train")
    self_edit -route_after_self_edit-> update | report
    update -> report;  answer, report -> END

`builder` is the unbuilt graph, so tests compile it with an in-memory checkpointer; `seal chat`
compiles it with a SQLite checkpointer in the state folder.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agent.graph import nodes
from agent.graph.context import AgentContext
from agent.graph.state import AgentState, Request


def route_request(state: AgentState) -> str:
    request = state.get("request", "ask")
    if request in ("feed", "learn"):
        return "ingest"
    if request == "train":
        return "self_edit"
    return "retrieve"


def route_after_retrieve(state: AgentState) -> str:
    return "ingest" if state.get("statement") else "answer"


def route_after_ingest(state: AgentState) -> str:
    return "gate" if state.get("documents") else "report"


def route_after_gate(state: AgentState) -> str:
    learn = any(g["decision"] == "learn" for g in state.get("gate") or [])
    return "self_edit" if learn and not state.get("defer_learning") else "report"


def route_after_self_edit(state: AgentState) -> str:
    material = state.get("material")
    return "update" if material and material["sequences"] else "report"


def turn(request: Request, **fields) -> dict:
    """The input of one run: the request, with the previous run's per-run fields cleared (the
    conversation, `rag` and `learned_upto` carry over through the checkpointer)."""
    cleared = dict(
        source="",
        documents=[],
        passages=[],
        statement=None,
        gate=[],
        material=None,
        update=None,
        notes=[],
    )
    return cleared | {"request": request} | fields


def build_builder() -> StateGraph:
    graph = StateGraph(AgentState, context_schema=AgentContext)
    for name in ("ingest", "retrieve", "answer", "gate", "self_edit", "update", "report"):
        graph.add_node(name, getattr(nodes, name))
    graph.add_conditional_edges(START, route_request, ["ingest", "retrieve", "self_edit"])
    graph.add_conditional_edges("retrieve", route_after_retrieve, ["answer", "ingest"])
    graph.add_conditional_edges("ingest", route_after_ingest, ["gate", "report"])
    graph.add_conditional_edges("gate", route_after_gate, ["self_edit", "report"])
    graph.add_conditional_edges("self_edit", route_after_self_edit, ["update", "report"])
    graph.add_edge("update", "report")
    graph.add_edge("answer", END)
    graph.add_edge("report", END)
    return graph


builder = build_builder()


def build_graph(checkpointer=None):
    """The compiled graph; `checkpointer` keeps conversations (None: nothing is kept)."""
    return builder.compile(checkpointer=checkpointer)
