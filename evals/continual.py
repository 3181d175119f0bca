"""SEAL's continual-learning protocol: learn T SQuAD passages one after another, and measure after
every update how well each passage of the sequence is known (the accuracy matrix R).

    python evals/continual.py --out runs/continual                 # T=8, 2 sequences
    python evals/continual.py --quick --out runs/continual-quick   # T=3, 1 sequence: minutes

Every strategy sees the same sequences, the same self-edits and the same probes:

- naive         sequential self-edit updates, each continuing from the last (SEAL's experiment)
- replay        the same, each update also replaying earlier self-edits (update.replay_ratio)
- replay+gate   replay, and the retention gate commits or rolls back every update (agent/update;
                a candidate that hurt earlier passages first gets update.repair_rounds repairs)
- replay+gate+base  replay+gate, and every --merge-every accepted updates the adapter is merged
                into the base weights (agent/merge.py), under the same check
- merge:METHOD  one adapter per passage, trained from the base, combined after each passage with
                PEFT's add_weighted_adapter (linear, cat, svd, ties, dare_ties)
- rag           no weight update: the passage retrieved for each question (top-1 from the passage
                store of the passages read so far) is put in the prompt
- rag+weights   replay+gate's weights and the retrieved passage

Self-edits (own implications) and probes are written once per passage by the base model. The
gate's probes are questions the model wrote itself, never the SQuAD questions, which only score
R: the share of a passage's questions whose greedy closed-book answer contains the gold answer
(R[0] is the base model; R[i] is after learning passages 1..i). Metrics and plots:
evals/continual_report.py. An interrupted run resumes: finished (sequence, strategy) rows and the
prepared self-edits are kept in --out.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.answering import answer_and_grade  # noqa: E402
from agent.core.config import SealConfig, add_config_arguments, config_from_args  # noqa: E402
from agent.core.errors import SealError, run_cli  # noqa: E402
from agent.core.inner_loop import train_adapter
from agent.core.io import append_jsonl, read_jsonl, write_atomic  # noqa: E402
from agent.core.runtime import ModelRuntime
from agent.core.squad import EVAL200, SquadPassage, load_squad  # noqa: E402
from agent.update import NewMaterial, run_update
from evals.continual_report import StrategyRun, results_json, write_report  # noqa: E402
from policies.probes import make_probes
from policies.self_edit import write_self_edits
from stores.state import State

MERGES = ["merge:linear", "merge:cat", "merge:svd", "merge:ties", "merge:dare_ties"]
STRATEGIES = ["naive", "replay", "replay+gate", "replay+gate+base", *MERGES, "rag", "rag+weights"]
# Strategies measured in one pass over a sequence, because they share its training.
FAMILIES = {
    "naive": ["naive", "rag"],
    "replay": ["replay"],
    "replay+gate": ["replay+gate", "rag+weights"],
    "replay+gate+base": ["replay+gate+base"],
    "merge": MERGES,
}


def make_sequences(n_passages: int, n_sequences: int, length: int, seed: int) -> list[list[int]]:
    """Disjoint random sequences of passage indices."""
    if n_sequences * length > n_passages:
        raise SealError(
            f"{n_sequences} sequences of {length} passages need {n_sequences * length} "
            f"passages; the data has {n_passages}"
        )
    picked = random.Random(seed).sample(range(n_passages), n_sequences * length)
    return [picked[i * length : (i + 1) * length] for i in range(n_sequences)]


def prepare(runtime, cfg: SealConfig, passage: SquadPassage, seed: int) -> dict:
    """The passage's self-edit and the model's own probes, written by the base model."""

    runtime.reset_adapter(cfg.adapt.seed)
    [edit, *_] = write_self_edits(
        runtime, passage.title, passage.context, cfg.self_edit, seed=seed, asking=cfg.eval
    )
    probes = make_probes(
        runtime,
        passage.title,
        passage.context,
        cfg.self_edit,
        cfg.update.probes_per_passage,
        cfg.update.probe_source,
    )
    return {"sequences": edit.sequences, "raw": edit.raw, "probes": probes}


class Evaluator:
    """Rows of R: accuracy (`metric`: the short-answer score, or gold contained anywhere) and
    mean gold log-prob per passage of a sequence."""

    def __init__(
        self, runtime, cfg: SealConfig, passages: list[SquadPassage], metric: str = "short"
    ):
        self.runtime, self.cfg, self.metric = runtime, cfg, metric
        self.questions = [q for p in passages for q in p.questions]
        self.owner = [j for j, p in enumerate(passages) for _ in p.questions]
        self.n = len(passages)

    def row(self, state=None) -> tuple[list[float], list[float]]:
        """Closed-book, or with each question's top-1 passage from `state`'s passage store."""
        contexts = None
        if state is not None:
            contexts = []
            for q in self.questions:
                hits = state.passages.query(self.cfg.store.namespace, q.question, k=1)
                contexts.append(hits[0].text if hits else None)
        graded = answer_and_grade(self.runtime, self.questions, self.cfg.eval, contexts=contexts)
        acc, lp = [[] for _ in range(self.n)], [[] for _ in range(self.n)]
        for j, g in zip(self.owner, graded, strict=True):
            acc[j].append(getattr(g, self.metric))
            lp[j].append(g.gold_logprob)
        return [sum(a) / len(a) for a in acc], [sum(x) / len(x) for x in lp]


def store_passage(state, cfg: SealConfig, passage: SquadPassage, prep: dict):
    """Passage, probes and self-edit into the state's ledger and vectors; its NewMaterial."""

    doc = state.add_document(
        passage.context,
        source="squad",
        namespace=cfg.store.namespace,
        passage_words=10_000,  # one SQuAD passage, one stored passage
        title=passage.title,
    )
    doc_id = doc.document_id if doc.document_id is not None else doc.duplicate_of
    for question, answer in prep["probes"]:
        state.ledger.add_probe(
            document_id=doc_id, question=question, answer=answer, origin="generated"
        )
    edit = state.ledger.add_self_edit(
        document_id=doc_id, format=cfg.self_edit.format, text=prep["raw"],
        sequences=prep["sequences"],
    )  # fmt: skip
    return NewMaterial([doc_id], [edit], list(prep["sequences"]), [passage.context])


def run_sequential(family, runtime, cfg, passages, preps, evaluator, base_row, tick) -> dict:
    """naive (+rag), replay, or replay+gate (+rag+weights) on one sequence."""

    gate = family.startswith("replay+gate")
    ratio = 0.0 if family == "naive" else cfg.update.replay_ratio
    merge_every = cfg.update.merge_every if family == "replay+gate+base" else 0  # --merge-every
    run_cfg = cfg.model_copy(deep=True)
    run_cfg.update = cfg.update.model_copy(
        update={"gate": gate, "replay_ratio": ratio, "merge_every": merge_every}
    )
    closed, ctx = FAMILIES[family][0], FAMILIES[family][1:]
    rows = {name: [base_row] for name in FAMILIES[family]}
    seconds = dict.fromkeys(FAMILIES[family], 0.0)
    rejected, repaired, merged, decisions = 0, 0, 0, []
    with (
        tempfile.TemporaryDirectory(prefix="seal-continual-") as tmp,
        State.open(Path(tmp) / "home") as state,
    ):
        runtime.reset_adapter(cfg.adapt.seed)
        for i, (passage, prep) in enumerate(zip(passages, preps, strict=True)):
            start = time.perf_counter()
            material = store_passage(state, run_cfg, passage, prep)
            result = run_update(state, runtime, run_cfg, material, seed=cfg.adapt.seed + i)
            rejected += result.decision == "rollback"
            repaired += result.repairs
            decisions.append(f"{result.decision}: {result.reason}")
            if result.merge is not None:
                merged += result.merge.decision == "accept"
                decisions.append(f"merge {result.merge.decision}: {result.merge.reason}")
            rows[closed].append(evaluator.row())
            seconds[closed] += time.perf_counter() - start
            for name in ctx:  # retrieval, with the base (rag) or the learned weights
                start = time.perf_counter()
                if name == "rag":
                    with runtime.adapter_disabled():
                        rows[name].append(evaluator.row(state))
                else:
                    rows[name].append(evaluator.row(state))
                seconds[name] += time.perf_counter() - start
            tick()
        folder = state.adapters.path(state.adapters.current())
        kept = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    extra = {"updates_rolled_back": rejected, "repair_rounds": repaired} if gate else {}
    if merge_every:
        extra["merges_into_base"] = merged
    return {
        name: {
            "R": [r[0] for r in rows[name]],
            "R_logprob": [r[1] for r in rows[name]],
            "wall_seconds": seconds[name],
            "adapter_bytes": None if name == "rag" else kept,
            "extra": extra if name == closed else {},
            "decisions": decisions if name == closed else [],
        }
        for name in FAMILIES[family]
    }


def run_merges(runtime, cfg, preps, evaluator, base_row, tick) -> dict:
    """One adapter per passage from the base; after each passage, every combination method."""

    rows = {name: [base_row] for name in MERGES}
    seconds = dict.fromkeys(MERGES, 0.0)
    with tempfile.TemporaryDirectory(prefix="seal-merge-") as tmp:
        folders = []
        for i, prep in enumerate(preps):
            start = time.perf_counter()
            train_adapter(runtime, prep["sequences"], cfg.adapt)  # fresh from the base
            folders.append(runtime.save_adapter(Path(tmp) / f"passage{i}"))
            shared = (time.perf_counter() - start) / len(MERGES)
            for name in MERGES:
                start = time.perf_counter()
                runtime.combine_adapters(folders, [1.0] * len(folders), name.split(":")[1])
                rows[name].append(evaluator.row())
                seconds[name] += shared + time.perf_counter() - start
            tick()
        per_passage = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    runtime.reset_adapter(cfg.adapt.seed)
    return {
        name: {
            "R": [r[0] for r in rows[name]],
            "R_logprob": [r[1] for r in rows[name]],
            "wall_seconds": seconds[name],
            "adapter_bytes": per_passage,
            "extra": {},
        }
        for name in MERGES
    }


def metrics_from(rows: list[list[float]]) -> dict[str, float]:
    """ACC, BWT and just-learned of a matrix of any scale (here: gold log-probabilities)."""
    last, T = rows[-1], len(rows) - 1
    return {
        "acc": sum(last) / T,
        "bwt": sum(last[j] - rows[j + 1][j] for j in range(T - 1)) / max(1, T - 1),
        "just_learned": sum(rows[j + 1][j] for j in range(T)) / T,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=EVAL200, help="SQuAD-format JSON file")
    ap.add_argument("--length", type=int, default=8, help="passages per sequence (T)")
    ap.add_argument("--sequences", type=int, default=2, help="sequences (disjoint passages)")
    ap.add_argument("--seed", type=int, default=0, help="which passages form the sequences")
    ap.add_argument(
        "--strategies",
        default=",".join(FAMILIES),
        help=f"comma-separated families to run: {', '.join(FAMILIES)} (their strategies: "
        + "; ".join(f"{k}: {', '.join(v)}" for k, v in FAMILIES.items())
        + ")",
    )
    ap.add_argument(
        "--merge-every",
        type=int,
        default=4,
        help="replay+gate+base: merge into the base after this many accepted updates",
    )
    ap.add_argument(
        "--metric",
        choices=["short", "contained"],
        default="short",
        help="accuracy: the short-answer score (default), or gold contained anywhere in the "
        "answer (runs before the short-answer score)",
    )
    ap.add_argument("--quick", action="store_true", help="T=3, one sequence: a few minutes")
    ap.add_argument("--out", type=Path, default=Path("runs/continual"))
    add_config_arguments(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.length, args.sequences = 3, 1
    return args


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    args = parse_args(argv)
    cfg = config_from_args(args)
    cfg.update.merge_every = args.merge_every
    families = [f.strip() for f in args.strategies.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise SealError(f"unknown strategy families {unknown}; choose from {list(FAMILIES)}")
    data = load_squad(args.data)
    sequences = make_sequences(len(data), args.sequences, args.length, args.seed)
    run_config = {
        "data": str(args.data.resolve()),
        "length": args.length,
        "sequences": sequences,
        "seed": args.seed,
        "metric": args.metric,
        **cfg.model_dump(mode="json", exclude={"store"}),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "config.json"
    if saved.exists():  # more or fewer sequences extend or trim a run; other passages do not
        earlier = json.loads(saved.read_text())["sequences"]
        common = min(len(earlier), len(sequences))
        if earlier[:common] != sequences[:common] or len(earlier[0]) != args.length:
            raise SealError(f"{args.out} holds a run on other sequences; use another --out")
        if json.loads(saved.read_text()).get("metric", "contained") != args.metric:
            raise SealError(f"{args.out} holds a run scored by another --metric; use another --out")
    write_atomic(saved, json.dumps(run_config, indent=2) + "\n")

    prepared = {r["index"]: r for r in read_jsonl(args.out / "prepared.jsonl")}
    done = {(r["sequence"], r["strategy"]): r for r in read_jsonl(args.out / "runs.jsonl")}
    todo = [
        (s, f)
        for s in range(len(sequences))
        for f in families
        if any((s, name) not in done for name in FAMILIES[f])
    ]
    print(
        f"{len(sequences)} sequences x T={args.length}; {len(todo)} (sequence, family) runs to "
        f"do, {len(done)} strategy rows done -> {args.out}",
        flush=True,
    )
    if todo:
        runtime = ModelRuntime.load(cfg.model, cfg.adapt)
        needed = sorted({i for s, _ in todo for i in sequences[s]} - prepared.keys())
        for index in tqdm(needed, desc="self-edits and probes", unit="passage"):
            record = {"index": index, **prepare(runtime, cfg, data[index], args.seed)}
            append_jsonl(args.out / "prepared.jsonl", record)
            prepared[index] = record
        bar = tqdm(total=len(todo) * args.length, desc="updates", unit="update")
        base_rows: dict[int, tuple] = {}
        for s, family in todo:
            passages = [data[i] for i in sequences[s]]
            preps = [prepared[i] for i in sequences[s]]
            if s not in base_rows:
                runtime.reset_adapter(cfg.adapt.seed)
                base_rows[s] = Evaluator(runtime, cfg, passages, args.metric).row()
            if family == "merge":
                evaluator = Evaluator(runtime, cfg, passages, args.metric)
                rows = run_merges(runtime, cfg, preps, evaluator, base_rows[s], bar.update)
            else:
                # merges into the base change the model's weights: that family gets its own copy
                own = ModelRuntime.load(cfg.model, cfg.adapt) if family.endswith("+base") else None
                evaluator = Evaluator(own or runtime, cfg, passages, args.metric)
                rows = run_sequential(
                    family,
                    own or runtime,
                    cfg,
                    passages,
                    preps,
                    evaluator,
                    base_rows[s],
                    bar.update,
                )
            for name, row in rows.items():
                record = {"sequence": s, "strategy": name, **row}
                append_jsonl(args.out / "runs.jsonl", record)
                done[(s, name)] = record
        bar.close()

    runs = []
    for name in STRATEGIES:
        records = [done[(s, name)] for s in range(len(sequences)) if (s, name) in done]
        if not records:
            continue
        extra = {k: sum(r["extra"].get(k, 0) for r in records) for k in records[0]["extra"]}
        # The same metrics on the gold answers' log-probability per token: denser than accuracy
        # for a small model (in nats, not points).
        lp = [metrics_from(r["R_logprob"]) for r in records]
        for key in ("acc", "bwt", "just_learned"):
            extra[f"logprob_{key}"] = round(sum(m[key] for m in lp) / len(lp), 4)
        runs.append(
            StrategyRun(
                name,
                [r["R"] for r in records],
                sum(r["wall_seconds"] for r in records),
                records[0]["adapter_bytes"],
                extra,
            )
        )
    paths = write_report(results_json(runs, run_config), args.out)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
