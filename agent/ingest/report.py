"""What `seal ingest` shows: event logs (human lines or JSON lines), a live status line, the
metrics file, and `seal ingest --status` (read-only, works while an ingest runs)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from agent.core.io import write_atomic
from agent.ingest.schedule import HOUR_S

QUIET = {"progress", "polled"}  # human logs show these only in the status line


def rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class EventLog:
    """Events as JSON lines on `out` (`ingest.json_logs`), or as short human lines, plus a status
    line redrawn on `status_to` when it is a terminal."""

    def __init__(
        self, json_lines: bool, out: TextIO | None = None, status_to: TextIO | None = None
    ):
        self.json_lines = json_lines
        self.out = out or sys.stdout
        status_to = status_to or sys.stderr
        self.status_to = status_to if status_to.isatty() else None
        self.status = ""

    def __call__(self, event: str, **fields: Any) -> None:
        if self.json_lines:
            record = {"at": round(time.time(), 3), "event": event, **fields}
            self.out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            self.out.flush()
            return
        if event in QUIET:
            return
        self._clear()
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        self.out.write(f"{time.strftime('%H:%M:%S')} {event} {detail}\n")
        self.out.flush()
        self.show(self.status)

    def _clear(self) -> None:
        if self.status_to and self.status:
            self.status_to.write("\r" + " " * min(len(self.status), 200) + "\r")

    def show(self, line: str) -> None:
        self.status = line
        if self.status_to and line:
            self.status_to.write("\r" + line[:200])
            self.status_to.flush()

    def close(self) -> None:
        if self.status_to and self.status:
            self.status_to.write("\n")


def snapshot(ledger, started_at: float, run_counts: dict[str, int]) -> dict[str, Any]:
    """Everything `--status` and the metrics file report."""
    now = time.time()
    counts = ledger.ingest_counts(now - HOUR_S)
    hours = max(now - started_at, 1.0) / HOUR_S
    return {
        "updated_at": now,
        "pid": os.getpid(),
        "uptime_s": round(now - started_at, 1),
        "rss_mb": round(rss_mb(), 1),
        "queue": counts["queue"],
        "items": counts["by_state"],
        "rejected_reasons": counts["rejected_reasons"],
        "last_hour": counts["updates_since"],
        "this_run": dict(run_counts),
        "this_run_per_hour": {k: round(v / hours, 1) for k, v in run_counts.items()},
        "sources": [
            {
                "location": s["location"],
                "kind": s["kind"],
                "failures": s["failures"],
                "last_ok_at": s["last_ok_at"],
                "last_error": s["last_error"],
                "last_error_at": s["last_error_at"],
                "next_poll_at": s["next_poll_at"],
            }
            for s in ledger.ingest_sources()
        ],
    }


def status_line(snap: dict[str, Any]) -> str:
    items = snap["items"]
    errors = sum(1 for s in snap["sources"] if s["failures"])
    return (
        f"[ingest] items {sum(items.values())}: stored {items.get('stored', 0)}, learned "
        f"{items.get('learned', 0)}, rejected {items.get('rejected', 0)}, waiting "
        f"{items.get('seen', 0)} | queue {snap['queue']} | updates/h "
        f"{snap['last_hour']['n']} | sources failing {errors} | {snap['rss_mb']:.0f} MB"
    )


def write_metrics(path: Path, snap: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(snap, indent=2, default=str) + "\n")


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "never"


def print_status(ledger, metrics_path: Path, as_json: bool) -> None:
    """`seal ingest --status`: from the ledger (read-only) and the running ingest's metrics."""
    snap = snapshot(ledger, time.time(), {})
    for key in ("pid", "uptime_s", "rss_mb", "this_run", "this_run_per_hour"):
        snap.pop(key)
    try:
        snap["running"] = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        snap["running"] = None
    if as_json:
        print(json.dumps(snap, indent=2, default=str))
        return
    items = snap["items"]
    print(
        f"items:   {sum(items.values())} (" + ", ".join(f"{k} {v}" for k, v in items.items()) + ")"
    )
    print(f"queue:   {snap['queue']} stored, waiting to be learned")
    hour = snap["last_hour"]
    print(
        f"updates: {hour['n']} in the last hour ({hour['accepted']} accepted, "
        f"{hour['seconds']:.0f} s of training)"
    )
    for reason, n in snap["rejected_reasons"].items():
        print(f"  rejected {n}: {reason}")
    for s in snap["sources"]:
        state = (
            f"last error {_when(s['last_error_at'])}: {s['last_error']}"
            if s["failures"]
            else (f"ok {_when(s['last_ok_at'])}")
        )
        print(f"source:  {s['location']} ({s['kind']}) {state}")
    running = snap["running"]
    if running:
        print(
            f"metrics: {metrics_path} updated {_when(running['updated_at'])} by pid "
            f"{running['pid']} (up {running['uptime_s']:.0f} s, {running['rss_mb']:.0f} MB)"
        )
