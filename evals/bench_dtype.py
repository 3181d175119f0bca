"""bf16 against float32 on this machine: training and generation speed, and memory over many
updates. `python evals/bench.py dtype --out runs/bench`

Each dtype runs in its own child process (a fresh allocator and fresh oneDNN caches, so one
dtype's memory does not count against the other): `--steps` packed training steps of random
lengths (20-400 tokens: an ingest run's updates are never the same shape twice), with a greedy
generation every 30 steps; the resident memory after loading, after the first 30 steps and at
the end; training tokens/s; generation tokens/s for one stream and for 5 candidates of a prompt.
`model.dtype=auto` takes the dtype these figures favour (agent/core/runtime.pick_dtype).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from agent.core.config import add_config_arguments, config_from_args
from agent.core.inner_loop import pack, packed_loss
from agent.core.runtime import ModelRuntime

DTYPES = ("float32", "bfloat16")
REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def measure(dtype: str, steps: int, config_argv: list[str]) -> dict:
    """One dtype, in this process."""
    cfg = config_from_args(_config_args(config_argv, dtype))
    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    rng = random.Random(0)
    memory = {"loaded": rss_mb()}
    params = runtime.adapter_parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    tokens, seconds = 0, 0.0
    prompt = "The history of the river valley and the towns along it " * 8
    for step in range(1, steps + 1):
        n = rng.randint(20, 400)
        batch = pack([([], [rng.randint(5, 40_000) for _ in range(n)])])
        start = time.perf_counter()
        with runtime.training():
            loss, _ = packed_loss(runtime.model, batch, runtime.device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        tokens += n
        if step % 30 == 0:
            runtime.generate([prompt * rng.randint(1, 3)], max_new_tokens=8)
            memory.setdefault("after_30_steps", rss_mb())
    memory["end"] = rss_mb()
    rates = {}
    for k in (1, 5):
        runs = []
        for r in range(3):
            start = time.perf_counter()
            [texts] = runtime.generate(
                [prompt], max_new_tokens=64, temperature=1.0, num_return_sequences=k, seed=r
            )
            runs.append(sum(runtime.count_tokens(t) for t in texts) / (time.perf_counter() - start))
        rates[k] = statistics.median(runs)
    return {
        "dtype": dtype,
        "steps": steps,
        "train_tokens_per_s": round(tokens / seconds, 1),
        "generation_tokens_per_s": round(rates[1], 1),
        "generation_batched_tokens_per_s": round(rates[5], 1),
        "rss_mb": {k: round(v) for k, v in memory.items()},
        "rss_growth_after_warmup_mb": round(memory["end"] - memory["after_30_steps"]),
    }


def _config_args(config_argv: list[str], dtype: str):
    ap = argparse.ArgumentParser()
    add_config_arguments(ap)
    return ap.parse_args([*config_argv, "--set", f"model.dtype={dtype}"])


def run(steps: int, config_argv: list[str]) -> dict:
    """Each dtype in a child process; the figures side by side."""
    rows = {}
    for dtype in DTYPES:
        print(f"dtype {dtype}: {steps} training steps ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "evals.bench_dtype", dtype, str(steps), *config_argv]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
        if out.returncode:
            raise RuntimeError(f"the {dtype} run failed:\n{out.stderr[-2000:]}")
        rows[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
    return {"dtypes": rows}


def report(result: dict) -> str:
    lines = []
    for row in result["dtypes"].values():
        lines.append(
            f"{row['dtype']:>8}: training {row['train_tokens_per_s']:.0f} tokens/s, generation "
            f"{row['generation_tokens_per_s']:.0f} tokens/s (5 candidates: "
            f"{row['generation_batched_tokens_per_s']:.0f}), memory {row['rss_mb']['loaded']} MB "
            f"loaded, {row['rss_mb']['end']} MB after {row['steps']} steps "
            f"(+{row['rss_growth_after_warmup_mb']} MB after the first 30)"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # a child of run(): one dtype
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
