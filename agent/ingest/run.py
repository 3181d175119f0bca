"""`seal ingest SOURCE... [--follow]`: poll news sources, store what is new, learn it in batches.

    setup   open the state (writer lock, crash recovery), register the sources, sync item states
            with the updates that committed before a crash
    run     loop: poll due sources -> store due items (newest first) -> bound the queue ->
            learn a batch when one is due and the compute budget allows -> wait; with --follow,
            due sources are also polled and items stored between the steps of an update
    report  final metrics file and a summary line

Without --follow one pass is made: every source once, every item stored, the queue learned.
SIGINT / SIGTERM stop the run within seconds: a fetch or an update in progress is abandoned
(its candidate adapter discarded, its items left queued), the ledger is never mid-write.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.ingest import schedule
from agent.ingest.pipeline import Pipeline
from agent.ingest.report import EventLog, print_status, snapshot, status_line, write_metrics
from agent.ingest.sources import source_of
from agent.web import Fetcher, policy_of
from stores.state import State, check_home

METRICS = "ingest-metrics.json"
ITEMS_PER_STEP = 20  # items stored between two looks at sources, queue and signals


class Interrupted(BaseException):
    """Raised by the signal handler into an abandonable step (a fetch, an update). A
    BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it."""


@dataclass
class Control:
    """What the signal handler and the loop share."""

    stop: threading.Event = field(default_factory=threading.Event)
    abandonable: bool = False
    signal: str | None = None

    def on_signal(self, signum, frame) -> None:
        first = not self.stop.is_set()
        self.signal = signal.Signals(signum).name
        self.stop.set()
        if first and self.abandonable:
            self.abandonable = False
            raise Interrupted(self.signal)

    @contextmanager
    def abandonable_step(self):
        if self.stop.is_set():
            raise Interrupted(self.signal or "stop")
        outer, self.abandonable = self.abandonable, True  # steps nest: a fetch within an update
        try:
            yield
        finally:
            self.abandonable = outer


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="feed URL (RSS, Atom, JSON Feed), folder to watch, or a file of article URLs; "
        "none: the sources registered by earlier runs",
    )
    ap.add_argument("--follow", action="store_true", help="keep polling until stopped")
    ap.add_argument("--every", type=float, help="poll interval of these sources, in seconds")
    ap.add_argument("--for", dest="duration", type=float, help="stop after this many seconds")
    ap.add_argument("--json-logs", action="store_true", help="log events as JSON lines")
    ap.add_argument("--status", action="store_true", help="show ingestion status and exit")
    ap.add_argument("--json", action="store_true", help="with --status: machine-readable")


def metrics_path(cfg: SealConfig, home: Path) -> Path:
    return Path(cfg.ingest.metrics_file or home / METRICS).expanduser()


def run_ingest(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    if args.status:
        if not check_home(home, create=False):
            print(f"no seal state in {home} yet: nothing ingested")
            return 0
        with State.open(home, read_only=True) as state:
            print_status(state.ledger, metrics_path(cfg, home), args.json)
        return 0
    if args.json_logs:
        cfg.ingest.json_logs = True
    sources = [source_of(spec) for spec in args.sources]  # user errors before taking the lock
    control = Control()
    # SIGALRM ends a --for run like a signal: an update under way is abandoned, not waited for.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    previous = {s: signal.signal(s, control.on_signal) for s in signals}
    log = EventLog(cfg.ingest.json_logs)
    try:
        with State.open(
            home, near_duplicate_similarity=cfg.store.near_duplicate_similarity
        ) as state:
            run_counts = setup(state, cfg, sources, args.every, log)
            fetcher = Fetcher(
                timeout_s=cfg.ingest.timeout_s,
                max_bytes=cfg.ingest.max_bytes,
                politeness_s=cfg.ingest.politeness_s,
                policy=policy_of(cfg.network),
                sleep=lambda s: control.stop.wait(s),
            )
            metrics = Metrics(
                state.ledger,
                metrics_path(cfg, home),
                time.time(),
                run_counts,
                log,
                cfg.ingest.metrics_interval_s,
            )

            def emit(event: str, **fields) -> None:
                log(event, **fields)
                if event == "progress":  # between the steps of a long update
                    if args.follow:  # sources keep being read and stored
                        gather(pipeline, control, args.follow, polled_once, run_counts)
                    metrics.update()

            pipeline = Pipeline(state, cfg, fetcher, emit, interruptible=control.abandonable_step)
            polled_once: set[int] = set()
            if args.duration:
                signal.setitimer(signal.ITIMER_REAL, args.duration)
            try:
                run(pipeline, control, args.follow, metrics, run_counts, polled_once)
            except Interrupted:
                log("interrupted", signal=control.signal, note="step abandoned; items stay queued")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                fetcher.close()
                metrics.update(force=True)
                log.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    reason = "duration" if control.signal == "SIGALRM" else control.signal or "done"
    log("stopped", reason=reason, **run_counts)
    return 0


def setup(state: State, cfg: SealConfig, sources, every: float | None, log) -> Counter:
    """Register the sources; items whose update committed before a crash become learned."""
    ledger = state.ledger
    for recovered in state.recovered:
        log("recovered", what=recovered)
    # A damaged `current` pointer or version stops the run here with the way back, rather than
    # failing every batch (and rejecting its documents) once the model loads.
    current = state.adapters.current()
    if current:
        state.adapters.verify(current)
    for source in sources:
        known = ledger.ingest_source(source.kind, source.location, every)
        ledger.ingest_update_source(known["id"], next_poll_at=None)  # poll it now
    if not ledger.ingest_sources():
        raise SealError("no sources: give a feed URL, a folder or a file of article URLs")
    # A writer killed while storing leaves vectors without ledger rows: drop them before the
    # near-duplicate search reads the store.
    state.reconcile_vectors(cfg.store.namespace)
    synced = ledger.ingest_sync_items()
    if synced:
        log("synced", items=synced, note="item states taken from committed updates")
    return Counter(polls=0, stored=0, rejected=0, retry=0, learned=0, updates=0)


class Metrics:
    """Rewrites the metrics file and redraws the status line, at most every `interval_s`."""

    def __init__(self, ledger, path: Path, started: float, counts: Counter, log, interval_s):
        self.ledger, self.path, self.started, self.counts = ledger, path, started, counts
        self.log, self.interval_s = log, interval_s
        self.next_at = 0.0

    def update(self, force: bool = False) -> None:
        if force or time.time() >= self.next_at:
            snap = snapshot(self.ledger, self.started, self.counts)
            write_metrics(self.path, snap)
            self.log.show(status_line(snap))
            self.next_at = time.time() + self.interval_s


def gather(
    pipeline: Pipeline, control: Control, follow: bool, polled_once: set[int], counts: Counter
) -> None:
    """Poll the sources that are due and store up to ITEMS_PER_STEP pending items. The loop
    calls it, and a following run also between the steps of an update (one self-edit after
    another takes minutes with a real model on a CPU), so news keeps being stored and is
    retrievable while the model learns. Stored documents have no probes and self-edits yet, so
    the update under way neither checks nor replays them."""
    ledger, now = pipeline.state.ledger, time.time()
    for source in ledger.ingest_sources():
        # One pass polls every source once; --follow keeps each on its schedule.
        due = (source["next_poll_at"] or 0) <= now
        if not control.stop.is_set() and (due if follow else source["id"] not in polled_once):
            pipeline.poll(source)
            polled_once.add(source["id"])
            counts["polls"] += 1
    for item in ledger.ingest_pending(time.time(), ITEMS_PER_STEP):
        if control.stop.is_set():
            break
        counts[pipeline.store(item)] += 1  # stored, rejected or retry


def run(
    pipeline: Pipeline,
    control: Control,
    follow: bool,
    metrics: Metrics,
    counts: Counter,
    polled_once: set[int],
):
    """The loop; returns when stopped, or (without `follow`) when one pass is done."""
    ledger, ingest = pipeline.state.ledger, pipeline.ingest
    while not control.stop.is_set():
        gather(pipeline, control, follow, polled_once, counts)
        # Between updates only: an update under way may be learning the oldest queued items.
        counts["rejected"] += pipeline.bound_queue()
        metrics.update()
        queue = ledger.ingest_queue()
        more_now = bool(ledger.ingest_pending(time.time(), 1))
        used = ledger.ingest_update_seconds(time.time() - schedule.HOUR_S)
        budget = schedule.budget_left_s(used, ingest)
        draining = not follow and not more_now
        learn = budget > 0 and schedule.should_learn(queue, time.time(), ingest, draining=draining)
        if learn:
            batch = schedule.next_batch(queue, ingest)
            decision = pipeline.learn(batch)
            counts["updates"] += decision in ("accept", "rollback")
            counts["learned"] += len(batch) if decision == "accept" else 0
            metrics.update(force=True)
        if more_now or learn:
            continue
        if not follow and (not queue or budget <= 0):
            break
        control.stop.wait(_idle_wait(ledger))


def _idle_wait(ledger) -> float:
    """Sleep until the next source or retry is due (at most 5 s, to notice new batches)."""
    now = time.time()
    due = [s["next_poll_at"] for s in ledger.ingest_sources() if s["next_poll_at"]]
    retry = ledger.db.execute(
        "SELECT min(next_try_at) FROM ingest_items WHERE state = 'seen'"
    ).fetchone()[0]
    due += [retry] if retry else []
    return min([5.0, *(max(0.05, d - now) for d in due)])
