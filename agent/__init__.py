"""The self-adapting agent. agent.core is the foundation under everything; the rest of agent
(procedures, the graph, chat, ingest, the CLI) builds on stores and policies, never on evals."""
