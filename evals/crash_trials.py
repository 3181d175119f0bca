"""Crash trials: kill -9 a writer at random moments and check the state after every restart.

    python evals/crash_trials.py --trials 200 --out runs/crash

Each trial starts a child process that, on one state folder kept across trials, loops forever:
ledger rows (a document, its passage, a self-edit), a 1 MB adapter commit, the accepting update
and the `current` switch in one transaction, and every third round a garbage collection. The child
prints each write once it has returned. The parent kills it at a random moment after it has
opened the state (its own recovery included), reopens the state as a writer (which runs
recovery) and checks: the state opens; `current` names a complete,
checksum-valid version at least as new as the last one reported; every version on disk has a
ledger row and every live ledger row a valid folder; nothing reported committed is lost (a
version may only be gone through garbage collection); no temporary folder survives; the ledger
passes SQLite's integrity and foreign-key checks. Writes `crash_trials.json` to --out.

The damaged-ledger class (`--damage-every N`): after every N-th trial the ledger is emptied,
deleted, or has a page overwritten (in turn), as a failing disk or a careless user would. Then a
writer must refuse to open the state and delete nothing; `seal doctor --rebuild`
(stores/doctor.py) must give back a ledger that names every version folder on disk, points
`current` at a complete version and passes SQLite's checks; and the trials go on from there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.io import write_atomic  # noqa: E402
from evals import crash_serve  # noqa: E402
from evals.adversary import delete_ledger, empty_ledger, flip_page, versions_on_disk  # noqa: E402
from stores.adapters import BASE  # noqa: E402
from stores.doctor import rebuild  # noqa: E402
from stores.ledger_file import LedgerDamaged  # noqa: E402
from stores.state import State  # noqa: E402

ADAPTER_BYTES = 1 << 20
LEDGER_DAMAGE = {"emptied": empty_ledger, "deleted": delete_ledger, "page-flipped": flip_page}


def _write_weights(folder: Path) -> None:
    # Many small writes, so that kills land inside a file as well as between files.
    with open(folder / "adapter_model.safetensors", "wb") as fh:
        for _ in range(ADAPTER_BYTES // 65536):
            fh.write(os.urandom(65536))
    (folder / "adapter_config.json").write_text('{"r": 8}')


def writer(home: Path, trial: int) -> None:
    """The child: commit forever, reporting each finished write on stdout."""
    state = State.open(home)
    print("ready", flush=True)
    for n in range(1, 1_000_000):
        tag = f"{trial}-{n}"
        doc, passages = state.ledger.add_document(
            namespace="user",
            source="crash-trial",
            uri=tag,
            title=tag,
            content_hash=tag,
            chars=len(tag),
            passages=[(f"passage {tag}", f"passage-{tag}")],
        )
        edit = state.ledger.add_self_edit(
            document_id=doc,
            passage_id=passages[0],
            format="implications",
            text=tag,
            sequences=[tag],
        )
        print(f"doc {doc}", flush=True)
        parent = state.adapters.current()
        version = state.adapters.commit(
            _write_weights, parent=parent, base_fingerprint="crash-trial", config={"trial": tag}
        )
        with state.ledger.transaction():
            state.ledger.record_update(
                decision="accept",
                reason="crash trial",
                version=version,
                parent_version=parent or None,
                n_sequences=1,
                new_self_edits=[edit],
            )
            state.adapters.set_current(version)
        print(f"version {version}", flush=True)
        if n % 3 == 0:
            state.adapters.gc(keep_last=2)
            print("gc", flush=True)


def check(state: State, docs: set[int], versions: set[int]) -> list[str]:
    """Every invariant the state must hold after a crash; returns the violations."""
    problems = list(state.ledger.integrity_errors())
    rows = {r["version"]: r for r in state.ledger.adapter_versions(include_collected=True)}
    live = {v for v, r in rows.items() if r["collected_at"] is None}
    for version in sorted(live):
        try:
            state.adapters.verify(version)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            problems.append(f"live version {version} fails verification: {exc}")
    folders = state.adapters.versions_dir
    names = sorted(p.name for p in folders.iterdir()) if folders.exists() else []
    on_disk = {int(n[1:]) for n in names if n.startswith("v")}
    if on_disk != live:
        problems.append(f"folders {sorted(on_disk)} != live ledger versions {sorted(live)}")
    problems += [f"leftover {n}" for n in names if n.startswith(".")]
    current = state.adapters.current()
    if current != BASE and current not in live:
        problems.append(f"current {current} is not a live version")
    if versions and current < max(versions):
        problems.append(f"current {current} is older than reported commit {max(versions)}")
    problems += [f"committed version {v} lost" for v in sorted(versions - rows.keys())]
    known_docs = {r["id"] for r in state.ledger.documents()}
    problems += [f"committed document {d} lost" for d in sorted(docs - known_docs)]
    return problems


def damaged_ledger_trial(home: Path, kind: str) -> list[str]:
    """Damage the ledger (LEDGER_DAMAGE[kind]); a writer must refuse it and delete nothing, and
    the doctor's rebuild must give back every version on disk. Returns the violations."""
    on_disk = versions_on_disk(home)
    with State.open(home, read_only=True) as state:
        pointer = state.adapters.current()
    LEDGER_DAMAGE[kind](home)
    problems = []
    try:
        State.open(home).close()
        problems.append(f"{kind}: a writer opened the damaged ledger")
    except LedgerDamaged:
        pass
    if versions_on_disk(home) != on_disk:
        problems.append(
            f"{kind}: refusing deleted versions {set(on_disk) - set(versions_on_disk(home))}"
        )
    rebuild(home)
    with State.open(home) as state:
        problems += [f"{kind}, rebuilt: {p}" for p in state.ledger.integrity_errors()]
        live = {r["version"] for r in state.ledger.adapter_versions()}
        if set(on_disk) - live or state.recovered:
            problems.append(f"{kind}, rebuilt: versions {on_disk} on disk, {sorted(live)} named")
        # The old pointer where its row could be read, else the newest complete version.
        current = state.adapters.current()
        if on_disk and current not in (pointer, max(on_disk)):
            problems.append(f"{kind}, rebuilt: current {current}, was {pointer}")
        if current:
            state.adapters.verify(current)
    return problems


def run_trials(
    home: Path, trials: int, seed: int = 0, max_delay: float = 1.5, damage_every: int = 0
) -> dict:
    rng = random.Random(seed)
    docs: set[int] = set()
    versions: set[int] = set()
    stats: Counter = Counter()
    failures: list[str] = []
    started = time.perf_counter()
    for trial in range(trials):
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", str(home), str(trial)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The delay starts once the writer has opened (and recovered) the state, so that a slow
        # start on a loaded machine does not turn trials into kills during start-up.
        ready = child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, max_delay))
        child.kill()
        out, err = child.communicate()
        if not ready:
            failures.append(f"trial {trial}: writer did not start: {err[-500:]}")
            continue
        if child.returncode != -9:
            failures.append(f"trial {trial}: writer exited {child.returncode}: {err[-500:]}")
            continue
        for line in out.splitlines():
            kind, _, value = line.partition(" ")
            if kind == "ready":
                continue
            if kind == "doc":
                docs.add(int(value))
            elif kind == "version":
                versions.add(int(value))
            stats[f"{kind} reported"] += 1
        try:
            with State.open(home) as state:
                stats["recovered leftovers"] += len(state.recovered)
                stats["trials with recovery work"] += bool(state.recovered)
                failures += [f"trial {trial}: {p}" for p in check(state, docs, versions)]
        except Exception as exc:  # noqa: BLE001 - a state that cannot open is the worst finding
            failures.append(f"trial {trial}: state does not open: {exc}")
        stats["trials"] += 1
        if damage_every and (trial + 1) % damage_every == 0:
            kind = list(LEDGER_DAMAGE)[stats["damaged ledgers"] % len(LEDGER_DAMAGE)]
            failures += [f"trial {trial}: {p}" for p in damaged_ledger_trial(home, kind)]
            stats["damaged ledgers"] += 1
            # What the rebuilt ledger can no longer know (documents of an emptied ledger, the
            # rows of collected versions) is not "lost" by the trials that follow.
            with State.open(home, read_only=True) as state:
                docs &= {r["id"] for r in state.ledger.documents()}
                named = state.ledger.adapter_versions(include_collected=True)
                versions &= {r["version"] for r in named}
    return {
        "trials": trials,
        "failures": failures,
        "committed_documents": len(docs),
        "committed_versions": len(versions),
        "stats": dict(stats),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--damage-every",
        type=int,
        default=0,
        metavar="N",
        help="damage the ledger after every N-th trial, then rebuild it (0: never)",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/crash"))
    ap.add_argument(
        "--serve",
        action="store_true",
        help="kill -9 `seal serve` during updates instead (evals/crash_serve.py)",
    )
    ap.add_argument("--child", nargs=2, metavar=("HOME", "TRIAL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        writer(Path(args.child[0]), int(args.child[1]))
        return 0
    if args.serve:
        return crash_serve.main(
            ["--trials", str(args.trials), "--seed", str(args.seed), "--out", str(args.out)]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    home = args.out / "home"
    if home.exists():
        raise SystemExit(f"{home} exists from an earlier run; remove it or use another --out")
    result = run_trials(home, args.trials, args.seed, damage_every=args.damage_every)
    write_atomic(args.out / "crash_trials.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "failures"}, indent=2))
    for failure in result["failures"]:
        print("FAIL", failure)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
