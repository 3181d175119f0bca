"""What the agent says: the report of a run and the notes it shows for bad input. The answer
prompt itself is SEAL's (agent/core/answering.py), so chat answers are scored the way evals are."""

from __future__ import annotations

from agent.graph.state import AgentState

CONVERSATION_TITLE = "our conversation"
READ_ONLY = (
    "learning is unavailable: the state folder is read-only here (another process holds its "
    "writer lock, or the folder cannot be written); I answer and retrieve meanwhile"
)
NOTHING_TO_LEARN = (
    "nothing new to learn from the conversation: state facts first (for example "
    "'our office moved to Lyon'), then /learn"
)


def report_text(state: AgentState) -> str:
    """One short paragraph: what was stored, what the gate decided and why, and the update."""
    lines = list(state.get("notes") or [])
    documents = {d["id"]: d for d in state.get("documents") or []}
    for g in state.get("gate") or []:
        doc = documents.get(g["document_id"])
        name = f"'{doc['title']}' (document {g['document_id']})" if doc else "it"
        verb = "learning" if g["decision"] == "learn" else "not learning"
        lines.append(f"{name}: {verb}: {g['reason']}")
    learning = any(g["decision"] == "learn" for g in state.get("gate") or [])
    update = state.get("update")
    if update:
        if update["decision"] == "accept":
            lines.append(
                f"learned: adapter v{update['version']} committed in {update['seconds']:.0f} s "
                f"({update['reason']})"
            )
        else:
            lines.append(f"not learned, rolled back: {update['reason']}")
    elif learning and state.get("defer_learning"):
        lines.append("learning in the background; I answer with the current adapter meanwhile")
    return "\n".join(lines) or "nothing to do"
