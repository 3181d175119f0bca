"""The background update worker of `seal chat`: one thread that self-edits and updates the
documents the gate chose, with its own copy of the model, so the chat keeps answering with the
last committed adapter while an update runs (an update takes minutes on a CPU).

The chat process holds the state folder's writer lock; the worker writes through its own ledger
connection (SQLite connections belong to the thread that opened them) under that same lock, and
shares the chat's passage store. After a commit the chat reloads the new current version.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.core.config import SealConfig
from stores.ledger import Ledger
from stores.state import LEDGER, State

LEARN_THREAD = "learn"  # the checkpointer thread of the worker's runs


@dataclass
class Job:
    documents: list[dict]  # DocumentRef
    gate: list[dict]  # the gate's decisions


def pending_documents(state: State) -> list[dict]:
    """Documents the gate chose to learn whose learning never finished (the chat was quit or
    killed during the update): the worker learns them again when the next chat starts."""
    decided: dict[int, str] = {}
    for row in reversed(state.ledger.history()):  # oldest first: the latest decision wins
        if row["kind"] == "gate" and isinstance(row["detail"], dict):
            decided[int(row["subject"].split()[-1])] = row["detail"]["decision"]
    pending = []
    for doc in state.ledger.documents():
        if decided.get(doc["id"]) == "learn" and doc["status"] in ("stored", "self_edited"):
            passages = len(state.ledger.passages(doc["id"]))
            pending.append({"id": doc["id"], "title": doc["title"] or "", "passages": passages})
    return pending


class UpdateWorker:
    """Runs the graph's learning half (request "train": self_edit -> update -> report) for each
    submitted job, one at a time, and reports progress lines through `notify`."""

    def __init__(self, state: State, cfg: SealConfig, graph, notify: Callable[[str], None]) -> None:
        self.home = state.home
        self.chat_state = state
        self.cfg = cfg
        self.graph = graph
        self.notify = notify
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.progress: str | None = None  # what the running update is doing
        self.started_at: float | None = None
        self.durations: list[float] = []  # seconds of each finished job
        self._committed: int | None = None
        self._lock = threading.Lock()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seal-update", daemon=True)

    def start(self) -> None:
        _ = self.chat_state.passages  # opened here, in the chat's thread, then shared
        self._thread.start()

    def submit(self, documents: list[dict], gate: list[dict]) -> None:
        self._busy.set()
        self.jobs.put(Job(documents, gate))

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def status_line(self) -> str | None:
        if not self.busy:
            return None
        seconds = time.monotonic() - (self.started_at or time.monotonic())
        return f"update running ({seconds:.0f} s): {self.progress or 'loading the model'}"

    def take_committed(self) -> int | None:
        """The version the worker committed since the last call (None: nothing new)."""
        with self._lock:
            version, self._committed = self._committed, None
        return version

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the running job; a job cut short is learned again by the next chat."""
        self.jobs.put(None)
        self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.1)
        return not self.busy

    # ---------------------------------------------------------------- the thread
    def _writer_view(self) -> State:
        """The chat's state seen through this thread's own ledger connection, under the lock
        the chat holds, sharing its passage store."""

        return self.chat_state.view(Ledger(self.home / LEDGER))

    def _say(self, line: str) -> None:
        self.progress = line.strip()
        self.notify(self.status_line() or self.progress)

    def _run(self) -> None:
        # Deferred: langgraph and the model (torch) load in the worker thread, not with the CLI.
        from agent.graph import AgentContext
        from agent.graph.graph import turn
        from agent.state_model import load_runtime, refresh_runtime

        view = self._writer_view()
        runtime = None
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                self.started_at = time.monotonic()
                try:
                    # the chat may have rolled back meanwhile, across a merge into the base
                    runtime = (
                        load_runtime(view, self.cfg)
                        if runtime is None
                        else refresh_runtime(view, runtime, self.cfg)
                    )
                    context = AgentContext(runtime, view, self.cfg, progress=self._say)
                    self._learn(job, context, turn)
                except Exception as exc:  # the chat goes on; the ledger says what happened
                    self.notify(f"update failed: {type(exc).__name__}: {exc}")
                    for doc in job.documents:
                        view.ledger.set_document_status(doc["id"], "rejected", f"failed: {exc}")
                finally:
                    self.durations.append(time.monotonic() - self.started_at)
                    self.progress = None
                    if self.jobs.empty():
                        self._busy.clear()
        finally:
            view.ledger.close()

    def _learn(self, job: Job, context, turn) -> None:
        from agent.graph.prompts import report_text  # deferred: agent.graph loads langgraph

        config = {"configurable": {"thread_id": LEARN_THREAD}}
        names = ", ".join(f"document {d['id']}" for d in job.documents)
        self._say(f"learning {names}: writing self-edits")
        final = self.graph.invoke(
            turn("train", documents=job.documents, gate=job.gate), config, context=context
        )
        update = final.get("update")
        if update and update["decision"] == "accept":
            with self._lock:
                self._committed = update["version"]
        summary = report_text({"update": update}) if update else report_text(final)
        self.notify(f"{names}: {summary} [{time.monotonic() - self.started_at:.0f} s in all]")
