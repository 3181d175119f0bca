"""The agent graph: routing as pure functions of the state, then the compiled graph with an
in-memory checkpointer, the tiny model and a real state folder (SQLite, chromadb, adapters)."""

import dataclasses
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.core.answering import first_line, question_prompt
from agent.core.config import NetworkConfig, SealConfig
from agent.graph import AgentContext, builder
from agent.graph.graph import (
    route_after_gate,
    route_after_ingest,
    route_after_retrieve,
    route_after_self_edit,
    route_request,
    turn,
)
from agent.graph.nodes import answer_contexts, conversation_statements
from evals.adversary import empty_ledger
from policies.routing import answers_with_adapter
from stores.doctor import rebuild
from stores.state import State

PASSAGE = (
    "The capital of France is Paris. Paris is a city on the river Seine. "
    "The tower in Paris was built in 1889. Many people visit the museum every year."
)


def test_route_request():
    assert route_request({"request": "feed"}) == "ingest"
    assert route_request({"request": "learn"}) == "ingest"
    assert route_request({"request": "train"}) == "self_edit"
    assert route_request({"request": "ask"}) == "retrieve"
    assert route_request({}) == "retrieve"


def test_routes_after_retrieve_ingest_and_self_edit():
    assert route_after_retrieve({"statement": "Our office moved to Lyon."}) == "ingest"
    assert route_after_retrieve({"statement": None}) == "answer"
    assert route_after_ingest({"documents": [{"id": 1, "title": "t", "passages": 1}]}) == "gate"
    assert route_after_ingest({"documents": []}) == "report"
    assert route_after_self_edit({"material": {"sequences": ["a"]}}) == "update"
    assert route_after_self_edit({"material": {"sequences": []}}) == "report"


def test_route_after_gate_learns_now_or_defers_to_the_worker():
    learn = [{"document_id": 1, "decision": "learn", "reason": "new"}]
    skip = [{"document_id": 1, "decision": "skip", "reason": "known"}]
    assert route_after_gate({"gate": learn}) == "self_edit"
    assert route_after_gate({"gate": learn, "defer_learning": True}) == "report"
    assert route_after_gate({"gate": skip}) == "report"
    assert route_after_gate({"gate": []}) == "report"


def test_answer_contexts_closed_book_unless_rag_or_not_learned_yet():
    hits = [
        {"passage_id": 1, "document_id": 1, "text": "learned", "similarity": 0.9,
         "status": "learned"},
        {"passage_id": 2, "document_id": 2, "text": "pending", "similarity": 0.8,
         "status": "stored"},
        {"passage_id": 3, "document_id": 3, "text": "far", "similarity": 0.1, "status": "stored"},
    ]  # fmt: skip
    assert answer_contexts({"passages": hits}, 0.5) == [hits[1]]
    assert answer_contexts({"passages": hits[:1]}, 0.5) == []
    assert answer_contexts({"passages": hits, "rag": True}, 0.5) == hits


def test_conversation_statements_since_the_last_learning():
    messages = [
        HumanMessage("Our office moved to Lyon"),
        AIMessage("Noted."),
        HumanMessage("What is the capital of France?"),
        HumanMessage("The launch date is the fifth of May"),
        HumanMessage("hello"),
    ]
    assert conversation_statements({"messages": messages}) == [
        "Our office moved to Lyon.",
        "The launch date is the fifth of May.",
    ]
    assert conversation_statements({"messages": messages, "learned_upto": 2}) == [
        "The launch date is the fifth of May."
    ]


@pytest.fixture
def cfg(tiny_adapt):
    return SealConfig.model_validate(
        {
            "adapt": tiny_adapt(epochs=1).model_dump(),
            "self_edit": {"max_new_tokens": 8},
            "eval": {"max_answer_tokens": 6},
            # the tiny random model learns too little to pass the retention gate
            "update": {"gate": False},
            "chat": {"seconds_per_passage": 1.0, "max_answer_tokens": 6},
        }
    )


@pytest.fixture
def agent(tmp_path, runtime, cfg):
    state = State.open(tmp_path / "home")
    graph = builder.compile(checkpointer=InMemorySaver())
    yield graph, AgentContext(runtime, state, cfg), state
    state.close()


def run(graph, context, inputs, thread="t"):
    return graph.invoke(inputs, {"configurable": {"thread_id": thread}}, context=context)


def test_feed_gate_self_edit_update_report(agent, tmp_path):
    graph, context, state = agent
    doc = tmp_path / "paris.txt"
    doc.write_text(PASSAGE, encoding="utf-8")

    out = run(graph, context, turn("feed", source=str(doc)))
    assert [d["id"] for d in out["documents"]] == [1]
    assert out["gate"][0]["decision"] == "learn", out["gate"]
    assert out["update"]["decision"] == "accept" and out["update"]["version"] == 1
    assert state.adapters.current() == 1
    assert state.ledger.document(1)["status"] == "learned"
    assert "learned: adapter v1" in out["messages"][-1].content
    [event] = [r for r in state.ledger.history() if r["kind"] == "gate"]
    assert event["subject"] == "document 1" and event["detail"]["decision"] == "learn"
    assert {"novelty", "probe_logprob", "budget_left_seconds"} <= event["detail"].keys()

    again = run(graph, context, turn("feed", source=str(doc)))
    assert again["documents"] == [] and again["gate"] == []
    assert "already known as document 1" in again["messages"][-1].content

    asked = run(graph, context, turn("ask", messages=[HumanMessage("When was the tower built?")]))
    assert isinstance(asked["messages"][-1], AIMessage)
    assert asked["passages"][0]["document_id"] == 1  # retrieved, though answered closed-book
    assert asked["messages"][-1].response_metadata["mode"] == "closed-book"
    assert asked["messages"][-1].response_metadata["knowledge_adapter"] is True
    assert len(asked["messages"]) == 4  # the checkpointer kept the conversation


def test_a_question_far_from_everything_learned_is_answered_by_the_base_model(agent, tmp_path):
    graph, context, state = agent
    doc = tmp_path / "paris.txt"
    doc.write_text(PASSAGE, encoding="utf-8")
    assert run(graph, context, turn("feed", source=str(doc)))["update"]["decision"] == "accept"
    question = "How many legs does a spider have?"
    prompt = question_prompt(context.runtime, question, context.cfg.eval)
    tokens = context.cfg.chat.max_answer_tokens
    with context.runtime.adapter_disabled():
        base = context.runtime.stream(prompt, max_new_tokens=tokens, emit=lambda _: None)
    adapted = context.runtime.stream(prompt, max_new_tokens=tokens, emit=lambda _: None)

    asked = run(graph, context, turn("ask", messages=[HumanMessage(question)]))
    assert asked["messages"][-1].response_metadata["knowledge_adapter"] is False
    assert asked["messages"][-1].content == (first_line(base) or "(no answer)")

    everything = context.cfg.model_copy(
        update={"chat": context.cfg.chat.model_copy(update={"adapter_min_similarity": 0.0})}
    )
    asked = run(
        graph,
        dataclasses.replace(context, cfg=everything),
        turn("ask", messages=[HumanMessage(question)]),
        thread="u",
    )
    assert asked["messages"][-1].response_metadata["knowledge_adapter"] is True
    assert asked["messages"][-1].content == (first_line(adapted) or "(no answer)")


def test_answers_with_adapter_when_a_learned_passage_is_near():
    near = {"status": "learned", "similarity": 0.6}
    assert answers_with_adapter([near], 0.35)
    assert not answers_with_adapter([near | {"similarity": 0.2}], 0.35)
    assert not answers_with_adapter([near | {"status": "stored"}], 0.35)  # not learned yet
    assert not answers_with_adapter([], 0.35)
    assert answers_with_adapter([], 0.0)  # 0: every question with the adapter


def test_bad_input_is_one_note_and_nothing_is_stored(agent, tmp_path):
    graph, context, state = agent
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"\x00\x01\x02" * 100)
    out = run(graph, context, turn("feed", source=str(blob)))
    assert out["documents"] == [] and "binary" in out["messages"][-1].content
    out = run(graph, context, turn("feed", source=str(tmp_path / "missing.txt")))
    assert "does not exist" in out["messages"][-1].content
    assert state.ledger.counts()["documents"] == 0


def test_a_stated_fact_is_learned_through_the_gate(agent):
    graph, context, state = agent
    said = HumanMessage("Our office moved to the city of Rome.")
    out = run(graph, context, turn("ask", messages=[said], defer_learning=True))
    assert out["statement"] == "Our office moved to the city of Rome."
    [doc] = out["documents"]
    assert state.ledger.document(doc["id"])["source"] == "conversation"
    assert out["gate"][0]["decision"] == "learn" and out.get("update") is None  # deferred
    assert "learning in the background" in out["messages"][-1].content
    # the worker's half of the graph: self-edit and update the gated documents
    out = run(graph, context, turn("train", documents=out["documents"], gate=out["gate"]), "w")
    assert out["update"]["decision"] == "accept"
    assert state.ledger.document(doc["id"])["status"] == "learned"
    # /learn: nothing new since the fact was taken
    out = run(graph, context, turn("learn"))
    assert out["documents"] == [] and "nothing new to learn" in out["messages"][-1].content


def test_gate_skips_over_budget_and_read_only_cannot_learn(agent, tmp_path, cfg):
    graph, context, state = agent
    doc = tmp_path / "paris.txt"
    doc.write_text(PASSAGE, encoding="utf-8")
    context.cfg = cfg.model_copy(
        update={"chat": cfg.chat.model_copy(update={"update_minutes_per_hour": 0.0})}
    )
    out = run(graph, context, turn("feed", source=str(doc)))
    assert out["gate"][0]["decision"] == "skip" and "budget" in out["gate"][0]["reason"]
    assert state.adapters.current() == 0
    reader = State.open(state.home, read_only=True)
    try:
        ro = AgentContext(context.runtime, reader, cfg)
        out = run(graph, ro, turn("feed", source=str(doc)), "ro")
        assert out["documents"] == [] and "learning is unavailable" in out["messages"][-1].content
        asked = run(graph, ro, turn("ask", messages=[HumanMessage("Where is the tower?")]), "ro")
        assert asked["passages"] and isinstance(asked["messages"][-1], AIMessage)
    finally:
        reader.close()


def test_a_fed_url_reaches_a_local_server_only_where_the_network_config_allows(agent, tmp_path):
    graph, context, state = agent
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "paris.txt").write_text(PASSAGE, encoding="utf-8")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/paris.txt"
    try:
        refused = run(graph, context, turn("feed", source=url, defer_learning=True))
        assert refused["documents"] == [] and "loopback" in refused["messages"][-1].content
        context.cfg = context.cfg.model_copy(
            update={"network": NetworkConfig(allowed_networks=["127.0.0.1/32"])}
        )
        fed = run(graph, context, turn("feed", source=url, defer_learning=True))
        assert [d["id"] for d in fed["documents"]] == [1]
    finally:
        server.shutdown()


def test_a_question_after_the_doctor_rebuilt_a_lost_ledger_is_answered(tmp_path, runtime, cfg):
    """Issue 17, item 1: `seal doctor --rebuild` of an emptied ledger restores the documents the
    passage store holds, so a writer keeps their passages and questions retrieve them."""
    home = tmp_path / "home"
    with State.open(home) as state:
        state.add_document(PASSAGE, source="file", namespace="user", passage_words=160)
        state.add_document(
            "The capital of Italy is Rome.", source="file", namespace="user", passage_words=160
        )
    empty_ledger(home)
    rebuild(home)
    graph = builder.compile(checkpointer=InMemorySaver())
    with State.open(home) as state:
        state.add_document(  # a writer after the rebuild: it reconciles the passage store first
            "The river Tiber flows through Rome.", source="file", namespace="user",
            passage_words=160,
        )  # fmt: skip
        context = AgentContext(runtime, state, cfg)
        asked = run(graph, context, turn("ask", messages=[HumanMessage("Where is the tower?")]))
    found = {p["text"]: (p["document_id"], p["status"]) for p in asked["passages"]}
    assert found[PASSAGE] == (1, "learned") and isinstance(asked["messages"][-1], AIMessage)
