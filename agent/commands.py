"""The `seal` commands that show and steer the agent's memory (the state folder).

status, history: read-only, work while another process writes. rollback, forget, pin, gc, learn,
export, import: take the writer lock.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from agent.config import SealConfig, add_config_arguments, config_from_args
from agent.errors import SealError
from stores.adapters import BASE
from stores.state import State, check_home, default_home


def add_common_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--home", type=Path, help="state folder (default: $SEAL_HOME or XDG data)")
    add_config_arguments(ap)


def resolve(args: argparse.Namespace) -> tuple[SealConfig, Path]:
    cfg = config_from_args(args)
    home = args.home or cfg.store.home or default_home()
    return cfg, Path(home).expanduser()


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _version(v: int | None) -> str:
    return "base" if not v else f"v{v}"


def status(args: argparse.Namespace) -> int:
    cfg, home = resolve(args)
    if not check_home(home, create=False):
        print(f"home:    {home} (empty: nothing stored yet)\nmodel:   {cfg.model.name}")
        return 0
    with State.open(home, read_only=True) as state:
        current = state.adapters.current()
        row = state.ledger.adapter_version(current) if current else None
        damage = None
        if current:
            try:
                state.adapters.verify(current)
            except SealError as exc:
                damage = str(exc)
        info: dict[str, Any] = {
            "home": str(home),
            "model": cfg.model.name,
            "current_version": current,
            "current": row,
            "current_damage": damage,
            "merged_base": str(state.bases.path(b)) if (b := state.base_for(current)) else None,
            "counts": state.ledger.counts(),
            "disk_bytes": state.disk_bytes(),
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"home:    {home}\nmodel:   {cfg.model.name}")
    if info["merged_base"]:
        print(f"base:    {info['merged_base']} (earlier adapters merged into the weights)")
    if row:
        parent = _version(row["parent"])
        print(
            f"adapter: v{current} (from {parent}, {_when(row['created_at'])}, base "
            f"{row['base_fingerprint'][:12]}){' pinned' if row['pinned'] else ''}"
        )
        if damage:
            print(f"WARNING: {damage}")
    else:
        print("adapter: none (the base model answers)")
    c = info["counts"]
    print(
        f"stored:  {c['documents']} documents ({c['forgotten_documents']} forgotten), "
        f"{c['passages']} passages, {c['self_edits']} self-edits, {c['probes']} probes"
    )
    print(
        f"updates: {c['updates_accepted']} accepted, {c['updates_rolled_back']} rolled back; "
        f"{c['adapter_versions']} adapter versions kept"
    )
    disk = info["disk_bytes"]
    print("disk:    " + ", ".join(f"{k} {_size(v)}" for k, v in disk.items()))
    return 0


def _history_line(row: dict[str, Any]) -> str:
    when = _when(row["at"])
    if row["kind"] == "update":
        made = _version(row["version"]) if row["decision"] == "accept" else "no version"
        seconds = f", {row['seconds']:.0f} s" if row["seconds"] is not None else ""
        if row["strategy"] == "merge into base":
            return (
                f"{when}  merge {row['id']}: {row['decision']} -> {made} (adapter "
                f"{_version(row['parent_version'])} into the base{seconds}): {row['reason']}"
            )
        return (
            f"{when}  update {row['id']}: {row['decision']} -> {made} (from "
            f"{_version(row['parent_version'])}; {row['n_sequences']} sequences, "
            f"{row['n_replay']} replayed{seconds}): {row['reason']}"
        )
    detail = row["detail"] or {}
    extra = ", ".join(f"{k} {v}" for k, v in detail.items()) if isinstance(detail, dict) else ""
    return f"{when}  {row['kind']} {row['subject']}" + (f" ({extra})" if extra else "")


def history(args: argparse.Namespace) -> int:
    _, home = resolve(args)
    with State.open(home, read_only=True) as state:
        rows = state.ledger.history(args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no updates yet")
    for row in [] if args.json else rows:
        print(_history_line(row))
    return 0


def rollback(args: argparse.Namespace) -> int:
    _, home = resolve(args)
    with State.open(home) as state:
        previous = state.adapters.rollback(args.version, reason=args.reason)
    print(f"current adapter: {_version(args.version)} (was {_version(previous)})")
    return 0


def forget(args: argparse.Namespace) -> int:
    _, home = resolve(args)
    with State.open(home) as state:
        counts = state.forget(args.document)
        current = state.adapters.current()
        trained = counts.pop("trained_into")
        parents = [state.ledger.adapter_version(v)["parent"] for v in trained]
    print(
        f"forgot document {args.document}: {counts['passages']} passages, {counts['vectors']} "
        f"vectors and {counts['probes']} probes removed; {counts['self_edits_excluded']} "
        "self-edits excluded from replay"
    )
    if trained and current >= trained[0]:
        print(
            f"note: adapter versions {', '.join(map(_version, trained))} trained on it, so the "
            f"current adapter ({_version(current)}) may still know it; "
            f"`seal rollback {parents[0] or BASE}` returns to before it was learned"
        )
    return 0


def pin(args: argparse.Namespace) -> int:
    _, home = resolve(args)
    with State.open(home) as state:
        state.adapters.pin(args.version, not args.unpin)
    print(f"{_version(args.version)} {'unpinned' if args.unpin else 'pinned: gc keeps it'}")
    return 0


def gc(args: argparse.Namespace) -> int:
    cfg, home = resolve(args)
    keep = args.keep if args.keep is not None else cfg.store.keep_versions
    with State.open(home) as state:
        removed = state.adapters.gc(keep)
        bases = state.collect_bases()
    print(f"removed {len(removed)} adapter versions" + (f": {removed}" if removed else ""))
    if bases:
        print(f"removed {len(bases)} merged bases no kept version uses: {bases}")
    return 0


def merge_base(args: argparse.Namespace) -> int:
    from agent.learn import load_runtime, print_merge
    from agent.merge import run_base_merge

    cfg, home = resolve(args)
    with State.open(home) as state:
        result = run_base_merge(state, load_runtime(state, cfg), cfg, seed=cfg.adapt.seed)
    print_merge(result)
    print(f"  {result.seconds:.1f} s")
    return 0


def export(args: argparse.Namespace) -> int:
    from stores.archive import export_state

    _, home = resolve(args)
    with State.open(home) as state:
        manifest = export_state(state, args.archive)
    size = _size(args.archive.stat().st_size)
    print(f"exported {home} to {args.archive} ({len(manifest['files'])} files, {size})")
    return 0


def import_(args: argparse.Namespace) -> int:
    from stores.archive import import_state

    _, home = resolve(args)
    moved = import_state(args.archive, home, replace=args.replace)
    print(f"imported {args.archive} into {home}")
    if moved:
        print(f"the state it replaced is kept in {moved}")
    return 0


def learn(args: argparse.Namespace) -> int:
    from agent.learn import run_learn

    cfg, home = resolve(args)
    return run_learn(args, cfg, home)


def ingest(args: argparse.Namespace) -> int:
    from agent.ingest.run import run_ingest

    cfg, home = resolve(args)
    return run_ingest(args, cfg, home)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the memory commands to the `seal` parser."""

    def add(name: str, help: str, handler) -> argparse.ArgumentParser:
        ap = sub.add_parser(name, help=help, description=help)
        add_common_arguments(ap)
        ap.set_defaults(handler=handler)
        return ap

    from agent import chat

    ap = add("chat", "talk to the model; /feed it documents and it learns them", chat.run_chat)
    chat.add_arguments(ap)
    ap = add("learn", "store a document and learn it (self-edit, update, commit a version)", learn)
    ap.add_argument("path", type=Path, help="a text file, or a SQuAD-format .json")
    ap.add_argument("--index", type=int, default=0, help="which passage of a .json file")
    from agent.ingest.run import add_arguments as add_ingest_arguments

    add_ingest_arguments(add("ingest", "learn from news feeds, folders and URL lists", ingest))
    ap = add("status", "model, current adapter version, counts and disk use", status)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap = add("history", "updates with their decisions and reasons, and other events", history)
    ap.add_argument("--limit", type=int, default=50, help="newest N entries (default 50)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap = add("rollback", "make an earlier adapter version current (0: the base model)", rollback)
    ap.add_argument("version", type=int)
    ap.add_argument("--reason", default="seal rollback", help="recorded in the ledger")
    ap = add("forget", "remove a document's passages and vectors; exclude it from replay", forget)
    ap.add_argument("document", type=int, metavar="DOC_ID")
    ap = add("pin", "keep an adapter version through garbage collection", pin)
    ap.add_argument("version", type=int)
    ap.add_argument("--unpin", action="store_true", help="release a pin")
    ap = add("gc", "delete old adapter versions (never the current or a pinned one)", gc)
    ap.add_argument("--keep", type=int, help="recent versions to keep (store.keep_versions)")
    add("merge-base", "merge the current adapter into the base weights (checked)", merge_base)
    ap = add("export", "write the whole state to one .tar.gz archive", export)
    ap.add_argument("archive", type=Path)
    ap = add("import", "install a state archive as --home", import_)
    ap.add_argument("archive", type=Path)
    ap.add_argument(
        "--replace", action="store_true", help="replace an existing state (kept beside it)"
    )
    from agent import train_policy

    train_policy.add_arguments(
        add("train-policy", "ReST-EM: train the self-edit policy", train_policy.run_train_policy)
    )
