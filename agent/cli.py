"""The `seal` command: the one argument parser. It resolves the configuration and the state folder
once and calls each command's handler as `handler(args, cfg, home)`.

Every module imported here is light (no torch, chromadb or langgraph at import time), so that
`seal status`, `seal history` and `seal --help` start in well under a second; the handlers that
need the model import it themselves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent import chat, commands, demo, train_arc_policy, train_policy
from agent.core.config import add_config_arguments, config_from_args
from agent.core.errors import run_cli
from agent.core.model_source import hub_offline
from agent.ingest import run as ingest
from agent.serve import run as serve
from stores.ledger_file import guarded
from stores.state import LEDGER, default_home


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="seal", description="A language model that learns from what it reads (SEAL)."
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name: str, help: str, handler, *, home: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help)
        if home:
            cmd.add_argument("--home", type=Path, help="state folder (default: $SEAL_HOME or XDG)")
        add_config_arguments(cmd)
        cmd.set_defaults(handler=handler)
        return cmd

    demo.add_arguments(
        add(
            "demo",
            "learn one document; show closed-book answers before/after",
            demo.run_demo,
            home=False,  # the demo keeps no state
        )
    )
    chat.add_arguments(
        add("chat", "talk to the model; /feed it documents and it learns them", chat.run_chat)
    )
    cmd = add(
        "learn",
        "store a document and learn it (self-edit, update, commit a version)",
        commands.learn,
    )
    cmd.add_argument("path", help="a text file, or a SQuAD-format .json")
    cmd.add_argument("--index", type=int, default=0, help="which passage of a .json file")
    ingest.add_arguments(
        add("ingest", "learn from news feeds, folders and URL lists", ingest.run_ingest)
    )
    serve.add_arguments(
        add(
            "serve",
            "an OpenAI-compatible API and a web page for the chat that learns, per-user memory",
            serve.run_serve,
        )
    )
    cmd = add("status", "model, current adapter version, counts and disk use", commands.status)
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = add(
        "history", "updates with their decisions and reasons, and other events", commands.history
    )
    cmd.add_argument("--limit", type=int, default=50, help="newest N entries (default 50)")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd = add(
        "rollback", "make an earlier adapter version current (0: the base model)", commands.rollback
    )
    cmd.add_argument("version", type=int)
    cmd.add_argument("--reason", default="seal rollback", help="recorded in the ledger")
    cmd = add(
        "forget",
        "remove a document's passages and vectors; exclude it from replay",
        commands.forget,
    )
    cmd.add_argument("document", type=int, metavar="DOC_ID")
    cmd = add("pin", "keep an adapter version through garbage collection", commands.pin)
    cmd.add_argument("version", type=int)
    cmd.add_argument("--unpin", action="store_true", help="release a pin")
    cmd = add("gc", "delete old adapter versions (never the current or a pinned one)", commands.gc)
    cmd.add_argument("--keep", type=int, help="recent versions to keep (store.keep_versions)")
    add(
        "merge-base",
        "merge the current adapter into the base weights (checked)",
        commands.merge_base,
    )
    cmd = add("export", "write the whole state to one .tar.gz archive", commands.export)
    cmd.add_argument("archive", type=Path)
    cmd = add(
        "doctor",
        "check the state folder; --rebuild rebuilds a lost or damaged ledger (nothing deleted)",
        commands.doctor,
    )
    cmd.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild the ledger from its readable rows, the adapter manifests and the passage "
        "store; the damaged file is kept aside",
    )
    cmd = add("import", "install a state archive as --home", commands.import_)
    cmd.add_argument("archive", type=Path)
    cmd.add_argument(
        "--replace", action="store_true", help="replace an existing state (kept beside it)"
    )
    cmd = add(
        "train-policy",
        "ReST-EM: train the self-edit policy (--task arc: the writer of ARC configs)",
        train_arc_policy.run,
    )
    train_policy.add_arguments(cmd)
    train_arc_policy.add_arguments(cmd)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def handle() -> int:
        cfg = config_from_args(args)
        hub_offline(cfg.model.allow_download)  # before any handler imports transformers
        home = Path(getattr(args, "home", None) or cfg.store.home or default_home()).expanduser()
        # A damaged page met after the state opened is an error naming the fix, not a traceback.
        with guarded(home / LEDGER):
            return args.handler(args, cfg, home)

    return run_cli(handle)


if __name__ == "__main__":
    sys.exit(main())
