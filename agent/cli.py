"""The `seal` command."""

from __future__ import annotations

import argparse
import sys

from agent import commands, demo
from agent.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="seal", description="A language model that learns from what it reads (SEAL)."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser(
        "demo", help="learn one passage; show closed-book answers before/after"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.run_demo)
    commands.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
