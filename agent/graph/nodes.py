"""The agent graph's nodes. Each takes the graph state and the run's context (model runtime,
stores, config) and returns a partial update of the state.

ingest -> gate -> self_edit -> update -> report   (a fed document, or facts from the chat)
retrieve -> answer                                 (a question)
"""

from __future__ import annotations

import dataclasses
import time

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from agent.core.answering import Question, answer_logprobs, first_line, question_prompt
from agent.core.config import NetworkConfig
from agent.documents import DocumentError, is_url, read_source
from agent.graph.context import AgentContext
from agent.graph.prompts import CONVERSATION_TITLE, NOTHING_TO_LEARN, READ_ONLY, report_text
from agent.graph.state import AgentState, DocumentRef, Gate, Hit, Material, Update
from agent.learn import add_probes, self_edit_documents
from agent.update import NewMaterial, run_update
from agent.web import policy_of
from policies.gate import (
    GateInputs,
    GateThresholds,
    decide_learning,
    detect_statement,
    gate_record,
    novelty_of,
    statement_probes,
)
from policies.routing import answering_weights, answers_with_adapter

BUDGET_WINDOW_S = 3600.0  # chat.update_minutes_per_hour is a rolling hour


def last_user_text(state: AgentState) -> str:
    for message in reversed(state.get("messages") or []):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return ""


def conversation_statements(state: AgentState) -> list[str]:
    """What the user stated since the conversation was last offered to the gate: detected facts
    and corrections, plus (asked with /learn) any other sentence that is not a question."""
    messages = (state.get("messages") or [])[state.get("learned_upto", 0) :]
    statements = []
    for message in messages:
        if not isinstance(message, HumanMessage):
            continue
        text = " ".join(str(message.content).split())
        found = detect_statement(text)
        if found:
            statements.append(found.text)
        elif len(text.split()) >= 3 and not text.endswith("?") and not text.startswith("/"):
            statements.append(text if text[-1] in ".!" else text + ".")
    return statements


# ------------------------------------------------------------------ ingest
def _sources(
    state: AgentState, network: NetworkConfig
) -> tuple[list[tuple[str, str, str | None, str]], list[str]]:
    """(text, source kind, uri, title) of what this run stores, and notes for what it cannot.
    A URL reaches only the addresses the `network` config section allows."""
    request = state.get("request")
    if request == "feed":
        try:
            documents, errors = read_source(state["source"], policy_of(network))
        except DocumentError as exc:
            return [], [str(exc)]
        kind = "url" if is_url(str(state["source"])) else "file"
        return [(d.text, kind, d.uri, d.title) for d in documents], [str(e) for e in errors]
    statements = (
        conversation_statements(state) if request == "learn" else [state.get("statement") or ""]
    )
    text = " ".join(s for s in statements if s)
    if not text:
        return [], [NOTHING_TO_LEARN]
    return [(text, "conversation", None, CONVERSATION_TITLE)], []


def ingest(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Store a document (file, folder, URL, or the user's statements) in the ledger, as passages
    and as vectors; duplicates of a learned document are noted and not stored again."""
    ctx = runtime.context
    conversation = state.get("request") != "feed"
    done = {"learned_upto": len(state.get("messages") or [])} if conversation else {}
    if ctx.state.read_only:
        return {"documents": [], "notes": [READ_ONLY]} | done
    items, notes = _sources(state, ctx.cfg.network)
    refs: list[DocumentRef] = []
    for text, source, uri, title in items:
        stored = ctx.state.add_document(
            text,
            source=source,
            namespace=ctx.cfg.store.namespace,
            passage_words=ctx.cfg.store.passage_words,
            uri=uri,
            title=title,
        )
        name = uri or f"'{text[:60]}'"
        if stored.duplicate_of is not None:
            doc = ctx.state.ledger.document(stored.duplicate_of)
            if doc["status"] == "learned":
                notes.append(f"{name} is already known as document {doc['id']} (learned)")
                continue
            notes.append(f"{name} is already stored as document {doc['id']} ({doc['status']})")
            passages = len(ctx.state.ledger.passages(doc["id"]))
            refs.append(DocumentRef(id=doc["id"], title=doc["title"] or title, passages=passages))
            continue
        notes.append(
            f"stored {name} as document {stored.document_id} ({len(stored.passage_ids)} passages)"
        )
        refs.append(
            DocumentRef(id=stored.document_id, title=title, passages=len(stored.passage_ids))
        )
    return {"documents": refs, "notes": notes} | done


# ------------------------------------------------------------------ gate
def _nearest(ctx: AgentContext, doc_id: int) -> tuple[float, int | None]:
    """Highest similarity of the document's passages to another document's, and that one."""
    best, nearest = 0.0, None
    for passage in ctx.state.ledger.passages(doc_id):
        for hit in ctx.state.passages.query(
            ctx.cfg.store.namespace, passage["text"], k=1, exclude_document_ids=[doc_id]
        ):
            if hit.similarity > best:
                best, nearest = hit.similarity, hit.document_id
    return best, nearest


def _probe_logprob(ctx: AgentContext, doc_id: int, title: str) -> float | None:
    """Mean log p(answer) per token of the document's probes, closed-book, with the current
    adapter. Probes are made (and kept) here when the document has none, so the update later
    measures itself on the same questions."""

    ledger, cfg = ctx.state.ledger, ctx.cfg
    add_probes(ctx.state, ctx.runtime, cfg, doc_id, title, fallback=statement_probes)
    probes = ledger.probes(doc_id)
    if not probes:
        return None
    questions = [Question(p["question"], p["answer"], title) for p in probes]
    scores = answer_logprobs(ctx.runtime, questions, cfg.eval)
    return sum(scores) / len(scores)


def _seconds_spent(ctx: AgentContext) -> float:
    since = ctx.clock() - BUDGET_WINDOW_S
    return sum(
        row["seconds"] or 0.0
        for row in ctx.state.ledger.history(200)
        if row["kind"] == "update" and row["at"] >= since
    )


def gate(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Decide per document whether to self-edit and update (policies/gate.py); every decision
    and its inputs go to the ledger as a `gate` event, shown by /history and `seal history`."""
    ctx = runtime.context
    chat = ctx.cfg.chat
    thresholds = GateThresholds(chat.min_novelty, chat.known_logprob)
    budget_left = chat.update_minutes_per_hour * 60 - _seconds_spent(ctx)
    decisions: list[Gate] = []
    for doc in state.get("documents") or []:
        similarity, nearest = _nearest(ctx, doc["id"])
        inputs = GateInputs(
            novelty=novelty_of([similarity]),
            nearest_document=nearest,
            nearest_learned=nearest is not None
            and ctx.state.ledger.document(nearest)["status"] == "learned",
            probe_logprob=_probe_logprob(ctx, doc["id"], doc["title"]),
            estimated_seconds=doc["passages"] * chat.seconds_per_passage,
            budget_left_seconds=budget_left,
            requested=state.get("request") == "learn",
        )
        decision = decide_learning(inputs, thresholds)
        ctx.state.ledger.add_event("gate", f"document {doc['id']}", gate_record(inputs, decision))
        if decision.learn:
            budget_left -= inputs.estimated_seconds
        decisions.append(
            Gate(document_id=doc["id"], decision=decision.decision, reason=decision.reason)
        )
    return {"gate": decisions}


# ------------------------------------------------------------------ learn
def self_edit(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Write a self-edit of every passage of the documents the gate chose (agent/learn.py)."""

    ctx = runtime.context
    chosen = [g["document_id"] for g in state.get("gate") or [] if g["decision"] == "learn"]
    titles = {d["id"]: d["title"] for d in state.get("documents") or []}
    material = self_edit_documents(
        ctx.state, ctx.runtime, ctx.cfg, chosen, titles=titles, progress=ctx.progress
    )
    return {"material": Material(**dataclasses.asdict(material))}


def update(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """The retention-gated update (agent/update.py): train a candidate adapter on the self-edits
    plus replay, check that earlier documents are kept, then commit a version or roll back."""

    ctx = runtime.context
    material = NewMaterial(**state["material"])
    ctx.progress(f"training on {len(material.sequences)} sequences (+ replay), then checking")
    result = run_update(ctx.state, ctx.runtime, ctx.cfg, material, seed=ctx.cfg.adapt.seed)
    return {
        "update": Update(
            decision=result.decision,
            reason=result.reason,
            version=result.version,
            parent=result.parent,
            seconds=result.seconds,
        )
    }


def report(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    return {"messages": [AIMessage(report_text(state))]}


# ------------------------------------------------------------------ answer
def retrieve(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """The stored passages nearest the user's message (with their document's status), and the
    fact the message states, if it states one."""
    ctx = runtime.context
    text = last_user_text(state)
    found = detect_statement(text) if ctx.cfg.chat.learn_statements else None
    hits = ctx.state.passages.query(ctx.cfg.store.namespace, text, k=ctx.cfg.chat.top_k)
    # The ledger is the source of truth: a passage of a document it does not hold (the vectors
    # of a lost ledger that `seal doctor --rebuild` could not copy) is not retrieved.
    statuses = ctx.state.ledger.document_statuses([h.document_id for h in hits])
    passages = [
        Hit(
            passage_id=h.passage_id,
            document_id=h.document_id,
            text=h.text,
            similarity=h.similarity,
            status=statuses[h.document_id],
        )
        for h in hits
        if h.document_id in statuses
    ]
    return {"passages": passages, "statement": found.text if found else None}


def answer_contexts(state: AgentState, pending_similarity: float) -> list[Hit]:
    """The passages the answer is given: all retrieved ones with RAG on; with RAG off (closed
    book), only the nearest passage of a document not learned yet (the gate chose to learn it,
    or skipped it over budget) if it is close to the question: the model cannot know it yet."""
    hits = state.get("passages") or []
    if state.get("rag"):
        return list(hits)
    return [h for h in hits if h["status"] != "learned" and h["similarity"] >= pending_similarity][
        :1
    ]


def answer(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Answer the user's message closed-book with the current adapter if something learned is
    near it, else with the base model (policies/routing.py), or with passages (see
    `answer_contexts`), streaming the text to the context's `emit` and as "custom" chunks."""

    ctx = runtime.context
    contexts = answer_contexts(state, ctx.cfg.chat.pending_rag_similarity)
    context = "\n\n".join(h["text"] for h in contexts) if contexts else None
    prompt = question_prompt(ctx.runtime, last_user_text(state), ctx.cfg.eval, context)
    start = time.perf_counter()

    def emit(text: str) -> None:
        ctx.emit(text)
        runtime.stream_writer(text)

    adapter = answers_with_adapter(state.get("passages") or [], ctx.cfg.chat.adapter_min_similarity)
    with answering_weights(ctx.runtime, adapter):
        text = ctx.runtime.stream(prompt, max_new_tokens=ctx.cfg.chat.max_answer_tokens, emit=emit)
    metadata = {
        "mode": "with retrieved passages" if contexts else "closed-book",
        "knowledge_adapter": adapter,  # False: nothing learned is near the question
        "documents": sorted({h["document_id"] for h in contexts}),
        "seconds": round(time.perf_counter() - start, 2),
    }
    return {"messages": [AIMessage(first_line(text) or "(no answer)", response_metadata=metadata)]}
