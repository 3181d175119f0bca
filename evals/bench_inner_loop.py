"""`python evals/bench.py inner-loop`: the inner loop's speed, and the code before it beside it.

Per passage, the seconds spent writing the self-edit, training and answering, with the
default config; medians over the passages; training throughput in tokens/s and as a fraction of the
machine's matmul peak (measured here, fp32 and the dtype in use) and of the frozen floor (the same
rows through the model with every adapter off: what no LoRA training can go below); generation
tokens/s, one stream
and K=5 candidates of one prompt; peak RSS. With `--baseline REV` the same harness first runs on the
code of git revision REV (extracted to a temporary folder) over the same passages, and the report
gives the ratios. With `--seal-recipe`, the same passages and training sequences also go through
SEAL's published recipe (every line padded to 2048 tokens with the pads in the loss, HF Trainer,
LoRA r=32 alpha=64 on q/v, lr 1e-3) and through ours, both at `--compare-epochs` epochs, with their
accuracy side by side. Writes inner_loop.json.

A baseline run executes this module as `python -m evals.bench_inner_loop` in a folder holding
the baseline revision's `agent`, `policies` and `stores` packages, with this repository's `evals`
on the path: the harness is the same, the code it times is the revision's. It uses only what
both have (ModelRuntime, train_adapter, write_self_edits, answer_and_grade).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from agent.core.answering import answer_and_grade, mean_of
from agent.core.config import AdaptConfig, SealConfig, add_config_arguments, config_from_args
from agent.core.errors import SealError
from agent.core.inner_loop import pack, packed_loss, tokenize_sequences, train_adapter
from agent.core.io import write_atomic
from agent.core.runtime import ModelRuntime
from agent.core.squad import SquadPassage, load_squad
from policies.self_edit import write_self_edits

REPO = Path(__file__).resolve().parents[1]
SEAL_PAD_TO = 2048  # SEAL pads every training line to this length and keeps pads in the loss


def matmul_peak_gflops(
    dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5
) -> float:
    """Median throughput of an n x n x n matmul: the machine's practical peak for this dtype."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(4 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def matmul_params(model) -> int:
    """Parameters that take part in matmuls per token: every Linear, plus the LM head."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    total = 0
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            total += module.weight.numel()
    return total


def train_flops(n_params: int, tokens: int) -> float:
    # Forward 2P per token, backward 2P for the input gradients; the frozen base weights get no
    # weight-gradient matmuls (LoRA's own are < 1% here). Attention scores are left out.
    return 4.0 * n_params * tokens


def frozen_floor_tokens_per_s(
    runtime, sequences: list, adapt: AdaptConfig, steps: int = 8
) -> float:
    """Tokens/s of the same packed rows through the model with every adapter off: the forward
    and the input-gradient backward, the work no LoRA training can avoid, so the ceiling of
    training throughput on this machine at these row lengths."""
    pairs = tokenize_sequences(runtime, sequences, adapt.max_seq_tokens)
    rows = [pack(pairs[i : i + adapt.batch_size]) for i in range(0, len(pairs), adapt.batch_size)]
    embed = runtime.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda module, args, out: out.requires_grad_(True))
    # the code before the speed work (a --baseline run) has no training() context
    training = getattr(runtime, "training", contextlib.nullcontext)
    tokens, seconds = 0, 0.0
    try:
        with training(), runtime.adapter_disabled():
            for step, row in enumerate(itertools.islice(itertools.cycle(rows), steps + 1)):
                start = time.perf_counter()
                loss, _ = packed_loss(runtime.model, row, runtime.device)
                loss.backward()
                if step:  # the first is warm-up
                    tokens += row.input_ids.shape[1]
                    seconds += time.perf_counter() - start
    finally:
        hook.remove()
    return tokens / seconds


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3) if xs else float("nan")


def seal_recipe_train(runtime, sequences: list, adapt: AdaptConfig, epochs: int) -> float:
    """SEAL's published recipe: each line padded to 2048 tokens, labels = input ids (pads in the
    loss), HF Trainer on a fresh adapter. Returns the seconds Trainer.train took."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    tok = runtime.tokenizer
    rows = []
    for item in sequences:
        text = item if isinstance(item, str) else "".join(item)  # SEAL trains every token
        enc = tok(text, padding="max_length", truncation=True, max_length=SEAL_PAD_TO)
        rows.append({**enc, "labels": list(enc["input_ids"])})
    runtime.reset_adapter(adapt.seed)
    for p in runtime.adapter_parameters():
        p.requires_grad_(True)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=adapt.batch_size,
            num_train_epochs=epochs,
            learning_rate=adapt.learning_rate,
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            seed=adapt.seed,
            remove_unused_columns=False,
            disable_tqdm=True,
            use_cpu=runtime.device.type == "cpu",
            bf16=runtime.base_model.dtype == torch.bfloat16,
        )
        trainer = Trainer(
            model=runtime.model, args=args, train_dataset=rows, data_collator=default_data_collator
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    runtime.model.eval()
    return seconds


# The code before the speed work (issue 15): `--baseline` runs this harness on it by default.
BASELINE_REV = "2aabc71a776d34151182a63ccea6c4a3fe2d4b95"
GENERATION_TOKENS = 128
SECONDS = ("inner_loop_median_s", "self_edit_median_s", "train_median_s", "answer_median_s")
RATES = ("train_tokens_per_s", "generation_tokens_per_s", "generation_batched_tokens_per_s")
HEADLINE = SECONDS + RATES


def generation_speed(runtime, passage: SquadPassage, repeats: int = 3) -> dict:
    """Sampled tokens per second (temperature 1) after a passage prompt: one stream, and the
    K=5 candidates of one prompt together (a self-edit writer's call); medians of `repeats`."""
    prompt = runtime.format_prompt(
        f"{passage.context}\n\nList the implications of this passage.", True
    )
    rates: dict[int, list[float]] = {1: [], 5: []}
    for k in rates:
        for r in range(repeats):
            start = time.perf_counter()
            [texts] = runtime.generate(
                [prompt],
                max_new_tokens=GENERATION_TOKENS,
                temperature=1.0,
                num_return_sequences=k,
                seed=r,
            )
            seconds = time.perf_counter() - start
            rates[k].append(sum(runtime.count_tokens(t) for t in texts) / seconds)
    return {"single": median(rates[1]), "batched_k5": median(rates[5])}


def run_baseline(rev: str, argv: list[str], out: Path) -> dict:
    """This harness on the code of git revision `rev`, in a child process (see the module's
    docstring); its result."""
    out = out.resolve()  # the child runs in the temporary folder
    with tempfile.TemporaryDirectory(prefix="seal-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", rev, "agent", "policies", "stores"],
            capture_output=True,
            check=False,
        )
        if archive.returncode:
            raise SealError(f"--baseline {rev}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": str(REPO)}  # after the folder itself: its packages win
        cmd = [sys.executable, "-m", "evals.bench_inner_loop", *argv, "--out", str(out)]
        print(f"baseline: this harness on {rev[:12]}", file=sys.stderr)
        subprocess.run(cmd, cwd=tmp, env=env, check=True)
    return json.loads((out / "inner_loop.json").read_text())


def bench_inner_loop(
    cfg: SealConfig, passages: list[SquadPassage], compare_epochs: int, seal_recipe: bool, seed: int
) -> dict:

    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    device, dtype = runtime.device, runtime.base_model.dtype
    dtype_name = str(dtype).removeprefix("torch.")
    peaks = {"float32": matmul_peak_gflops(torch.float32, device)}
    if dtype != torch.float32:
        peaks[dtype_name] = matmul_peak_gflops(dtype, device)
    n_params = matmul_params(runtime.model)

    per_passage, edits = [], []
    for i, p in enumerate(passages):
        runtime.reset_adapter(cfg.adapt.seed)
        t0 = time.perf_counter()
        [edit] = write_self_edits(
            runtime,
            p.title,
            p.context,
            cfg.self_edit.model_copy(update={"num_candidates": 1}),
            seed=seed,
        )
        t1 = time.perf_counter()
        log = train_adapter(runtime, edit.sequences, cfg.adapt)
        t2 = time.perf_counter()
        graded = answer_and_grade(runtime, p.questions, cfg.eval)
        t3 = time.perf_counter()
        edits.append(edit)
        row = {
            "index": i,
            "title": p.title,
            "self_edit_s": t1 - t0,
            "train_s": t2 - t1,
            "answer_s": t3 - t2,
            "total_s": t3 - t0,
            "train_tokens": log.tokens,
            "n_sequences": log.n_sequences,
            "tokens_per_s": log.tokens_per_second,
            "contained": mean_of(graded, "contained"),
        }
        per_passage.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
        print(
            f"[{i + 1}/{len(passages)}] {p.title}: self-edit {row['self_edit_s']:.1f} s, "
            f"train {row['train_s']:.1f} s ({log.tokens} tok), answer {row['answer_s']:.1f} s",
            file=sys.stderr,
        )

    train_tok = sum(r["train_tokens"] for r in per_passage)
    train_sec = sum(r["train_s"] for r in per_passage)
    achieved = train_flops(n_params, train_tok) / train_sec / 1e9
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "dtype": dtype_name,
        },
        "matmul_peak_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "matmul_params": n_params,
        "flops_formula": "4 * matmul_params * tokens (forward + input-gradient backward)",
        "passages": per_passage,
        "inner_loop_median_s": median([r["total_s"] for r in per_passage]),
        "self_edit_median_s": median([r["self_edit_s"] for r in per_passage]),
        "train_median_s": median([r["train_s"] for r in per_passage]),
        "answer_median_s": median([r["answer_s"] for r in per_passage]),
        "train_tokens_per_s": round(train_tok / train_sec, 1),
        "train_gflops": round(achieved, 1),
        "train_fraction_of_fp32_peak": round(achieved / peaks["float32"], 3),
        "train_fraction_of_dtype_peak": round(achieved / peaks[dtype_name], 3),
    }
    floor = frozen_floor_tokens_per_s(runtime, edits[0].sequences, cfg.adapt)
    result["frozen_floor_tokens_per_s"] = round(floor, 1)
    result["train_fraction_of_frozen_floor"] = round(result["train_tokens_per_s"] / floor, 3)
    result["frozen_floor_fraction_of_dtype_peak"] = round(
        train_flops(n_params, 1) * floor / 1e9 / peaks[dtype_name], 3
    )
    runtime.reset_adapter(cfg.adapt.seed)
    generation = generation_speed(runtime, passages[0])
    result["generation_tokens_per_s"] = generation["single"]
    result["generation_batched_tokens_per_s"] = generation["batched_k5"]
    result["gpu"] = result["machine"] if device.type == "cuda" else None

    if seal_recipe:
        ours_cfg = cfg.adapt.model_copy(update={"epochs": compare_epochs})
        seal_adapt = cfg.adapt.model_copy(
            update={
                "rank": 32,
                "alpha": 64.0,
                "target_modules": ["q_proj", "v_proj"],
                "learning_rate": 1e-3,
                "epochs": compare_epochs,
                "dropout": 0.0,
            }
        )
        seal_runtime = ModelRuntime.load(cfg.model, seal_adapt)
        rows = []
        for i, (p, edit) in enumerate(zip(passages, edits, strict=True)):
            log = train_adapter(runtime, edit.sequences, ours_cfg)
            ours = answer_and_grade(runtime, p.questions, cfg.eval)
            seal_s = seal_recipe_train(seal_runtime, edit.sequences, seal_adapt, compare_epochs)
            theirs = answer_and_grade(seal_runtime, p.questions, cfg.eval)
            rows.append(
                {
                    "index": i,
                    "ours_train_s": round(log.seconds, 3),
                    "seal_train_s": round(seal_s, 3),
                    "ours_contained": mean_of(ours, "contained"),
                    "seal_contained": mean_of(theirs, "contained"),
                    "ours_gold_logprob": round(mean_of(ours, "gold_logprob"), 4),
                    "seal_gold_logprob": round(mean_of(theirs, "gold_logprob"), 4),
                }
            )
            print(
                f"[compare {i + 1}/{len(passages)}] ours {log.seconds:.1f} s, "
                f"SEAL recipe {seal_s:.1f} s",
                file=sys.stderr,
            )
        mean = lambda k: round(sum(r[k] for r in rows) / len(rows), 4)  # noqa: E731
        result["seal_recipe"] = {
            "epochs": compare_epochs,
            "recipe": f"each line padded to {SEAL_PAD_TO} tokens, pads in the loss, HF Trainer, "
            "LoRA r=32 alpha=64 on q_proj/v_proj, lr 1e-3, batch "
            f"{cfg.adapt.batch_size}",
            "ours": f"packed, no padding, LoRA r={cfg.adapt.rank} alpha={cfg.adapt.alpha} on "
            f"{','.join(cfg.adapt.target_modules)}, lr {cfg.adapt.learning_rate}, batch "
            f"{cfg.adapt.batch_size}",
            "passages": rows,
            "ours_train_median_s": median([r["ours_train_s"] for r in rows]),
            "seal_train_median_s": median([r["seal_train_s"] for r in rows]),
            "ours_contained": mean("ours_contained"),
            "seal_contained": mean("seal_contained"),
            "ours_gold_logprob": mean("ours_gold_logprob"),
            "seal_gold_logprob": mean("seal_gold_logprob"),
        }
        result["speedup_vs_seal_recipe"] = round(
            result["seal_recipe"]["seal_train_median_s"]
            / result["seal_recipe"]["ours_train_median_s"],
            2,
        )
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def report(result: dict) -> str:
    lines = [
        f"inner loop median {result['inner_loop_median_s']:.1f} s per passage "
        f"(self-edit {result['self_edit_median_s']:.1f} s, train {result['train_median_s']:.1f} s, "
        f"answer {result['answer_median_s']:.1f} s) over {len(result['passages'])} passages",
        f"training {result['train_tokens_per_s']:.0f} tokens/s = {result['train_gflops']:.0f} "
        f"GFLOP/s: {100 * result['train_fraction_of_fp32_peak']:.0f}% of the measured fp32 matmul "
        f"peak ({result['matmul_peak_gflops']['float32']:.0f} GFLOP/s), "
        f"{100 * result['train_fraction_of_dtype_peak']:.0f}% of the "
        f"{result['machine']['dtype']} peak",
        f"the same rows with every adapter off (forward + input-gradient backward, the work no "
        f"LoRA training avoids): {result['frozen_floor_tokens_per_s']:.0f} tokens/s = "
        f"{100 * result['frozen_floor_fraction_of_dtype_peak']:.0f}% of the peak; training "
        f"reaches {100 * result['train_fraction_of_frozen_floor']:.0f}% of it",
        f"generation {result['generation_tokens_per_s']:.0f} tokens/s one stream, "
        f"{result['generation_batched_tokens_per_s']:.0f} tokens/s for 5 candidates of a prompt",
        f"peak RSS {result['peak_rss_mb']:.0f} MB",
    ]
    if "baseline" in result:
        base, ratio = result["baseline"], result["speedup_vs_baseline"]
        lines.append(f"vs the code at {base['rev'][:12]} (same harness, same passages):")
        lines += [f"  {k}: {base[k]:.1f} -> {result[k]:.1f} ({ratio[k]:.2f}x)" for k in HEADLINE]
    if "seal_recipe" in result:
        s = result["seal_recipe"]
        lines.append(
            f"vs SEAL's recipe at {s['epochs']} epoch(s): train {s['ours_train_median_s']:.1f} s "
            f"vs {s['seal_train_median_s']:.1f} s = {result['speedup_vs_seal_recipe']:.1f}x faster;"
            f" contained {100 * s['ours_contained']:.0f}% vs {100 * s['seal_contained']:.0f}%, "
            f"gold log-prob {s['ours_gold_logprob']:.2f} vs {s['seal_gold_logprob']:.2f}"
        )
    return "\n".join(lines)


def run(
    cfg: SealConfig,
    data: Path,
    n_passages: int,
    compare_epochs: int,
    seal_recipe: bool,
    seed: int,
    baseline_rev: str | None,
    child_argv: list[str],
    out: Path,
) -> dict:
    """The benchmark: the baseline first (unless None), then this code, the ratios."""
    baseline = run_baseline(baseline_rev, child_argv, out / "baseline") if baseline_rev else None
    result = bench_inner_loop(cfg, load_squad(data)[:n_passages], compare_epochs, seal_recipe, seed)
    if baseline is not None:
        result["baseline"] = {"rev": baseline_rev} | {k: baseline[k] for k in HEADLINE}
        result["baseline_inner_loop_median_s"] = baseline["inner_loop_median_s"]
        # > 1 is faster: seconds as baseline / ours, rates as ours / baseline
        result["speedup_vs_baseline"] = {
            k: round(baseline[k] / result[k] if k in SECONDS else result[k] / baseline[k], 2)
            for k in HEADLINE
        }
    result["config"] = cfg.model_dump(mode="json")
    return result


def main(argv: list[str] | None = None) -> int:
    """A baseline child: the harness alone, on whatever code the path gives."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    add_config_arguments(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    result = run(cfg, args.data, args.passages, 1, False, args.seed, None, [], args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "inner_loop.json", json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
