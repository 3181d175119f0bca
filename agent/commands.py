"""The `seal` commands that show and steer the agent's memory (the state folder); agent/cli.py
parses their arguments and resolves the configuration and the state folder once.

status, history: read-only, work while another process writes. rollback, forget, pin, gc,
merge-base, export, import: take the writer lock (export reads a read-only folder as it is).
doctor: reads; with --rebuild takes the lock and rebuilds a lost or damaged ledger.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from agent.core.config import SealConfig
from agent.core.errors import SealError, StateNotWritable
from agent.core.io import read_limited
from agent.documents import DocumentError, is_url
from stores.adapters import BASE
from stores.archive import export_state, import_state
from stores.doctor import diagnose, rebuild
from stores.state import LEDGER, State, check_home

# A SQuAD-format file `seal learn` reads whole (the bundled eval200 passages are 0.3 MB).
SQUAD_MAX_BYTES = 200_000_000


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


def _trained_model(state: State, version: int) -> str | None:
    """The model.name the adapter `version` was trained with, from its manifest's config."""
    try:
        return state.adapters.manifest(version)["config"]["model"]["name"]
    except (SealError, KeyError, TypeError):
        return None


def _state_info(state: State, cfg: SealConfig, home: Path) -> dict[str, Any]:
    """What `seal status` reports; a damaged pointer or version is reported, not fatal."""
    problems = []
    try:
        current: int | None = state.adapters.current()
    except SealError as exc:
        current = None  # unknown: the pointer is damaged
        problems.append(str(exc))
    row = state.ledger.adapter_version(current) if current else None
    if current:
        try:
            state.adapters.verify(current)
        except SealError as exc:
            problems.append(str(exc))
    damage = "; ".join(problems) or None  # what keeps the current adapter from loading
    live = [r["version"] for r in state.ledger.adapter_versions()]
    missing = [v for v in live if not state.adapters.path(v).is_dir()]
    if missing:
        problems.append(
            f"the folders of adapter versions {', '.join(map(_version, missing))} are missing "
            "(the ledger keeps their history; roll back to another version)"
        )
    trained = _trained_model(state, current) if current else None
    base = state.base_for(current) if current else None
    if trained and trained != cfg.model.name:
        problems.append(
            f"the current adapter was trained on model {trained!r}, the configuration names "
            f"{cfg.model.name!r}: pass --set model.name={trained}"
        )
    return {
        "home": str(home),
        "model": trained or cfg.model.name,
        "configured_model": cfg.model.name,
        "current_version": current,
        "current": row,
        "current_damage": damage,
        "problems": problems,
        "merged_base": str(state.bases.path(base)) if base else None,
        "counts": {**state.ledger.counts(), "adapter_versions": len(live) - len(missing)},
        "self_edit_writers": state.ledger.self_edit_writers(),
        "missing_version_folders": missing,
        "disk_bytes": state.disk_bytes(),
    }


def _writer_line(cfg: SealConfig, writers: dict[str, int]) -> str:
    """Who writes the next self-edits (the configuration), and who wrote the stored ones."""
    se = cfg.self_edit
    if se.format == "qa-spans":
        now = "qa-spans, built by tools from the passage"
    elif se.format == "passage-only":
        now = "passage-only (no self-edit)"
    else:
        who = {
            "bundled": "the bundled writer",
            "model": "the model itself",
            None: "the model itself",
        }
        now = f"{se.format}, written by {who.get(se.policy, f'the policy {se.policy}')}"
    done = ", ".join(f"{name} {n}" for name, n in writers.items())
    return f"{now}; stored self-edits by writer: {done}" if done else now


def status(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    if not check_home(home, create=False):
        print(f"home:    {home} (empty: nothing stored yet)\nmodel:   {cfg.model.name}")
        return 0
    with State.open(home, read_only=True) as state:
        info = _state_info(state, cfg, home)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    row, current = info["current"], info["current_version"]
    print(f"home:    {home}\nmodel:   {info['model']}")
    if info["merged_base"]:
        print(f"base:    {info['merged_base']} (earlier adapters merged into the weights)")
    if row:
        parent = _version(row["parent"])
        print(
            f"adapter: v{current} (from {parent}, {_when(row['created_at'])}, base "
            f"{row['base_fingerprint'][:12]}){' pinned' if row['pinned'] else ''}"
        )
    elif current is None:
        print("adapter: unknown: the current pointer is damaged (see below)")
    else:
        print("adapter: none (the base model answers)")
    for problem in info["problems"]:
        print(f"WARNING: {problem}")
    c = info["counts"]
    print(
        f"stored:  {c['documents']} documents ({c['forgotten_documents']} forgotten), "
        f"{c['passages']} passages, {c['self_edits']} self-edits, {c['probes']} probes"
    )
    print(f"writer:  {_writer_line(cfg, info['self_edit_writers'])}")
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
    try:
        state = State.open(home)
    except StateNotWritable:
        if os.access(home, os.W_OK):
            raise
        # A folder nothing can write (a read-only mount) is a consistent snapshot as it is.
        state = State.open(home, read_only=True)
    with state:
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

    if is_url(args.path):
        raise DocumentError(
            f"{args.path} is a URL; `seal learn` reads local files. Feed a page to the chat "
            "(`seal chat`, then `/feed URL`) or follow a news feed with `seal ingest URL`"
        )
    args.path = Path(args.path).expanduser()
    if args.path.suffix.lower() == ".json":  # read whole by the SQuAD loader: check it first
        read_limited(args.path, SQUAD_MAX_BYTES, "SQuAD file", DocumentError)
    return run_learn(args, cfg, home)


def doctor(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    if args.rebuild:
        done = rebuild(home)
        if done.marker_written:
            print(f"wrote the missing state marker of {home}")
        if done.kept_aside == home:
            return 0
        print(f"rebuilt the ledger of {home}; the damaged one is kept in {done.kept_aside}")
        copied = ", ".join(f"{n} {t}" for t, n in done.copied.items() if n) or "none"
        print(f"  rows copied from the damaged ledger: {copied}")
        if done.unreadable:
            print(f"  read only in part (damaged pages): {', '.join(done.unreadable)}")
        if done.left_out:
            print(f"  {done.left_out} rows left out: they refer to rows that were lost")
        if done.from_manifests:
            restored = ", ".join(map(_version, done.from_manifests))
            print(f"  adapter versions restored from their manifests: {restored}")
        if done.restored_documents or done.restored_passages:
            print(
                f"  restored {done.restored_documents} documents, {done.restored_passages} "
                "passages from the passage store"
            )
        if done.unrestored_passages:
            print(
                f"  {len(done.unrestored_passages)} passages kept in the passage store that the "
                "ledger cannot name (another namespace's document, or damaged metadata); they "
                "are not retrieved, and no writer deletes them"
            )
        if done.passage_store_problem:
            print(
                f"  the passage store could not be read ({done.passage_store_problem}); its "
                "documents are not in the ledger, and writers delete none of its passages"
            )
        print(f"  current adapter: {_version(done.current)} (`seal rollback N` to change it)")
        return 0
    findings = diagnose(home)
    if not findings:
        print(f"{home}: no problems found (marker, ledger, current pointer, versions, bases)")
        return 0
    for finding in findings:
        print(f"problem: {finding}")
    if any(LEDGER in f or "marker" in f or f.startswith("ledger") for f in findings):
        print(
            f"fix: `seal doctor --rebuild --home {home}` rebuilds the ledger from what survives "
            "(the damaged file is kept aside; nothing is deleted)"
        )
    return 1
