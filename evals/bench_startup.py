"""Start-up of the light commands: `seal status` (an empty home), `seal history` (a state with a
ledger), `seal --help`; wall time and peak RSS of the whole process, median of `repeats` runs.

The CLI imports no torch, chromadb or langgraph (tests/test_layers.py checks it); this measures
what a user waits for.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from stores.state import State

SEAL = [sys.executable, "-m", "agent.cli"]


# A small launcher process runs the command and reports its rusage: a child's peak RSS counts
# the memory of the process it was forked from, and this benchmark's own process holds torch.
_LAUNCH = (
    "import os, subprocess, sys, time; start = time.perf_counter(); "
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "_, status, usage = os.wait4(p.pid, 0); "
    "print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))"
)


def _run_once(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one run of the command."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCH, *argv], capture_output=True, text=True, check=True
    )
    seconds, max_rss_kb, code = out.stdout.split()
    if int(code):
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {out.stderr}")
    return float(seconds), int(max_rss_kb) / 1024  # Linux reports KB


def run(repeats: int = 5) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="seal-startup-"))
    try:
        with State.open(tmp / "state"):
            pass
        commands = {
            "seal status (empty home)": [*SEAL, "status", "--home", str(tmp / "empty")],
            "seal history": [*SEAL, "history", "--home", str(tmp / "state")],
            "seal --help": [*SEAL, "--help"],
        }
        out = {}
        for name, argv in commands.items():
            _run_once(argv)  # warm the file cache
            runs = [_run_once(argv) for _ in range(repeats)]
            out[name] = {
                "median_s": round(statistics.median(s for s, _ in runs), 3),
                "median_rss_mb": round(statistics.median(m for _, m in runs), 1),
                "runs_s": [round(s, 3) for s, _ in runs],
            }
        return {"repeats": repeats, "commands": out}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict) -> str:
    lines = [f"start-up, median of {result['repeats']} runs:"]
    for name, r in result["commands"].items():
        lines.append(f"  {name:<26} {r['median_s']:.2f} s  {r['median_rss_mb']:.0f} MB")
    return "\n".join(lines)
