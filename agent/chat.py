"""`seal chat`: talk to the model, feed it documents, and find it has learned them, closed-book,
today and after a restart.

setup: open the state folder (the writer lock; read-only when another process holds it), load the
model with the current adapter, compile the agent graph with a SQLite checkpointer in the state
folder (the conversation resumes after a restart), start the background update worker.
run: a readline REPL; questions stream their answers; /feed and stated facts go through the gate,
and what it chooses to learn is learned in the background while the chat goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import threading
import warnings
from pathlib import Path

from agent import commands
from agent.core.config import SealConfig
from agent.core.errors import SealError, StateLocked, StateNotWritable
from agent.serve import client
from agent.worker import UpdateWorker, pending_documents
from stores.state import State

HELP = """commands:
  /feed PATH|URL|DIR   read a document (text, Markdown, HTML, PDF), store it, learn it if the
                       gate finds it new and unknown to the model (in the background)
  /learn               learn the facts stated in the conversation so far
  /status              model, adapter version, counts, the running update
  /history             updates and gate decisions, newest first
  /undo                roll back the last update (the previous adapter version)
  /forget DOC          remove document DOC's passages and vectors, exclude it from replay
  /rag on|off          answer with retrieved passages, or closed-book (default)
  /quit                leave (the conversation and everything learned are kept)
anything else is a question, or a fact to remember ("our office moved to Lyon")"""
PROMPT = "you> "


class Chat:
    def __init__(self, args: argparse.Namespace, cfg: SealConfig, home: Path) -> None:
        self.args, self.cfg, self.home = args, cfg, home
        self.state: State | None = None
        self.worker = None
        self.at_prompt = False
        self.out = threading.Lock()  # the worker's lines and the chat's never interleave
        self.held: list[str] = []  # worker lines that arrived while an answer was printing
        self.readline = None
        self.streaming = self.answer_done = False  # the answer being printed
        self.read_only_reason = ""  # why learning is unavailable, when the state is read-only

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        # Deferred: langgraph, and the model (torch), load when the chat starts, not with the CLI.
        from langgraph.checkpoint.sqlite import SqliteSaver

        from agent.graph import AgentContext, build_graph
        from agent.state_model import load_runtime

        similarity = self.cfg.store.near_duplicate_similarity
        try:
            self.state = State.open(self.home, near_duplicate_similarity=similarity)
        except (StateLocked, StateNotWritable) as exc:
            self.state = State.open(self.home, read_only=True, near_duplicate_similarity=similarity)
            locked = isinstance(exc, StateLocked)
            self.read_only_reason = (
                "another process holds the state folder"
                if locked
                else ("the state folder cannot be written")
            )
            until = " until it stops" if locked else ""
            print(f"note: {exc}. Learning is unavailable{until}; I answer read-only.")
        print(f"loading {self.cfg.model.name} ...", flush=True)
        self.runtime = load_runtime(self.state, self.cfg)
        self.checkpointer = SqliteSaver(self._checkpoint_connection())
        self.graph = build_graph(self.checkpointer)
        self.context = AgentContext(self.runtime, self.state, self.cfg, emit=self._emit)
        self.config = {"configurable": {"thread_id": f"chat-{self.args.conversation}"}}
        values = self.graph.get_state(self.config).values
        if self.args.rag is not None or "rag" not in values:
            rag = self.cfg.chat.rag if self.args.rag is None else self.args.rag
            self.graph.update_state(self.config, {"rag": rag})
        if not self.state.read_only:
            self.worker = UpdateWorker(self.state, self.cfg, self.graph, self.notify)
            self.worker.start()
            pending = pending_documents(self.state)
            if pending:
                print(f"resuming the unfinished learning of {len(pending)} document(s)")
                gate = [
                    {"document_id": d["id"], "decision": "learn", "reason": "resumed"}
                    for d in pending
                ]
                self.worker.submit(pending, gate)
        self._setup_readline()
        current = self.state.adapters.current()
        turns = len(values.get("messages") or [])
        print(
            f"seal chat: {self.home}, adapter {'v' + str(current) if current else 'none (base)'}"
            f", answers {'with retrieved passages' if self.rag else 'closed-book'}"
            + (f"; resumed a conversation of {turns} messages" if turns else "")
            + "\n/help lists the commands",
            flush=True,
        )

    def _checkpoint_connection(self) -> sqlite3.Connection:
        """The conversation's checkpoint database; in a folder that cannot be written, a copy in
        memory (the conversation goes on, and is not kept after /quit)."""
        path = self.home / self.cfg.chat.checkpoint_db
        if os.access(self.home, os.W_OK):
            return sqlite3.connect(path, check_same_thread=False)
        print("note: this conversation is not kept after /quit (the folder is read-only)")
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        if path.is_file():
            saved = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            with contextlib.closing(saved):
                saved.backup(memory)
        return memory

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # line editing is a convenience; the chat works without it
            self.readline = None
            return
        self.readline = readline
        readline.set_pre_input_hook(self._prompt_shown)
        self.history_path = self.home / self.cfg.chat.history_file
        readline.set_history_length(1000)
        if self.history_path.exists():
            with contextlib.suppress(OSError):
                readline.read_history_file(self.history_path)

    @property
    def rag(self) -> bool:
        return bool(self.graph.get_state(self.config).values.get("rag"))

    # ---------------------------------------------------------------- output
    def notify(self, line: str) -> None:
        """A line from the update worker: printed above the prompt, keeping what is typed."""
        with self.out:
            if not self.at_prompt:
                self.held.append(line)
                return
            typed = self.readline.get_line_buffer() if self.readline else ""
            sys.stdout.write(f"\r\033[K[update] {line}\n{PROMPT}{typed}")
            sys.stdout.flush()

    def _prompt_shown(self) -> None:
        """From now on worker lines are printed above the prompt (readline calls this once the
        prompt is on the screen, so that a line arriving just before is not shown twice)."""
        with self.out:
            self.at_prompt = True
            held, self.held = self.held, []
        for line in held:
            self.notify(line)

    def _flush_held(self) -> None:
        with self.out:
            for line in self.held:
                print(f"[update] {line}")
            self.held.clear()

    def _use_current_version(self) -> None:
        """Answer with the current adapter version (a new model when it needs another base)."""
        from agent.state_model import refresh_runtime  # deferred: torch (loaded by setup())

        self.runtime = refresh_runtime(self.state, self.runtime, self.cfg)
        self.context.runtime = self.runtime

    def _reload_if_committed(self) -> None:
        version = self.worker.take_committed() if self.worker else None
        if version is not None:
            self._use_current_version()
            print(f"(now answering with adapter v{self.state.adapters.current()})")

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        while True:
            self._flush_held()
            self._reload_if_committed()
            if self.readline is None:
                self._prompt_shown()
            try:
                line = input(PROMPT).strip()
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                print()
                continue
            finally:
                with self.out:
                    self.at_prompt = False
            if not line:
                continue
            self._reload_if_committed()  # an update may have finished while the user typed
            try:
                if line.startswith("/"):
                    if self.command(line) == "quit":
                        return
                else:
                    self.ask(line)
            except SealError as exc:  # bad input: one line, and the session goes on
                print(f"error: {exc}")
            except KeyboardInterrupt:
                print("\n(interrupted)")

    def _emit(self, text: str) -> None:
        """Answer text as the model writes it, up to the end of its first line."""
        if self.answer_done:
            return
        if not self.streaming:
            sys.stdout.write("seal> ")
            self.streaming = True
        text, newline, _ = text.partition("\n")
        sys.stdout.write(text)
        sys.stdout.flush()
        self.answer_done = bool(newline)

    def _run_graph(self, inputs: dict) -> dict:
        """One run of the graph: the answer streamed as it is generated, the report printed."""
        self.streaming = self.answer_done = printed = False
        for chunk in self.graph.stream(
            inputs, self.config, context=self.context, stream_mode="updates"
        ):
            for node, update in chunk.items():
                if node == "report" and update:
                    for message in update["messages"]:
                        print(f"seal> {message.content}")
                        printed = True
        if self.streaming:
            print()
        values = self.graph.get_state(self.config).values
        last = values["messages"][-1] if values.get("messages") else None
        if last is not None and not (self.streaming or printed):  # nothing was streamed
            print(f"seal> {last.content}")
        documents = last.response_metadata.get("documents") if last is not None else None
        if documents and not values.get("rag"):
            listed = ", ".join(map(str, documents))
            print(f"      (answered from stored passages: document {listed} is not in the adapter)")
        return values

    def _learn_chosen(self, values: dict) -> None:
        chosen = [g for g in values.get("gate") or [] if g["decision"] == "learn"]
        if chosen and self.worker is not None:
            ids = {g["document_id"] for g in chosen}
            documents = [d for d in values.get("documents") or [] if d["id"] in ids]
            self.worker.submit(documents, chosen)

    def ask(self, line: str) -> None:
        # Deferred: langgraph (loaded by setup() already; kept out of the CLI's start-up).
        from langchain_core.messages import HumanMessage

        from agent.graph.graph import turn

        values = self._run_graph(
            turn("ask", messages=[HumanMessage(line)], defer_learning=self.worker is not None)
        )
        self._learn_chosen(values)

    def learn(self, request: str, **fields) -> None:
        from agent.graph.graph import turn  # deferred: langgraph

        values = self._run_graph(turn(request, defer_learning=self.worker is not None, **fields))
        self._learn_chosen(values)

    def command(self, line: str) -> str | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        handlers = {
            "/feed": lambda: self.feed(arg),
            "/learn": lambda: self.learn("learn"),
            "/status": self.status,
            "/history": self.history,
            "/undo": self.undo,
            "/forget": lambda: self.forget(arg),
            "/rag": lambda: self.set_rag(arg),
            "/help": lambda: print(HELP),
        }
        if name in ("/quit", "/exit"):
            return "quit"
        if name not in handlers:
            print(f"unknown command {name}; /help lists the commands")
            return None
        handlers[name]()
        return None

    def feed(self, source: str) -> None:
        if not source:
            print("usage: /feed PATH|URL|DIR")
            return
        print(f"reading {source} ...", flush=True)
        self.learn("feed", source=source)

    def status(self) -> None:
        commands.status(argparse.Namespace(json=False), self.cfg, self.home)
        print(f"answers: {'with retrieved passages (/rag on)' if self.rag else 'closed-book'}")
        if self.state.read_only:
            print(f"learning: unavailable ({self.read_only_reason})")
        elif self.worker is not None:
            print(f"learning: {self.worker.status_line() or 'idle'}")

    def history(self) -> None:
        commands.history(argparse.Namespace(json=False, limit=15), self.cfg, self.home)

    def _refuse_while_learning(self, what: str) -> bool:
        if self.state.read_only:
            print(f"cannot {what}: the state folder is open read-only ({self.read_only_reason})")
            return True
        if self.worker is not None and self.worker.busy:
            print(f"cannot {what} while an update runs; wait for it (/status shows it)")
            return True
        return False

    def undo(self) -> None:
        if self._refuse_while_learning("undo"):
            return
        current = self.state.adapters.current()
        if not current:
            print("nothing to undo: the base model answers")
            return
        parent = self.state.ledger.adapter_version(current)["parent"] or 0
        self.state.adapters.rollback(parent, reason="/undo in seal chat")
        self._use_current_version()
        print(
            f"rolled back: adapter {'v' + str(parent) if parent else 'none (base)'} "
            f"(was v{current})"
        )

    def forget(self, arg: str) -> None:
        if not arg.isdigit():
            print("usage: /forget DOC (a document number, see /history)")
            return
        if self._refuse_while_learning("forget"):
            return
        counts = self.state.forget(int(arg))
        trained = counts.pop("trained_into")
        print(
            f"forgot document {arg}: {counts['passages']} passages and {counts['vectors']} "
            f"vectors removed; {counts['self_edits_excluded']} self-edits excluded from replay"
        )
        if trained and self.state.adapters.current() >= trained[0]:
            print(
                "note: the current adapter was trained on it and may still know it; /undo "
                "returns to before an update"
            )

    def set_rag(self, arg: str) -> None:
        if arg not in ("on", "off"):
            print("usage: /rag on|off")
            return
        self.graph.update_state(self.config, {"rag": arg == "on"})
        print(f"answers: {'with retrieved passages' if arg == 'on' else 'closed-book'}")

    # ---------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        if self.worker is not None:
            if self.worker.busy:
                print("an update is still running; it is learned again when the chat restarts")
            self.worker.stop()
        if self.readline is not None:
            with contextlib.suppress(OSError):
                self.readline.write_history_file(self.history_path)
        if self.state is not None and not (self.worker and self.worker.busy):
            self.state.close()  # (a busy worker still uses it; the exit frees the lock)


def run_chat(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    # peft calls a transformers method that transformers 5 deprecates; not the user's business.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")

    if args.url:  # a running `seal serve` answers and learns; nothing is opened here
        return client.run_remote(args.url, args.api_key, args.rag)
    chat = Chat(args, cfg, home)
    try:
        chat.setup()
        chat.run()
    finally:
        chat.cleanup()
    print("bye: the conversation and what was learned are kept in", home)
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    rag = ap.add_mutually_exclusive_group()
    rag.add_argument(
        "--rag",
        dest="rag",
        action="store_true",
        default=None,
        help="answer with retrieved passages (chat.rag)",
    )
    rag.add_argument("--no-rag", dest="rag", action="store_false", help="answer closed-book")
    ap.add_argument(
        "--conversation", default="main", help="name of the conversation to resume (default: main)"
    )
    ap.add_argument(
        "--url", help="talk to a running `seal serve` at this URL (e.g. http://127.0.0.1:8000)"
    )
    ap.add_argument(
        "--api-key", help="the API key for --url (default: $SEAL_API_KEY)", default=None
    )
