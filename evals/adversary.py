"""The adversarial harness of issue 17: damage a learned state in every way a hostile user or a
failing disk would, run every command on it as a real process, and check the invariant

    nothing learned is deleted (no adapter version, no stored passage); every command either
    works or says what is wrong and how to fix it (exit status 2, one line, no traceback); no
    damaged ledger is silently reset.

    python evals/adversary.py --out results/hardening            # the tests' tiny model
    python evals/adversary.py --measure-check 20000               # quick_check's cost

A baseline state is learned once (`seal learn` twice: adapter versions v1 and v2, v2 current);
each (damage, command) pair runs on a fresh copy of it. Writes `damage.json`: one row per damage
class x command with {"damage", "command", "exit_code", "traceback", "versions_before",
"versions_after"} plus the passages (below), the first line of the command's error and the
verdict; then "after_rebuild": for each lost or damaged ledger, `seal doctor --rebuild` followed
by `seal learn` of a new document (the data loss of issue 17: the next writer deleted every
passage the rebuilt ledger did not name); and a summary.

Passages are counted in the passage store (HOME/vectors/, every namespace), read from a copy of
the folder: "passages_before" is what the baseline holds (before any damage), "passages_damaged"
what is left right after the damage (fewer only where the damage removes vectors/), and
"passages_after" what is there after the command. A passage held right after the damage that is
gone after the command (or whose text changed) is in "lost_passages" and fails the pair, as a
deleted version does; a writer may add passages (the document it learns, or the ledger's passages
it stores again into a deleted vectors/).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.core.io import write_atomic  # noqa: E402
from evals.soak_ingest import build_tiny_model  # noqa: E402
from stores.ledger import Ledger  # noqa: E402
from stores.ledger_file import quick_check  # noqa: E402
from stores.passages import PassageStore  # noqa: E402
from stores.state import LEDGER, VECTORS  # noqa: E402

# Facts in the tiny model's vocabulary (tests/conftest.py), one document each.
DOCUMENTS = {
    "paris.txt": "The capital of France is Paris. Paris is a city on the river Seine.",
    "rome.txt": "The capital of Italy is Rome. Rome is a city on the river Tiber.",
    "tower.txt": "The tower in Paris was built in 1889. Many people visit the museum every year.",
    "bridge.txt": "The bridge in Rome was built in 1990. The city of Rome has a famous old temple.",
}
SETTINGS = [
    "model.device=cpu",
    "model.dtype=float32",
    "model.threads=1",
    "adapt.epochs=1",
    "adapt.rank=8",
    "self_edit.max_new_tokens=8",
    "eval.max_answer_tokens=6",
    "update.gate=false",  # the tiny random model learns too little to pass the retention gate
    "ingest.min_words=5",
    "ingest.batch_wait_s=0",
]
TIMEOUT_S = 180.0
TRACEBACK = "Traceback (most recent call last)"


def _ledger(home: Path) -> Path:
    return home / LEDGER


def _drop_ledger_files(home: Path, keep_main: bool) -> None:
    for suffix in ("-wal", "-shm") if keep_main else ("", "-wal", "-shm"):
        Path(f"{_ledger(home)}{suffix}").unlink(missing_ok=True)


def empty_ledger(home: Path) -> None:
    """`: > ledger.sqlite`: the file is there, with nothing in it."""
    _drop_ledger_files(home, keep_main=True)
    _ledger(home).write_bytes(b"")


def delete_ledger(home: Path) -> None:
    _drop_ledger_files(home, keep_main=False)


def flip_page(home: Path) -> None:
    """Overwrite the start of the adapter_versions table's root page (a b-tree page header)."""
    conn = sqlite3.connect(_ledger(home))
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'adapter_versions'"
    ).fetchone()[0]
    conn.close()
    with open(_ledger(home), "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * 64)


def _edit_ledger(home: Path, sql: str) -> None:
    conn = sqlite3.connect(_ledger(home))
    conn.execute("PRAGMA foreign_keys = OFF")  # damage is what foreign keys would refuse
    conn.execute(sql)
    conn.commit()
    conn.close()


def dangle_current(home: Path) -> None:
    _edit_ledger(home, "UPDATE pointers SET version = 99 WHERE name = 'current'")


def delete_current(home: Path) -> None:
    _edit_ledger(home, "DELETE FROM pointers WHERE name = 'current'")


def _remove(relative: str) -> Callable[[Path], None]:
    def damage(home: Path) -> None:
        target = home / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return damage


def read_only(home: Path) -> None:
    """Nothing to change on disk: the command runs with `home` mounted read-only (run_command)."""


DAMAGES: dict[str, Callable[[Path], None]] = {
    "ledger-emptied": empty_ledger,
    "ledger-deleted": delete_ledger,
    "ledger-page-flipped": flip_page,
    "current-dangling": dangle_current,
    "current-row-deleted": delete_current,
    "read-only-home": read_only,
    "marker-deleted": _remove("seal-home.json"),
    "vectors-deleted": _remove("vectors"),
    "old-version-folder-deleted": _remove("adapters/versions/v000001"),
    "adapters-folder-deleted": _remove("adapters"),
}
COMMANDS = ("status", "history", "learn", "ingest", "chat", "rollback", "export")
# Damage that leaves the ledger unusable: a writer that exits 0 on it has reset or written it.
LEDGER_DAMAGE = ("ledger-emptied", "ledger-deleted", "ledger-page-flipped")


@dataclass
class Setup:
    """What every run shares: the baseline state, the documents, the --set flags."""

    baseline: Path
    docs: Path
    settings: list[str]
    work: Path


def versions_on_disk(home: Path) -> list[int]:
    folder = home / "adapters" / "versions"
    names = sorted(p.name for p in folder.glob("v[0-9]*")) if folder.is_dir() else []
    return [int(n[1:]) for n in names if n[1:].isdigit()]


def _query_ledger(home: Path, sql: str) -> list[tuple] | None:
    """`sql`'s rows from a copy of the ledger with its write-ahead log (what the last writer
    committed, the state itself untouched); None: no readable ledger."""
    path = _ledger(home)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with tempfile.TemporaryDirectory(prefix="seal-adversary-ledger-") as tmp:
        copy = Path(tmp) / LEDGER
        for suffix in ("", "-wal"):
            if Path(f"{path}{suffix}").exists():
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        try:
            conn = sqlite3.connect(copy)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return None


def ledger_versions(home: Path) -> list[int] | None:
    """The versions a readable ledger names (None: no readable ledger)."""
    rows = _query_ledger(home, "SELECT version FROM adapter_versions ORDER BY version")
    return None if rows is None else [r[0] for r in rows]


def ledger_passages(home: Path) -> dict[int, str] | None:
    """{passage id: text} of the passages a readable ledger holds for documents not forgotten
    (None: no readable ledger)."""
    rows = _query_ledger(
        home,
        "SELECT p.id, p.text FROM passages p JOIN documents d ON d.id = p.document_id "
        "WHERE d.forgotten_at IS NULL",
    )
    return None if rows is None else dict(rows)


def stored_passages(home: Path) -> dict[int, str] | None:
    """{passage id: text} of every namespace in the passage store ({} without one; the ids are
    the ledger's, unique across namespaces); None when the store cannot be read. Read from a
    copy of the folder: chromadb opens its database for writing even to read."""
    vectors = home / VECTORS
    if not vectors.is_dir():
        return {}
    with tempfile.TemporaryDirectory(prefix="seal-adversary-vectors-") as tmp:
        copy = Path(tmp) / VECTORS
        shutil.copytree(vectors, copy)
        try:
            with PassageStore(copy) as store:
                return {
                    pid: text
                    for ns in store.namespaces()
                    for pid, text in store.texts(ns, sorted(store.passage_ids(ns))).items()
                }
        except Exception:  # noqa: BLE001 - chromadb and sqlite raise their own on damage
            return None


def lost(held: dict[int, str] | None, now: dict[int, str] | None) -> list[int]:
    """The passages of `held` that `now` lacks or holds with another text (an unreadable store
    has lost them all)."""
    now = now or {}
    return sorted(i for i, text in (held or {}).items() if now.get(i) != text)


def passage_counts(baseline: int | None, damaged, stored) -> dict:
    """A row's passage columns: held before the damage, right after it and after the command,
    and those the command lost."""
    return {
        "passages_before": baseline,
        "passages_damaged": _count(damaged),
        "passages_after": _count(stored),
        "lost_passages": lost(damaged, stored),
    }


def _count(passages: dict[int, str] | None) -> int | None:
    return None if passages is None else len(passages)


def seal(
    args: list[str], settings: list[str], stdin: str = "", prefix: list[str] | None = None
) -> subprocess.CompletedProcess:
    """`seal ARGS --set SETTINGS...` as a process; `prefix`: what to run it under (a mount)."""
    flags = [a for s in settings for a in ("--set", s)]
    cmd = [*(prefix or []), sys.executable, "-m", "agent.cli", *args, *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, env=env, cwd=REPO, timeout=TIMEOUT_S
    )


def read_only_prefix(home: Path) -> list[str] | None:
    """A command prefix that runs with `home` mounted read-only: a private mount namespace where
    root may bind-mount; else (not root) the folder is made unwritable. None: neither works."""
    if os.geteuid() != 0:
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return []
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(home)]


CHAT_INPUT = "Where was the tower built?\n/quit\n"


def command_args(command: str, home: Path, setup: Setup, n: int) -> tuple[list[str], str]:
    """The command line (after `seal`) and the standard input of `command` on `home`."""
    args = {
        "status": ["status"],
        "history": ["history"],
        "learn": ["learn", str(setup.docs / "tower.txt")],
        "ingest": ["ingest", str(setup.docs / "inbox")],
        "chat": ["chat"],
        "rollback": ["rollback", "1"],
        "export": ["export", str(setup.work / f"export-{n}.tar.gz")],
    }[command]
    # The chat is asked one question: a chat that starts but fails every answer is not working.
    return [*args, "--home", str(home)], CHAT_INPUT if command == "chat" else ""


def judge(row: dict, done: subprocess.CompletedProcess, named: list[int] | None) -> None:
    """Add the verdict to a row: what was deleted, whether the ledger was reset, and `ok`: the
    command worked (0) or refused with one `error:` line (2), with no traceback, no version or
    passage deleted and no reset. `named`: the versions the ledger names after the command."""
    before, errors = set(row["versions_before"]), row["message"]
    row["deleted_versions"] = sorted(before - set(row["versions_after"]))
    # A reset: a writer that succeeded on a lost or damaged ledger, or a readable ledger that no
    # longer names the versions the damaged state had.
    row["silent_reset"] = done.returncode == 0 and (
        (row["damage"] in LEDGER_DAMAGE and row["command"] not in ("status", "history"))
        or (named is not None and not before <= set(named))
    )
    clean = done.returncode == 0 or (done.returncode == 2 and bool(errors))
    if row["command"] == "chat" and done.returncode == 0 and "error:" in done.stdout:
        clean = False  # it started, but the question got an error instead of an answer
        row["message"] = done.stdout[done.stdout.index("error:") :].splitlines()[0][:400]
    wrong = row["traceback"] or row["deleted_versions"] or row["lost_passages"]
    row["ok"] = clean and not (wrong or row["silent_reset"])
    if not clean:
        row["stderr_tail"] = done.stderr[-1500:]


def run_pair(damage: str, command: str, setup: Setup, n: int, baseline: int | None) -> dict:
    """`command` on a fresh copy of the baseline with `damage` applied; `baseline`: how many
    passages the baseline's store holds."""
    home = setup.work / f"home-{n}"
    shutil.copytree(setup.baseline, home)
    DAMAGES[damage](home)
    before = versions_on_disk(home)
    damaged = stored_passages(home)
    args, stdin = command_args(command, home, setup, n)
    prefix: list[str] | None = []
    if damage == "read-only-home":
        prefix = read_only_prefix(home)
        if prefix is None:
            return {"damage": damage, "command": command, "skipped": "no read-only mount"}
    started = time.monotonic()
    done = seal(args, setup.settings, stdin, prefix)
    seconds = round(time.monotonic() - started, 1)
    if damage == "read-only-home" and os.geteuid() != 0:
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    stored = stored_passages(home)
    row = {
        "damage": damage,
        "command": command,
        "exit_code": done.returncode,
        "traceback": TRACEBACK in done.stderr or TRACEBACK in done.stdout,
        "versions_before": before,
        "versions_after": versions_on_disk(home),
        **passage_counts(baseline, damaged, stored),
        "message": _first_error(done),
        "seconds": seconds,
    }
    judge(row, done, ledger_versions(home))
    shutil.rmtree(home, ignore_errors=True)
    return row


def _first_error(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return (errors[0] if errors else "")[:400]


REBUILD_AND_LEARN = "doctor+learn"


def run_after_rebuild(damage: str, setup: Setup, n: int, baseline: int | None) -> dict:
    """The scenario of issue 17's data loss on a fresh copy with `damage` (a lost or damaged
    ledger): `seal doctor --rebuild`, then `seal learn` of a new document, whose writer removes
    the vectors its ledger does not name. `ok`: both exit 0 with no traceback, no version
    deleted, the ledger names every version, every passage held right after the damage is still
    in the store and in the ledger under its id with its text ("lost_passages",
    "unnamed_passages"), and the new document's passages are in both. "exit_code": the first
    step's that was not 0, else 0."""
    home = setup.work / f"rebuilt-{n}"
    shutil.copytree(setup.baseline, home)
    DAMAGES[damage](home)
    before = versions_on_disk(home)
    damaged = stored_passages(home)
    started = time.monotonic()
    steps = [
        seal(["doctor", "--rebuild", "--home", str(home)], setup.settings),
        seal(command_args("learn", home, setup, n)[0], setup.settings),
    ]
    stored, named = stored_passages(home), ledger_passages(home)
    learned = sorted((named or {}).keys() - (damaged or {}).keys())
    row = {
        "damage": damage,
        "command": REBUILD_AND_LEARN,
        "exit_code": next((s.returncode for s in steps if s.returncode), 0),
        "step_exit_codes": [s.returncode for s in steps],
        "traceback": any(TRACEBACK in s.stderr or TRACEBACK in s.stdout for s in steps),
        "versions_before": before,
        "versions_after": versions_on_disk(home),
        **passage_counts(baseline, damaged, stored),
        "unnamed_passages": lost(damaged, named),
        "learned_passages": learned,
        "message": next((_first_error(s) for s in steps if s.returncode), ""),
        "seconds": round(time.monotonic() - started, 1),
    }
    row["deleted_versions"] = sorted(set(before) - set(row["versions_after"]))
    row["silent_reset"] = not set(before) <= set(ledger_versions(home) or [])
    row["ok"] = not (
        row["exit_code"]
        or row["traceback"]
        or row["deleted_versions"]
        or row["silent_reset"]
        or row["lost_passages"]
        or row["unnamed_passages"]
        or not learned
        or not set(learned) <= (stored or {}).keys()
    )
    if not row["ok"]:
        row["stderr_tail"] = "".join(s.stderr for s in steps)[-1500:]
    shutil.rmtree(home, ignore_errors=True)
    return row


def write_documents(work: Path) -> Path:
    """The documents the commands read: DOCUMENTS, and an inbox folder for `seal ingest`."""
    docs = work / "docs"
    (docs / "inbox").mkdir(parents=True)
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text + "\n", encoding="utf-8")
    (docs / "inbox" / "bridge.txt").write_text(DOCUMENTS["bridge.txt"] + "\n", encoding="utf-8")
    return docs


def build_baseline(work: Path, settings: list[str]) -> Setup:
    """Learn paris.txt then rome.txt: adapter versions v1 and v2, v2 current."""
    docs = write_documents(work)
    baseline = work / "baseline"
    for name in ("paris.txt", "rome.txt"):
        done = seal(["learn", str(docs / name), "--home", str(baseline)], settings)
        if done.returncode != 0:
            raise SystemExit(f"the baseline `seal learn {name}` failed:\n{done.stderr[-2000:]}")
    if versions_on_disk(baseline) != [1, 2]:
        raise SystemExit(f"baseline has versions {versions_on_disk(baseline)}, expected [1, 2]")
    return Setup(baseline, docs, settings, work)


def run_pairs(
    setup: Setup, pairs: list[tuple[str, str]], after_rebuild: list[str] | None = None
) -> dict:
    """Each (damage, command) pair on a fresh copy of the baseline, and `seal doctor --rebuild`
    then `seal learn` after each damage of `after_rebuild` (default: every lost or damaged
    ledger): {"rows", "after_rebuild", "summary"}."""
    held = stored_passages(setup.baseline)
    if not held:
        raise SystemExit(f"the baseline's passage store holds no passage: {held}")
    baseline = len(held)
    rows = [
        run_pair(damage, command, setup, n, baseline) for n, (damage, command) in enumerate(pairs)
    ]
    rebuilt = [
        run_after_rebuild(damage, setup, n, baseline)
        for n, damage in enumerate(LEDGER_DAMAGE if after_rebuild is None else after_rebuild)
    ]
    done = [r for r in rows if "skipped" not in r]
    summary = {
        "pairs": len(rows),
        "skipped": len(rows) - len(done),
        "tracebacks": sum(r["traceback"] for r in done),
        "deleted_versions": sum(len(r["deleted_versions"]) for r in done),
        "lost_passages": sum(len(r["lost_passages"]) for r in done),
        "silent_resets": sum(r["silent_reset"] for r in done),
        "worked": sum(r["exit_code"] == 0 for r in done),
        "refused_clearly": sum(r["exit_code"] == 2 and r["ok"] for r in done),
        "passages_baseline": baseline,
        "after_rebuild": {
            "checks": len(rebuilt),
            "ok": sum(r["ok"] for r in rebuilt),
            "tracebacks": sum(r["traceback"] for r in rebuilt),
            "deleted_versions": sum(len(r["deleted_versions"]) for r in rebuilt),
            "lost_passages": sum(len(r["lost_passages"]) for r in rebuilt),
            "unnamed_passages": sum(len(r["unnamed_passages"]) for r in rebuilt),
        },
        "failures": [f"{r['damage']} x {r['command']}" for r in [*done, *rebuilt] if not r["ok"]],
    }
    return {"rows": rows, "after_rebuild": rebuilt, "summary": summary}


def run(
    settings: list[str],
    pairs: list[tuple[str, str]] | None = None,
    model: Path | None = None,
    after_rebuild: list[str] | None = None,
) -> dict:
    """The pairs (default: every damage x every command) and the rebuild checks (default: every
    lost or damaged ledger) on a baseline learned with `model` (default: the tests' tiny model,
    built in a temporary folder)."""
    pairs = pairs or [(d, c) for d in DAMAGES for c in COMMANDS]
    with tempfile.TemporaryDirectory(prefix="seal-adversary-") as tmp:
        model = model or build_tiny_model(Path(tmp) / "tiny-model")
        setup = build_baseline(Path(tmp), [f"model.name={model}", *settings])
        return run_pairs(setup, pairs, after_rebuild)


def table(result: dict) -> str:
    """damage.json as a Markdown table: each cell the command's exit status, `ok` when it worked
    (0) or refused with one clear line (2), and what went wrong otherwise."""
    rows = result["rows"]
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = [
        "| damage | " + " | ".join(commands) + " |",
        "|---" * (len(commands) + 1) + "|",
    ]
    for damage in dict.fromkeys(r["damage"] for r in rows):
        cells = []
        for command in commands:
            [row] = [r for r in rows if r["damage"] == damage and r["command"] == command]
            if "skipped" in row:
                cells.append("skipped")
                continue
            cells.append(f"{row['exit_code']} {_verdict(row)}")
        lines.append(f"| {damage} | " + " | ".join(cells) + " |")
    s = result["summary"]
    lines.append(
        f"\n{s['pairs']} pairs: {s['worked']} worked (exit 0), {s['refused_clearly']} refused "
        f"with one line (exit 2); {s['tracebacks']} tracebacks, {s['deleted_versions']} deleted "
        f"versions, {s['lost_passages']} lost passages, {s['silent_resets']} silent resets."
    )
    return "\n".join([*lines, "", *passages_table(result), "", *after_rebuild_table(result)]) + "\n"


def _verdict(row: dict) -> str:
    wrong = [k for k in ("traceback", "silent_reset") if row[k]]
    wrong += ["deleted versions"] if row["deleted_versions"] else []
    wrong += ["lost passages"] if row["lost_passages"] else []
    wrong += ["passages not in the ledger"] if row.get("unnamed_passages") else []
    return ", ".join(wrong) if wrong else ("ok" if row["ok"] else "not clean")


def passages_table(result: dict) -> list[str]:
    """The passages in the store right after each damage and after each command."""
    rows = [r for r in result["rows"] if "skipped" not in r]
    commands = list(dict.fromkeys(r["command"] for r in rows))
    lines = [
        f"Passages in the store (the baseline holds {result['summary']['passages_baseline']}): "
        "right after the damage, and after each command.",
        "",
        "| damage | after the damage | " + " | ".join(commands) + " |",
        "|---" * (len(commands) + 2) + "|",
    ]
    for damage in dict.fromkeys(r["damage"] for r in rows):
        found = {r["command"]: r for r in rows if r["damage"] == damage}
        damaged = next(iter(found.values()))["passages_damaged"]
        cells = [str(found[c]["passages_after"]) if c in found else "" for c in commands]
        lines.append(f"| {damage} | {damaged} | " + " | ".join(cells) + " |")
    return lines


def after_rebuild_table(result: dict) -> list[str]:
    """`seal doctor --rebuild` then `seal learn` after each lost or damaged ledger."""
    lines = [
        "`seal doctor --rebuild`, then `seal learn` of a new document:",
        "",
        "| damage | exit (doctor, learn) | passages: damaged -> after | lost | not in the ledger "
        "| learned | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["after_rebuild"]:
        codes = ", ".join(map(str, r["step_exit_codes"]))
        lines.append(
            f"| {r['damage']} | {codes} | {r['passages_damaged']} -> {r['passages_after']} | "
            f"{len(r['lost_passages'])} | {len(r['unnamed_passages'])} | "
            f"{len(r['learned_passages'])} | {_verdict(r)} |"
        )
    return lines


def measure_check(documents: int) -> dict:
    """quick_check and integrity_check on a ledger of `documents` ingested documents, each with 3
    passages of 160 words, a self-edit of 8 sequences and 5 probes (what ingest writes)."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)] + ["the", "of", "and", "to", "in", "a", "is"]

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    with tempfile.TemporaryDirectory(prefix="seal-quick-check-") as tmp:
        path = Path(tmp) / "ledger.sqlite"
        ledger = Ledger(path)
        with ledger.transaction():
            for d in range(documents):
                passages = [(text(160), f"p{d}-{i}") for i in range(3)]
                doc, ids = ledger.add_document(
                    namespace="user",
                    source="ingest",
                    uri=f"https://example.org/{d}",
                    title=text(8),
                    content_hash=f"h{d}",
                    chars=3000,
                    passages=passages,
                )
                sequences = [text(40) for _ in range(8)]
                ledger.add_self_edit(
                    document_id=doc,
                    passage_id=ids[0],
                    format="implications",
                    text=text(300),
                    sequences=sequences,
                )
                for i in range(5):
                    ledger.add_probe(
                        document_id=doc,
                        passage_id=ids[i % 3],
                        question=text(10) + "?",
                        answer=text(3),
                        origin="generated",
                    )
        ledger.close()
        conn = sqlite3.connect(path)
        timings = {}
        for name, check in (
            ("quick_check_s", lambda: quick_check(conn)),
            ("integrity_check_s", lambda: conn.execute("PRAGMA integrity_check").fetchall()),
        ):
            started = time.perf_counter()
            check()
            timings[name] = round(time.perf_counter() - started, 3)
        conn.close()
        return {"documents": documents, "megabytes": round(path.stat().st_size / 1e6, 1), **timings}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/hardening"))
    ap.add_argument("--model", type=Path, help="model folder (default: the tests' tiny model)")
    ap.add_argument("--damage", action="append", choices=list(DAMAGES), help="only these")
    ap.add_argument("--command", action="append", choices=COMMANDS, help="only these")
    ap.add_argument("--measure-check", type=int, metavar="DOCUMENTS", help="time quick_check")
    args = ap.parse_args(argv)
    if args.measure_check:
        print(json.dumps(measure_check(args.measure_check), indent=2))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = [(d, c) for d in args.damage or DAMAGES for c in args.command or COMMANDS]
    rebuilt = [d for d in LEDGER_DAMAGE if d in (args.damage or DAMAGES)]
    result = run(SETTINGS, pairs, args.model, rebuilt)
    write_atomic(args.out / "damage.json", json.dumps(result, indent=2) + "\n")
    write_atomic(args.out / "damage.md", table(result))
    print(json.dumps(result["summary"], indent=2))
    for row in [*result["rows"], *result["after_rebuild"]]:
        verdict = "skipped" if "skipped" in row else ("ok" if row["ok"] else "FAIL")
        code, message = row.get("exit_code", "-"), row.get("message", "")[:90]
        passages = f"{row.get('passages_damaged')}->{row.get('passages_after')}"
        print(
            f"{verdict:7} {row['damage']:28} {row['command']:12} exit {code}  "
            f"passages {passages:7} {message}"
        )
    return 0 if not result["summary"]["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
