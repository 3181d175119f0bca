"""The `seal` commands that show and steer the agent's memory (the state folder); agent/cli.py
parses their arguments and resolves the configuration and the state folder once.

status, history: read-only, work while another process writes. rollback, forget, pin, gc,
merge-base, export, import: take the writer lock.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from agent.core.config import SealConfig
from agent.core.errors import SealError
from stores.adapters import BASE
from stores.archive import export_state, import_state
from stores.state import State, check_home


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


def status(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
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


def history(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    with State.open(home, read_only=True) as state:
        rows = state.ledger.history(args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no updates yet")
    for row in [] if args.json else rows:
        print(_history_line(row))
    return 0


def rollback(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    with State.open(home) as state:
        previous = state.adapters.rollback(args.version, reason=args.reason)
    print(f"current adapter: {_version(args.version)} (was {_version(previous)})")
    return 0


def forget(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
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


def pin(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    with State.open(home) as state:
        state.adapters.pin(args.version, not args.unpin)
    print(f"{_version(args.version)} {'unpinned' if args.unpin else 'pinned: gc keeps it'}")
    return 0


def gc(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    keep = args.keep if args.keep is not None else cfg.store.keep_versions
    with State.open(home) as state:
        removed = state.adapters.gc(keep)
        bases = state.collect_bases()
    print(f"removed {len(removed)} adapter versions" + (f": {removed}" if removed else ""))
    if bases:
        print(f"removed {len(bases)} merged bases no kept version uses: {bases}")
    return 0


def merge_base(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    # Deferred: these load torch, which the light commands (status, history) never need.
    from agent.learn import print_merge
    from agent.merge import run_base_merge
    from agent.state_model import load_runtime

    with State.open(home) as state:
        result = run_base_merge(state, load_runtime(state, cfg), cfg, seed=cfg.adapt.seed)
    print_merge(result)
    print(f"  {result.seconds:.1f} s")
    return 0


def export(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    with State.open(home) as state:
        manifest = export_state(state, args.archive)
    size = _size(args.archive.stat().st_size)
    print(f"exported {home} to {args.archive} ({len(manifest['files'])} files, {size})")
    return 0


def import_(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    moved = import_state(args.archive, home, replace=args.replace)
    print(f"imported {args.archive} into {home}")
    if moved:
        print(f"the state it replaced is kept in {moved}")
    return 0


def learn(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    from agent.learn import run_learn  # deferred: loads torch

    return run_learn(args, cfg, home)
