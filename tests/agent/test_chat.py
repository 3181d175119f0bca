"""`seal chat` driven through a pseudo-terminal (pexpect), as a user types it: the tiny model,
a real state folder, the background update worker, and a restart."""

import os
import sys
from pathlib import Path

import pexpect
import pytest
from langchain_core.messages import HumanMessage

from agent.core.config import load_config
from agent.graph import AgentContext, build_graph
from agent.graph.graph import turn
from agent.learn import load_runtime
from agent.worker import UpdateWorker, pending_documents
from evals.adversary import read_only_prefix
from stores.state import State

ROOT = Path(__file__).resolve().parents[2]
PASSAGE = (
    "The capital of France is Paris. Paris is a city on the river Seine. "
    "The tower in Paris was built in 1889. Many people visit the museum every year."
)


@pytest.fixture
def chat(tmp_path, tiny_cli_settings):
    home = tmp_path / "home"
    settings = [
        *tiny_cli_settings,
        # the tiny random model learns too little to pass the retention gate
        *("--set", "update.gate=false"),
        *("--set", "chat.seconds_per_passage=1"),
        *("--set", "chat.max_answer_tokens=6"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm", "OMP_NUM_THREADS": "1"}

    def start(*extra: str, prefix: list[str] | None = None) -> pexpect.spawn:
        command = [sys.executable, "-m", "agent.cli", "chat", "--home", str(home)]
        command = [*(prefix or []), *command, *settings, *extra]
        child = pexpect.spawn(
            command[0],
            command[1:],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            timeout=120,
            dimensions=(40, 200),
        )
        child.expect("/help lists the commands")
        child.banner = child.before  # what it said while starting
        child.expect_exact("you> ")
        return child

    return start, home


def say(child: pexpect.spawn, line: str, *expected: str) -> str:
    child.sendline(line)
    seen = ""
    for text in expected:
        child.expect_exact(text)
        seen += child.before + text
    child.expect_exact("you> ")
    return seen + child.before


def test_chat_feeds_learns_answers_and_steers_memory(chat, tmp_path):
    start, home = chat
    doc = tmp_path / "paris.txt"
    doc.write_text(PASSAGE, encoding="utf-8")
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"\x00\x01\x02" * 100)

    child = start()
    say(child, "/feed " + str(doc), "stored", "learning: new", "learning in the background")
    child.expect_exact("learned: adapter v1")  # the worker's line, printed above the prompt
    out = say(child, "When was the tower built?", "seal> ")
    assert "error" not in out.lower()
    out = say(child, "/status", "adapter: v1", "learning: idle")
    assert "1 documents" in out
    say(child, "/history", "accept -> v1", "gate document 1 (decision learn")  # newest first
    say(child, "/feed " + str(doc), "already known as document 1")
    say(child, "/feed " + str(blob), "binary")  # bad input: one line, the session goes on
    # Fetching is public addresses only by default (agent/web.py): no request leaves for these.
    say(child, "/feed http://127.0.0.1:9/nothing", "not a public address (loopback)")
    say(child, "/feed http://169.254.169.254/latest/meta-data/", "(link-local (cloud metadata))")
    say(child, "/undo", "rolled back: adapter none (base) (was v1)")
    say(child, "/forget 1", "forgot document 1")
    say(child, "/forget 99", "no document 99")
    say(child, "/rag on", "answers: with retrieved passages")
    say(child, "/frobnicate", "unknown command")
    child.sendline("/quit")
    child.expect_exact("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    with State.open(home, read_only=True) as state:
        assert state.adapters.current() == 0
        assert state.ledger.document(1)["forgotten_at"] is not None
    assert (home / "chat.sqlite").exists() and (home / "chat-history").exists()

    child = start()  # a restart: the conversation and /rag on come back
    out = child.banner
    assert "with retrieved passages" in out and "resumed a conversation" in out
    child.sendline("/quit")
    child.expect(pexpect.EOF)


def test_chat_answers_read_only_while_another_process_writes(chat, tmp_path):
    start, home = chat
    with State.open(home):  # this test holds the writer lock, like a running `seal ingest`
        child = start()
        assert "Learning is unavailable" in child.banner
        say(child, "What is the capital of France?", "seal> ")
        say(child, "/feed " + str(tmp_path), "learning is unavailable")
        say(child, "/undo", "cannot undo")
        child.sendline("/quit")
        child.expect(pexpect.EOF)


def test_chat_answers_and_retrieves_on_a_read_only_state_folder(chat):
    """Issue 17, item 4: a state folder mounted read-only (chromadb opens its database for
    writing, so the passage store the answer path queries must still open)."""
    start, home = chat
    with State.open(home) as state:
        state.add_document(PASSAGE, source="file", namespace="user", passage_words=160)
    prefix = read_only_prefix(home)
    if prefix is None:
        pytest.skip("cannot mount the state folder read-only here")
    child = start("--rag", prefix=prefix)
    assert (
        "cannot write to the state folder" in child.banner
        and "Learning is unavailable" in child.banner
    )
    child.sendline("What is the capital of France?")
    assert child.expect_exact(["seal> ", "error:"]) == 0, child.before + child.readline()
    child.expect_exact("you> ")
    say(child, "/feed " + str(home), "learning is unavailable: the state folder is read-only")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_worker_learns_in_the_background_and_unfinished_learning_is_found(
    tmp_path, tiny_model_dir, tiny_adapt
):
    cfg = load_config(
        overrides={
            "model": {"name": str(tiny_model_dir), "device": "cpu", "dtype": "float32"},
            "adapt": tiny_adapt(epochs=1).model_dump(),
            "self_edit": {"max_new_tokens": 8},
            "update": {"gate": False},
            "chat": {"seconds_per_passage": 1, "max_answer_tokens": 4},
        },
        environ={},
    )
    lines = []
    with State.open(tmp_path / "home") as state:
        graph = build_graph()
        context = AgentContext(load_runtime(state, cfg), state, cfg)
        said = HumanMessage("Our office moved to the city of Rome.")
        config = {"configurable": {"thread_id": "t"}}
        out = graph.invoke(
            turn("ask", messages=[said], defer_learning=True), config, context=context
        )
        [doc] = out["documents"]
        # gated "learn" but not learned: what a chat quit during the update leaves behind
        assert [d["id"] for d in pending_documents(state)] == [doc["id"]]

        worker = UpdateWorker(state, cfg, graph, lines.append)
        worker.start()
        worker.submit(out["documents"], out["gate"])
        assert worker.busy and worker.status_line().startswith("update running")
        asked = graph.invoke(  # the chat answers while the worker learns
            turn("ask", messages=[HumanMessage("Where is the office?")]), config, context=context
        )
        assert asked["messages"][-1].type == "ai"
        assert worker.wait_idle(120)
        assert worker.take_committed() == 1 and worker.take_committed() is None
        worker.stop()
        assert state.adapters.current() == 1 and pending_documents(state) == []
    assert any("self-edit 1/1" in line for line in lines)
    assert "learned: adapter v1" in lines[-1]
