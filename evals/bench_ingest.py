"""`python evals/bench.py ingest`: items per hour stored and learned by `seal ingest --follow`
against the local news server (evals/news_server.py), and its memory over the run.

The server starts with a backlog of `--backlog` stories and publishes one every `--publish-every`
seconds through RSS, Atom and JSON Feed (so each story arrives three times and two copies are
deduplicated). The ingester runs as its own process with the given config (default: the default
model and the default `ingest` settings, compute budget included) for `--minutes`; its resident
memory is sampled from /proc every few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from evals.news_server import ALLOW_LOCAL, NewsWorld, start
from evals.soak_ingest import rss_mb
from stores.state import State

REPO = Path(__file__).resolve().parents[1]


def _publish(world: NewsWorld, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        world.publish()


def run(
    config_args: list[str],
    minutes: float,
    *,
    backlog: int = 30,
    publish_every: float = 20.0,
    poll_every: float = 60.0,
    sample_every: float = 5.0,
) -> dict:
    world = NewsWorld(seed=0, feed_size=100_000)
    world.publish(backlog)
    server = start(world)
    stop = threading.Event()
    threading.Thread(target=_publish, args=(world, publish_every, stop), daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        home = Path(tmp) / "home"
        cmd = [sys.executable, "-m", "agent.cli", "ingest", "--follow", "--json-logs"]
        cmd += [*(server.base + f for f in ("/rss.xml", "/atom.xml", "/feed.json"))]
        cmd += ["--home", str(home), "--every", str(poll_every), "--for", str(minutes * 60)]
        cmd += ["--set", ALLOW_LOCAL]  # the news server is on 127.0.0.1, refused by default
        cmd += config_args
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.time()
        child = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        events: list[dict] = []
        reader = threading.Thread(
            target=lambda: events.extend(json.loads(line) for line in child.stdout), daemon=True
        )
        reader.start()
        memory: list[tuple[float, float]] = []
        while child.poll() is None:
            mb = rss_mb(child.pid)
            if mb:
                memory.append((round(time.time() - started, 1), round(mb, 1)))
            time.sleep(sample_every)
        reader.join(timeout=10)
        seconds = time.time() - started
        stop.set()
        server.shutdown()
        if child.returncode != 0:
            raise RuntimeError(f"seal ingest exited {child.returncode}: {child.stderr.read()}")
        with State.open(home, read_only=True) as state:
            counts = state.ledger.ingest_counts(0.0)
            batches = list(
                state.ledger.db.query(
                    "SELECT b.*, u.reason FROM ingest_batches b "
                    "LEFT JOIN updates u ON u.id = b.update_id ORDER BY b.id"
                )
            )
    by_state = counts["by_state"]
    stored = sum(e["event"] == "stored" for e in events)
    learned_docs = sum(len(e["documents"]) for e in events if e["event"] == "learned")
    hours = seconds / 3600
    learning = [e["at"] - started for e in events if e["event"] == "learning"]
    self_edits = [
        e["at"] - started
        for e in events
        if e["event"] == "progress" and e["message"].startswith("self-edit")
    ]
    mbs = [mb for _, mb in memory]
    quarter = max(len(mbs) // 4, 1)
    return {
        "minutes": minutes,
        "seconds": round(seconds, 1),
        "stories_published": len(world.stories),
        "items_seen": counts["items"],
        "items_by_state": by_state,
        "stored": stored,
        "learned": learned_docs,
        "stored_per_hour": round(stored / hours, 1),
        "learned_per_hour": round(learned_docs / hours, 1),
        "queue_at_end": counts["queue"],
        "updates": len(batches),
        "updates_accepted": sum(b["decision"] == "accept" for b in batches),
        "update_seconds": [round(b["seconds"], 1) for b in batches],
        "update_decisions": [f"{b['decision']}: {b['reason']}" for b in batches],
        "documents_per_update": [b["n_documents"] for b in batches],
        "update_share_of_time": round(sum(b["seconds"] for b in batches) / seconds, 3),
        # when updates started, and when each self-edit began (seconds into the run): the pace
        # of an update that the run's end cut short
        "updates_started_at_s": [round(t, 1) for t in learning],
        "self_edits_started_at_s": [round(t, 1) for t in self_edits],
        "rss_mb_peak": max(mbs, default=None),
        "rss_mb_first_quarter_peak": max(mbs[:quarter], default=None),
        "rss_mb_last_quarter_peak": max(mbs[-quarter:], default=None),
        "rss_mb_samples": memory,
        "cpu": os.cpu_count(),
        "settings": {
            "backlog": backlog,
            "publish_every_s": publish_every,
            "poll_every_s": poll_every,
        },
    }


def report(result: dict) -> str:
    return (
        f"ingest for {result['minutes']:g} min: {result['stored']} stored "
        f"({result['stored_per_hour']:.0f}/h), {result['learned']} learned "
        f"({result['learned_per_hour']:.0f}/h) in {result['updates']} updates "
        f"({result['update_share_of_time']:.0%} of the time), queue {result['queue_at_end']} at "
        f"the end; RSS peak {result['rss_mb_peak']} MB (first quarter "
        f"{result['rss_mb_first_quarter_peak']}, last {result['rss_mb_last_quarter_peak']})"
    )
