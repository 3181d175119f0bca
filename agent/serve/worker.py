"""The one writer of `seal serve`: a background thread that learns, one job at a time, what the
gate chose for any user, with its own copy of the model (an update takes minutes on a CPU), so
every user keeps getting answers from their last committed adapter meanwhile.

Each job belongs to one user and touches only that user's state folder, through the worker's own
ledger connection (SQLite connections belong to the thread that opened them) under the lock the
server holds, sharing the server's passage store of that folder. A job cut short (the server
stopped or was killed) leaves its documents stored with the gate's "learn" decision; the next
start finds them (`agent.worker.pending_documents`) and queues them again. "learned" is set in
the transaction that commits the adapter, so nothing is learned twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.core.config import SealConfig
from stores.ledger import Ledger
from stores.state import LEDGER, State


@dataclass
class Job:
    user: str
    documents: list[dict]  # DocumentRef
    gate: list[dict]  # the gate's decisions
    queued_at: float = field(default_factory=time.time)


@dataclass
class Progress:
    """What the running job is doing (read by the status endpoints of its user only)."""

    user: str
    document_ids: list[int]
    started_at: float
    line: str = "loading the model"


class ServeWorker:
    def __init__(
        self,
        cfg: SealConfig,
        graph,
        state_of: Callable[[str], State],
        log: Callable[[str], None] = print,
    ):
        self.cfg = cfg
        self.graph = graph
        self.state_of = state_of  # the user's writer state (opened in the model thread)
        self.log = log
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._queued: dict[str, list[Job]] = {}
        self.running: Progress | None = None
        self.finished: dict[str, list[dict]] = {}  # per user: the last results, newest last
        self._thread = threading.Thread(target=self._run, name="seal-serve-update", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, user: str, documents: list[dict], gate: list[dict]) -> None:
        job = Job(user, documents, gate)
        with self._lock:
            self._queued.setdefault(user, []).append(job)
        self.jobs.put(job)

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop after the running job (abandoned if it takes longer than `timeout`: its
        documents are learned again at the next start); True when the thread ended."""
        self.jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---------------------------------------------------------------- what a user may see
    def queued_ids(self, user: str) -> list[int]:
        with self._lock:
            return [d["id"] for job in self._queued.get(user, []) for d in job.documents]

    def busy_for(self, user: str) -> bool:
        running = self.running
        return bool(self.queued_ids(user)) or (running is not None and running.user == user)

    def phase(self, user: str, document_id: int) -> str | None:
        """'learning' or 'queued' for a document of `user` the worker holds, else None."""
        running = self.running
        if running and running.user == user and document_id in running.document_ids:
            return "learning"
        return "queued" if document_id in self.queued_ids(user) else None

    def status(self, user: str) -> dict:
        running = self.running
        mine = running is not None and running.user == user
        return {
            "learning": mine,
            "documents": list(running.document_ids) if mine else [],
            "progress": running.line if mine else None,
            "seconds": round(time.time() - running.started_at, 1) if mine else None,
            "queued": self.queued_ids(user),
            # another user's update holds the one writer: say that it waits, not whose it is
            "waiting_for_another_update": bool(running and not mine and self.queued_ids(user)),
            "last": (self.finished.get(user) or [None])[-1],
        }

    # ---------------------------------------------------------------- the thread
    def _say(self, line: str) -> None:
        if self.running is not None:
            self.running.line = line.strip()

    def _run(self) -> None:
        # Deferred: langgraph and the model (torch) load in this thread, not with the CLI.
        from agent.graph import AgentContext
        from agent.graph.graph import turn
        from agent.graph.prompts import report_text
        from agent.state_model import load_runtime, refresh_runtime

        views: dict[str, State] = {}
        runtime = None
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                ids = [d["id"] for d in job.documents]
                self.running = Progress(job.user, ids, time.time())
                with self._lock:
                    self._queued[job.user].remove(job)
                result: dict = {"documents": ids}
                try:
                    if job.user not in views:
                        state = self.state_of(job.user)
                        views[job.user] = state.view(Ledger(state.home / LEDGER))
                    view = views[job.user]
                    runtime = (
                        load_runtime(view, self.cfg)
                        if runtime is None
                        else refresh_runtime(view, runtime, self.cfg)
                    )
                    self._say("writing self-edits")
                    context = AgentContext(runtime, view, self.cfg, progress=self._say)
                    final = self.graph.invoke(
                        turn("train", documents=job.documents, gate=job.gate), context=context
                    )
                    update = final.get("update")
                    result |= {
                        "decision": update["decision"] if update else "nothing to train",
                        "version": update["version"] if update else None,
                        "summary": report_text({"update": update} if update else final),
                    }
                except Exception as exc:  # the server goes on; the ledger says what happened
                    logging.getLogger("seal.serve").exception("update for %s failed", job.user)
                    result |= {"decision": "failed", "version": None, "summary": str(exc)}
                    if job.user in views:
                        for doc_id in ids:
                            views[job.user].ledger.set_document_status(
                                doc_id, "rejected", f"failed: {type(exc).__name__}: {exc}"
                            )
                finally:
                    result["seconds"] = round(time.time() - self.running.started_at, 1)
                    self.finished.setdefault(job.user, []).append(result)
                    del self.finished[job.user][:-20]
                    self.running = None
                self.log(f"update for {job.user}: documents {ids}: {result['summary']}")
        finally:
            for view in views.values():
                view.ledger.close()
