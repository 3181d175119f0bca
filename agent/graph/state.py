"""What changes during a run of the agent graph, and nothing else (the model, stores and config
are in the context). Checkpointed after every node, so a conversation resumes after a restart."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

# ask: a chat message (a question, or a statement of fact); feed: a file, folder or URL;
# learn: the conversation so far (/learn); train: self-edit and update documents already gated
# (what the background worker runs).
Request = Literal["ask", "feed", "learn", "train"]


class DocumentRef(TypedDict):
    id: int
    title: str
    passages: int


class Hit(TypedDict):
    passage_id: int
    document_id: int
    text: str
    similarity: float
    status: str  # the document's ledger status: stored, self_edited, learned, rejected, ...


class Gate(TypedDict):
    document_id: int
    decision: str  # learn | skip
    reason: str


class Material(TypedDict):
    document_ids: list[int]
    self_edit_ids: list[int]
    sequences: list[str]
    passage_texts: list[str]


class Update(TypedDict):
    decision: str  # accept | rollback
    reason: str
    version: int | None
    parent: int
    seconds: float


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    request: Request
    source: str  # feed: the path or URL
    rag: bool  # /rag on|off: answer with retrieved passages
    defer_learning: bool  # stop after the gate; a background worker learns (request "train")
    learned_upto: int  # messages[:learned_upto] were already offered to the gate as a document
    documents: list[DocumentRef]  # stored in this run (or, for "train", to learn)
    passages: list[Hit]  # retrieved for the question
    statement: str | None  # the fact or correction the user's message states, if any
    gate: list[Gate]  # one decision per document
    material: Material  # the self-edits the update trains on
    update: Update
    notes: list[str]  # one-line messages for the user (bad input, duplicates, skipped files)
