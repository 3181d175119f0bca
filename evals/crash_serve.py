"""Crash trials of `seal serve`: kill -9 the server while it learns, restart it, and check that
every document it acknowledged is still there, learned or queued, and that none is learned twice.

    python evals/crash_serve.py --trials 20 --out results/serve

Each trial starts the server (a tiny random model with the default tokenizer, so an update takes
seconds; evals/serve_process.py) on one server folder kept across trials, feeds it new documents
through the API, waits until an update runs, sleeps a random moment (0 to --max-delay s) and kills
the process. The next start recovers the state and queues what was not learned. After every
restart each acknowledged document must be known to the API (lost otherwise) and be learned,
queued, learning, or refused with a reason; no document may belong to two accepted updates
(duplicated). A last start drains the queue. Writes crash_trials.json: {"trials", "lost",
"duplicated", ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.io import write_atomic  # noqa: E402
from agent.core.squad import EVAL200, load_squad  # noqa: E402
from agent.serve.users import user_home  # noqa: E402
from evals.serve_process import add_users, make_tiny_model, start_server, tiny_settings  # noqa: E402
from stores.ledger import Ledger  # noqa: E402
from stores.state import LEDGER  # noqa: E402

USER = "crash"
# Longer updates than the tests', so that kills land inside them: more epochs and self-edits.
SLOW_UPDATES = ["adapt.epochs=4", "self_edit.max_new_tokens=24"]
SETTLED = ("learned", "queued", "learning", "refused")


def documents(rng: random.Random, count: int) -> list[str]:
    """Distinct real passages (SQuAD eval200, bundled), so that the gate finds each one new and
    every acknowledged document is meant to be learned."""
    passages = [p.context for p in load_squad(EVAL200)]
    rng.shuffle(passages)
    return passages[:count]


def duplicated(home: Path) -> list[int]:
    """Documents whose self-edits were the new material of more than one accepted update."""
    ledger = Ledger(user_home(home, USER) / LEDGER, read_only=True)
    try:
        rows = ledger.db.query(
            "SELECT s.document_id AS doc, count(DISTINCT u.id) AS n FROM updates u "
            "JOIN update_self_edits l ON l.update_id = u.id AND l.role = 'new' "
            "JOIN self_edits s ON s.id = l.self_edit_id WHERE u.decision = 'accept' "
            "GROUP BY s.document_id HAVING n > 1"
        )
        return [r["doc"] for r in rows]
    finally:
        ledger.close()


def check(api: httpx.Client, acknowledged: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """(lost ids, state of every acknowledged id) as the API reports them after a restart."""
    lost, states = [], {}
    for doc_id in acknowledged:
        response = api.get(f"/v1/documents/{doc_id}")
        if response.status_code == 404:
            lost.append(doc_id)
            continue
        doc = response.json()
        states[doc_id] = doc["state"] if doc["state"] in SETTLED else f"bad: {doc['state']}"
    return lost, states


def run_trials(
    out: Path,
    trials: int,
    seed: int = 0,
    max_delay: float = 8.0,
    docs: int = 2,
    model_dir: Path | None = None,
) -> dict:
    rng = random.Random(seed)
    texts = iter(documents(rng, (trials + 1) * docs))
    home = out / "crash-home"
    key = add_users(home, [USER])[USER]
    settings = tiny_settings(model_dir or make_tiny_model(out / "tiny-model")) + SLOW_UPDATES
    acknowledged: dict[str, str] = {}
    lost: set[str] = set()
    failures: list[str] = []
    killed_learning = 0
    started = time.perf_counter()
    for trial in range(trials + 1):  # the last start only checks and drains
        server = start_server(home, settings, threads=1)
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        trial_lost, states = check(api, acknowledged)
        lost |= set(trial_lost)
        failures += [f"trial {trial}: {d} {s}" for d, s in states.items() if s.startswith("bad")]
        if trial == trials:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                _, states = check(api, acknowledged)
                if all(s in ("learned", "refused") for s in states.values()):
                    break
                time.sleep(1)
            server.stop()
            break
        for _ in range(docs):
            response = api.post("/v1/documents", json={"text": next(texts)})
            if response.status_code != 202:
                failures.append(f"trial {trial}: feed refused: {response.text[:300]}")
                continue
            acknowledged[response.json()["id"]] = "fed"
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline and not api.get("/v1/status").json()["update"]["learning"]
        ):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, max_delay))
        killed_learning += bool(api.get("/v1/status").json()["update"]["learning"])
        server.kill()
        api.close()
    final = dict(states)
    dup = duplicated(home)
    ledger = Ledger(user_home(home, USER) / LEDGER, read_only=True)
    accepted = ledger.counts()["updates_accepted"]
    ledger.close()
    return {
        "trials": trials,
        "lost": len(lost),
        "duplicated": len(dup),
        "documents_fed": len(acknowledged),
        "kills_during_an_update": killed_learning,
        "updates_accepted": accepted,
        "final_states": {
            s: sum(1 for v in final.values() if v == s) for s in sorted(set(final.values()))
        },
        "failures": failures
        + [f"lost {d}" for d in sorted(lost)]
        + [f"document {d} learned twice" for d in dup],
        "seconds": round(time.perf_counter() - started, 1),
        "max_delay_s": max_delay,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=8.0, help="seconds after an update starts")
    ap.add_argument("--out", type=Path, default=Path("runs/serve"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.out / "crash-home").exists():
        raise SystemExit(f"{args.out / 'crash-home'} exists from an earlier run; remove it first")
    result = run_trials(args.out, args.trials, args.seed, args.max_delay)
    write_atomic(args.out / "crash_trials.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "failures"}, indent=2))
    for failure in result["failures"]:
        print("FAIL", failure)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
