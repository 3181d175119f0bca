"""Soak: `seal ingest --follow` against a local news server for minutes, killed at random moments.

    python evals/soak_ingest.py --minutes 10 --out runs/soak-ingest

A world publishes a story every `--publish-every` seconds and republishes an edited story now
and then, through RSS, Atom and JSON Feed (each story reaches the ingester three times), next to
a flaky feed that turns between HTTP 500, malformed XML, a slow answer and a good feed. An
ingester child runs with the tiny model (`--model`, else the tests' tiny random Llama is built);
at a random moment it is killed with SIGKILL, or (every fourth time) asked to stop with SIGTERM,
which must end it within 10 s; then it is restarted at once. At the end the world stops and one
draining pass (no kill) learns what is left. Checked:

- nothing lost: every story of every feed has an item, every item ended learned or rejected
  (with a reason), every story was learned at least once;
- nothing learned twice: no document is new material in two accepted updates, no two learned
  documents share a text;
- bounded memory: peak RSS of each child (sampled from /proc) and its growth within a child;
- SIGTERM: every child asked to stop exited within 10 s with status 0.

Writes soak.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.core.io import write_atomic  # noqa: E402
from evals.news_server import ALLOW_LOCAL, NewsServer, NewsWorld, Route, start  # noqa: E402
from stores.state import State  # noqa: E402

FEEDS = ("/rss.xml", "/atom.xml", "/feed.json")
SETTINGS = [
    "model.device=cpu",
    "model.dtype=float32",
    "model.threads=1",  # a tiny model gains nothing from a second thread on a busy CPU
    "adapt.epochs=2",
    "adapt.rank=8",
    "self_edit.max_new_tokens=16",
    "eval.max_answer_tokens=6",
    "update.gate=false",
    "ingest.timeout_s=2",
    "ingest.politeness_s=0.05",
    "ingest.backoff_base_s=0.5",
    "ingest.backoff_max_s=5",
    "ingest.poll_interval_s=2",
    "ingest.batch_size=4",
    "ingest.batch_wait_s=3",
    "ingest.min_words=5",
    "ingest.max_attempts=50",
    "ingest.metrics_interval_s=2",
    ALLOW_LOCAL,  # the news server is on 127.0.0.1, which seal refuses by default
]


def build_tiny_model(folder: Path) -> Path:
    """The tests' tiny random Llama (tests/conftest.py), saved as a model folder."""
    from tests.conftest import build_model, build_tokenizer

    if not (folder / "config.json").exists():
        tokenizer = build_tokenizer()
        build_model(tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class Flaky(threading.Thread):
    """Publishes stories, edits some, and turns the flaky feed through its failure modes."""

    def __init__(self, server: NewsServer, every_s: float, seed: int):
        super().__init__(daemon=True)
        self.server, self.every_s = server, every_s
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.edits = 0

    def run(self) -> None:
        world, tick = self.server.world, 0
        modes = [
            Route(500, b"oops"),
            Route(200, b"<rss version='2.0'><channel><<<&&", {"Content-Type": "text/xml"}),
            Route(200, b"<rss/>", delay_s=4.0),
            Route(404, b"gone"),
            Route(302, b"", {"Location": f"{self.server.base}/loop/a"}),
        ]
        while not self.stop.wait(self.every_s):
            tick += 1
            world.publish()
            if tick % 5 == 0:
                world.edit(self.rng.randint(1, len(world.stories)))
                self.edits += 1
            if tick % 3 == 0:
                mode = self.rng.choice([*modes, None])
                if mode is None:
                    body = world.rss(self.server.base)
                    mode = Route(200, body, {"Content-Type": "application/rss+xml"})
                self.server.route("/flaky.xml", mode)


def start_child(home: Path, feeds: list[str], settings: list[str], follow: bool):
    cmd = [sys.executable, "-m", "agent.cli", "ingest", *feeds, "--home", str(home)]
    cmd += ["--json-logs", *(["--follow"] if follow else [])]
    cmd += [a for s in settings for a in ("--set", s)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )


def watch(child, samples: list[float], events: list[str]) -> threading.Thread:
    """Collect the child's event names and sample its memory until it ends."""

    def read() -> None:
        for line in child.stdout:
            try:
                events.append(json.loads(line)["event"])
            except (ValueError, KeyError):
                events.append("unparsed")

    def sample() -> None:
        while child.poll() is None:
            mb = rss_mb(child.pid)
            if mb:
                samples.append(mb)
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def check(home: Path, base: str, stories: int) -> dict:
    """The invariants after the draining pass; returns counts and the violations."""
    problems: list[str] = []
    with State.open(home) as state:
        db = state.ledger.db
        problems += state.ledger.integrity_errors()
        rows = list(
            db.query(
                "SELECT i.*, s.location FROM ingest_items i JOIN ingest_sources s "
                "ON s.id = i.source_id"
            )
        )
        unfinished = [r["id"] for r in rows if r["state"] not in ("learned", "rejected")]
        problems += [f"item {i} not finished" for i in unfinished]
        problems += [
            f"item {r['id']} rejected without reason"
            for r in rows
            if r["state"] == "rejected" and not r["reason"]
        ]
        keys = {(r["location"].rsplit("/", 1)[-1], r["key"]) for r in rows}
        learned_keys = {r["key"] for r in rows if r["state"] == "learned"}
        for n in range(1, stories + 1):
            key = f"{base}/article/{n}.html"
            for feed in FEEDS:
                if (feed.lstrip("/"), key) not in keys:
                    problems.append(f"story {n} from {feed} lost (no item)")
            if key not in learned_keys:
                problems.append(f"story {n} never learned")
        twice = list(
            db.query(
                "SELECT s.document_id, count(DISTINCT u.id) AS n FROM update_self_edits l "
                "JOIN updates u ON u.id = l.update_id AND u.decision = 'accept' "
                "JOIN self_edits s ON s.id = l.self_edit_id WHERE l.role = 'new' "
                "GROUP BY s.document_id HAVING n > 1"
            )
        )
        problems += [f"document {r['document_id']} learned {r['n']} times" for r in twice]
        same_text = list(
            db.query(
                "SELECT content_hash, count(*) AS n FROM documents WHERE status = 'learned' "
                "GROUP BY content_hash HAVING n > 1"
            )
        )
        problems += [f"text {r['content_hash'][:12]} learned {r['n']} times" for r in same_text]
        by_state: dict[str, int] = {}
        for r in rows:
            by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        counts = {
            "items": len(rows),
            "by_state": by_state,
            "learned_documents": db.execute(
                "SELECT count(*) FROM documents WHERE status = 'learned'"
            ).fetchone()[0],
            "accepted_updates": state.ledger.counts()["updates_accepted"],
        }
    return {"problems": problems, **counts}


def run_soak(
    out: Path,
    minutes: float,
    seed: int = 0,
    publish_every: float = 2.0,
    kill_after: tuple[float, float] = (4.0, 40.0),
    model: Path | None = None,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    home = out / "soak-home"
    if home.exists():
        raise SystemExit(f"{home} exists from an earlier run; remove it or use another --out")
    model = model or build_tiny_model(out / "tiny-model")
    settings = [f"model.name={model}", *SETTINGS]
    rng = random.Random(seed)
    world = NewsWorld(seed=seed, feed_size=100_000)
    world.publish(4)
    server = start(world)
    server.route("/flaky.xml", Route(500, b"not yet"))
    feeds = [server.base + f for f in (*FEEDS, "/flaky.xml")]
    flaky = Flaky(server, publish_every, seed)
    flaky.start()
    trials, started = [], time.time()
    deadline = started + minutes * 60
    while time.time() < deadline:
        child = start_child(home, feeds, settings, follow=True)
        samples: list[float] = []
        events: list[str] = []
        reader = watch(child, samples, events)
        life = min(rng.uniform(*kill_after), max(deadline - time.time(), 1.0))
        time.sleep(life)
        how = "SIGTERM" if len(trials) % 4 == 3 else "SIGKILL"
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        reader.join(timeout=5)
        stderr = child.stderr.read()[-400:]
        trials.append(
            {
                "signal": how,
                "life_s": round(life, 1),
                "exit_s": round(time.monotonic() - sent, 2),
                "returncode": child.returncode,
                "peak_rss_mb": round(max(samples, default=0.0), 1),
                # over the second half of its life, after start-up (model, chromadb, MiniLM)
                "rss_growth_mb": round(samples[-1] - samples[len(samples) // 2], 1)
                if len(samples) > 20
                else None,
                "events": {e: events.count(e) for e in sorted(set(events))},
                "stderr_tail": stderr if child.returncode not in (0, -9) else "",
            }
        )
    flaky.stop.set()
    flaky.join()
    drain_started = time.time()
    child = start_child(home, feeds, settings, follow=False)
    samples, events = [], []
    reader = watch(child, samples, events)
    child.wait(timeout=1800)
    reader.join(timeout=5)
    drain = {
        "seconds": round(time.time() - drain_started, 1),
        "returncode": child.returncode,
        "peak_rss_mb": round(max(samples, default=0.0), 1),
        "stderr_tail": child.stderr.read()[-400:] if child.returncode else "",
    }
    result = check(home, server.base, len(world.stories))
    server.shutdown()
    sigterm = [t for t in trials if t["signal"] == "SIGTERM"]
    problems = result.pop("problems")
    # A SIGTERM that lands while the interpreter is still importing (before `seal ingest` installs
    # its handler, and before it opens the state) ends it by the default action: at once, and
    # with nothing to lose. Any later one must end it cleanly (status 0) within 10 s.
    problems += [
        f"SIGTERM exit took {t['exit_s']} s (rc {t['returncode']})"
        for t in sigterm
        if t["exit_s"] > 10
        or t["returncode"] not in (0, -signal.SIGTERM)
        or (t["returncode"] != 0 and t["events"])
    ]
    problems += [f"drain pass exited {drain['returncode']}"] if drain["returncode"] else []
    peaks = [t["peak_rss_mb"] for t in trials if t["peak_rss_mb"]]
    return {
        "minutes": minutes,
        "stories_published": len(world.stories),
        "story_edits": flaky.edits,
        "kills": sum(t["signal"] == "SIGKILL" for t in trials),
        "sigterms": len(sigterm),
        "max_sigterm_exit_s": max((t["exit_s"] for t in sigterm), default=None),
        "sigterms_during_startup": sum(t["returncode"] != 0 for t in sigterm),
        "peak_rss_mb": max(peaks, default=None),
        "first_peaks_mb": peaks[:3],
        "last_peaks_mb": peaks[-3:],
        "lost": sum("lost" in p or "not finished" in p or "never learned" in p for p in problems),
        "learned_twice": sum("learned" in p and "times" in p for p in problems),
        **result,
        "drain": drain,
        "problems": problems,
        "trials": trials,
        "seconds": round(time.time() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--publish-every", type=float, default=4.0, help="seconds between stories")
    ap.add_argument(
        "--kill-after",
        type=float,
        nargs=2,
        default=(5.0, 60.0),
        metavar=("MIN", "MAX"),
        help="each ingester lives a random time between MIN and MAX seconds",
    )
    ap.add_argument("--model", type=Path, help="model folder (default: the tiny random Llama)")
    ap.add_argument("--out", type=Path, default=Path("runs/soak-ingest"))
    args = ap.parse_args(argv)
    result = run_soak(
        args.out,
        args.minutes,
        args.seed,
        args.publish_every,
        tuple(args.kill_after),
        model=args.model,
    )
    write_atomic(args.out / "soak.json", json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k not in ("trials", "problems")}
    print(json.dumps(summary, indent=2))
    for problem in result["problems"]:
        print("FAIL", problem)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
