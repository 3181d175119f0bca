"""The engine behind `seal serve`: one base model in memory, answering every user with their
own adapter, in one model thread; the users' state folders; the background update worker.

Everything that touches the serving model or a user's writer state runs in the model thread
(`Engine.run`), one call at a time: a CPU answers one request at full speed rather than eight at
an eighth, and the ledger's SQLite connections belong to the thread that opened them. Read-only
endpoints open their own read-only ledger connection instead, so polling a document's state
never waits for an answer being generated.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from agent.core.answering import first_line, question_prompt
from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.core.runtime import ModelRuntime
from agent.documents import Document
from agent.graph import AgentContext, build_graph
from agent.graph.graph import turn
from agent.graph.nodes import answer_contexts, retrieve
from agent.graph.nodes import gate as gate_node
from agent.serve import spaces
from agent.serve.batching import ModelThread
from agent.serve.slots import AdapterSlots
from agent.serve.spaces import Busy, Conflict, NotFound
from agent.serve.users import UserRegistry
from agent.serve.worker import ServeWorker
from agent.worker import pending_documents
from policies.routing import answering_weights, answers_with_adapter
from stores.adapters import BASE
from stores.state import State, check_home


@dataclass
class Ask:
    """One chat request waiting in the model thread."""

    user: str
    text: str
    base: bool = False  # the base model, not the user's adapter
    rag: bool | None = None
    max_tokens: int | None = None
    emit: Callable[[str], None] = field(default=lambda _: None)


@dataclass
class Answer:
    content: str
    version: int  # the adapter version that answered (0: the base model)
    mode: str  # closed-book | with retrieved passages | statement
    prompt_tokens: int
    completion_tokens: int
    gate: list[dict]  # decisions on facts the message stated


class Engine:
    def __init__(self, home: Path, cfg: SealConfig, log: Callable[[str], None] = print):
        if cfg.update.merge_every:
            raise SealError(
                "seal serve answers every user over one shared base model, so adapters cannot "
                "be merged into it: set update.merge_every = 0"
            )
        self.home = Path(home)
        self.cfg = cfg
        self.log = log
        self.registry = UserRegistry(self.home)
        self._registry_stamp = self._stamp()
        self._registry_lock = threading.Lock()
        self._thread = ModelThread(self._ask_batch, cfg.serve.max_batch)
        self._states: dict[str, State] = {}  # touched only in the model thread
        self._opened: set[str] = set()  # readable from any thread
        self.runtime: ModelRuntime | None = None

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        check_home(self.home, create=True)
        self.run(self._start).result()

    def _start(self) -> None:
        self.runtime = ModelRuntime.load(self.cfg.model, self.cfg.adapt)
        self.slots = AdapterSlots(self.runtime, self.cfg.serve.adapter_cache)
        self.graph = build_graph(None)
        self.worker = ServeWorker(self.cfg, self.graph, self._state_from_worker, self.log)
        self.worker.start()
        for user in self.registry.names():
            self._state(user)

    def stop(self) -> None:
        """Stop taking work; an update under way is abandoned and learned again at the next
        start (its documents stay queued in the ledger)."""
        idle = self.worker.stop() if self.runtime is not None else True
        if idle:
            self.run(self._close).result()
        self._thread.stop()

    def _close(self) -> None:
        for state in self._states.values():
            state.close()
        self._states.clear()

    def run(self, fn: Callable, *args, **kwargs) -> concurrent.futures.Future:
        """Run `fn` in the model thread."""
        return self._thread.submit(fn, *args, **kwargs)

    def submit_ask(self, ask: Ask) -> concurrent.futures.Future:
        """Answer `ask` in the model thread, together with the questions for the same adapter
        (user, base or not, options) that are waiting by then; the future holds its Answer."""
        key = (ask.user, ask.base, ask.rag, ask.max_tokens)
        return self._thread.submit_batched(key, ask)

    # ---------------------------------------------------------------- users
    def _stamp(self) -> float:
        path = self.registry.path
        return path.stat().st_mtime if path.exists() else 0.0

    def user_of(self, key: str | None) -> str | None:
        """The user an API key names; users added while the server runs are found too."""
        with self._registry_lock:
            if self._stamp() != self._registry_stamp:
                self.registry = UserRegistry(self.home)
                self._registry_stamp = self._stamp()
            return self.registry.user_of(key)

    def ensure_user(self, user: str) -> None:
        if user not in self._opened:
            self.run(self._state, user).result()

    def _state(self, user: str) -> State:
        if user not in self._states:
            state = spaces.open_space(self.home, user, self.cfg)
            self._states[user] = state
            self._opened.add(user)
            pending = pending_documents(state)
            if pending:
                self.log(f"{user}: resuming the learning of {len(pending)} document(s)")
                gate = [
                    {"document_id": d["id"], "decision": "learn", "reason": "resumed"}
                    for d in pending
                ]
                self.worker.submit(user, pending, gate)
        return self._states[user]

    def _state_from_worker(self, user: str) -> State:
        return self.run(self._state, user).result()

    # ---------------------------------------------------------------- answering (model thread)
    def _context(self, state: State, max_tokens: int | None, emit) -> AgentContext:
        cfg = self.cfg
        if max_tokens is not None and max_tokens < cfg.chat.max_answer_tokens:
            cfg = cfg.model_copy(
                update={"chat": cfg.chat.model_copy(update={"max_answer_tokens": max_tokens})}
            )
        return AgentContext(self.runtime, state, cfg, emit=emit)

    def ask(self, ask: Ask) -> Answer:
        """Answer one message with the user's current adapter (or the base model), through the
        agent graph; a fact it states goes through the gate, and what the gate chooses is
        learned in the background."""
        state = self._state(ask.user)
        version = BASE if ask.base else state.adapters.current()
        rag = self.cfg.chat.rag if ask.rag is None else ask.rag
        context = self._context(state, ask.max_tokens, ask.emit)
        with self.slots.active(ask.user, state, version):
            values = self.graph.invoke(
                turn("ask", messages=[HumanMessage(ask.text)], defer_learning=True, rag=rag),
                context=context,
            )
        gate = list(values.get("gate") or [])
        self._learn_chosen(ask.user, values.get("documents") or [], gate)
        last = values["messages"][-1]
        metadata = last.response_metadata or {}
        gate = [g | {"document_id": spaces.public_id(ask.user, g["document_id"])} for g in gate]
        return self._answer(
            ask, str(last.content), version, metadata.get("mode", "statement"), gate
        )

    def _answer(self, ask: Ask, content: str, version: int, mode: str, gate: list) -> Answer:
        tokens = self.runtime.count_tokens
        return Answer(content, version, mode, tokens(ask.text), tokens(content), gate)

    def _ask_batch(self, asks: list[Ask]) -> list[Answer | Exception]:
        """Answers for questions of one user and adapter, decoded as one batch: each is
        retrieved for as the graph's retrieve node does, and a message that states a fact takes
        the graph's whole path (ingest, gate) on its own afterwards."""
        if len(asks) == 1:
            try:
                return [self.ask(asks[0])]
            except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                return [exc]
        results: list[Answer | Exception | None] = [None] * len(asks)
        first = asks[0]
        state = self._state(first.user)
        version = BASE if first.base else state.adapters.current()
        rag = self.cfg.chat.rag if first.rag is None else first.rag
        context = self._context(state, first.max_tokens, lambda _: None)
        rows: list[tuple[int, str, str]] = []  # (request, prompt, mode)
        with self.slots.active(first.user, state, version):
            for i, ask in enumerate(asks):
                try:
                    found = retrieve(
                        {"messages": [HumanMessage(ask.text)]}, Runtime(context=context)
                    )
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
                    continue
                if found["statement"]:
                    continue  # the graph's whole path, below
                hits = answer_contexts(
                    {"passages": found["passages"], "rag": rag},
                    self.cfg.chat.pending_rag_similarity,
                )
                passage = "\n\n".join(h["text"] for h in hits) if hits else None
                prompt = question_prompt(self.runtime, ask.text, self.cfg.eval, passage)
                mode = "with retrieved passages" if hits else "closed-book"
                adapter = answers_with_adapter(
                    found["passages"], self.cfg.chat.adapter_min_similarity
                )
                rows.append((i, prompt, mode, adapter))
            for adapter in (True, False):  # one batch each: with the adapter, with the base
                group = [row for row in rows if row[3] is adapter]
                if not group:
                    continue
                with answering_weights(self.runtime, adapter):
                    texts = self._decode(
                        [p for _, p, _, _ in group], [asks[i].emit for i, *_ in group], context
                    )
                self.log(f"{first.user}: {len(group)} questions answered in one batch")
                for (i, _, mode, _), text in zip(group, texts, strict=True):
                    results[i] = self._answer(
                        asks[i], first_line(text) or "(no answer)", version, mode, []
                    )
        for i, ask in enumerate(asks):
            if results[i] is None:
                try:
                    results[i] = self.ask(ask)
                except Exception as exc:  # noqa: BLE001
                    results[i] = exc
        return results

    def _decode(self, prompts: list[str], emits: list, context: AgentContext) -> list[str]:
        """Greedy answers of `prompts` in one batch, each streamed to its emit."""
        max_tokens = context.cfg.chat.max_answer_tokens
        return self.runtime.stream_batch(prompts, max_new_tokens=max_tokens, emits=emits)

    def _learn_chosen(self, user: str, documents: list[dict], gate: list[dict]) -> None:
        chosen = [g for g in gate if g["decision"] == "learn"]
        if chosen:
            ids = {g["document_id"] for g in chosen}
            self.worker.submit(user, [d for d in documents if d["id"] in ids], chosen)

    # ---------------------------------------------------------------- memory (model thread)
    def feed(self, user: str, documents: list[Document], source: str) -> list[dict]:
        """Store documents (already read and checked by the caller), pass them through the
        learning gate, queue what it chooses; one result per document."""
        state = self._state(user)
        queued = len(self.worker.queued_ids(user))
        if queued >= self.cfg.serve.max_queued_updates:
            raise Busy(
                f"{queued} documents are waiting to be learned (serve.max_queued_updates); "
                "feed more once they are done"
            )
        refs, results = spaces.store_documents(state, self.cfg, user, documents, source)
        if refs:
            context = self._context(state, None, lambda _: None)
            graph_state = {"documents": refs, "request": "feed"}
            with self.slots.active(user, state, state.adapters.current()):
                gate = gate_node(graph_state, Runtime(context=context))["gate"]
            self._learn_chosen(user, refs, gate)
        return results

    def forget(self, user: str, document_id: int) -> dict:
        state = self._state(user)
        self._refuse_while_learning(user, "forget a document")
        try:
            state.ledger.document(document_id)
        except SealError:
            raise NotFound(f"no document {spaces.public_id(user, document_id)!r}") from None
        counts = state.forget(document_id)
        trained = counts.pop("trained_into")
        return counts | {"trained_into_versions": trained}

    def rollback(self, user: str, version: int | None) -> dict:
        """Make `version` current (None: the parent of the current one, an undo)."""
        state = self._state(user)
        self._refuse_while_learning(user, "roll back")
        current = state.adapters.current()
        if version is None:
            if not current:
                raise Conflict("nothing to undo: the base model answers")
            version = state.ledger.adapter_version(current)["parent"] or BASE
        row = state.ledger.adapter_version(version) if version else None
        if version and (row is None or row["collected_at"] is not None):
            raise NotFound(f"no adapter version {version}")
        state.adapters.rollback(version, reason=f"rollback through seal serve by {user}")
        return {"from": current, "to": version}

    def _refuse_while_learning(self, user: str, what: str) -> None:
        if self.worker.busy_for(user):
            raise Conflict(
                f"cannot {what} while an update of yours runs or waits; try again after it"
            )

    # ---------------------------------------------------------------- reading (any thread)
    def document(self, user: str, document_id: int) -> dict[str, Any]:
        self.ensure_user(user)
        with spaces.read_ledger(self.home, user) as ledger:
            try:
                row = ledger.document(document_id)
            except SealError:
                raise NotFound(f"no document {spaces.public_id(user, document_id)!r}") from None
            gate = spaces.gate_decisions(ledger).get(document_id)
        return spaces.document_view(user, row, gate, self.worker.phase(user, document_id))

    def documents(self, user: str) -> list[dict[str, Any]]:
        self.ensure_user(user)
        with spaces.read_ledger(self.home, user) as ledger:
            rows = ledger.documents()
            gates = spaces.gate_decisions(ledger)
        return [
            spaces.document_view(user, r, gates.get(r["id"]), self.worker.phase(user, r["id"]))
            for r in rows
        ]

    def history(self, user: str, limit: int) -> list[dict[str, Any]]:
        self.ensure_user(user)
        with spaces.read_ledger(self.home, user) as ledger:
            return [spaces.history_view(r, user) for r in ledger.history(limit)]

    def status(self, user: str) -> dict[str, Any]:
        self.ensure_user(user)
        with spaces.read_ledger(self.home, user) as ledger:
            current = ledger.pointer("current") or BASE
            versions = [r["version"] for r in ledger.adapter_versions()]
            counts = ledger.counts()
            budget = spaces.budget(ledger, self.cfg)
        return {
            "object": "status",
            "user": user,
            "model": self.cfg.model.name,
            "adapter_version": current,
            "adapter_versions": versions,
            "counts": counts,
            "budget": budget,
            "update": self.worker.status(user),
        }
