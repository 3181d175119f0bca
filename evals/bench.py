"""Speed benchmarks. `python evals/bench.py inner-loop|dtype|stores|ingest|serve|startup|device`

startup: see evals/bench_startup.py; `seal status`, `seal history`, `seal --help` wall time and
peak RSS (median of --repeats); writes startup.json.

stores: see evals/bench_stores.py; writes stores.json.

dtype: see evals/bench_dtype.py; bf16 against float32 (training, generation, memory growth over
many differently shaped updates); writes dtype.json.

serve: see evals/bench_serve.py; writes bench.json (results/serve by default).

ingest: see evals/bench_ingest.py; `seal ingest --follow` for --minutes (default 60) against the
local news server; items per hour stored and learned, memory over the run; writes
bench_ingest.json.

device: see evals/bench_device.py; the prepared script for a lent GPU: the inner loop, one ReST-EM
round (10 passages x 5 candidates) and answering throughput; writes device.json, and on CUDA the
`gpu` key of inner_loop.json in --out.

inner-loop: see evals/bench_inner_loop.py; the inner loop's seconds per passage (self-edit,
training, answering), training's share of the matmul peak, generation tokens/s; the same harness
first runs on the code before the speed work (--baseline REV: another revision; none: skip), and
the report gives the ratios; --seal-recipe adds SEAL's training recipe side by side. Writes
inner_loop.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.core.config import add_config_arguments, config_from_args
from agent.core.errors import run_cli
from agent.core.io import write_atomic
from agent.core.squad import EVAL200, load_squad
from evals import (
    bench_device,
    bench_dtype,
    bench_ingest,
    bench_inner_loop,
    bench_serve,
    bench_startup,
    bench_stores,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="bench", required=True)
    il = sub.add_parser("inner-loop", help="time the SEAL inner loop; compare with SEAL's recipe")
    il.add_argument("--passages", type=int, default=5, help="first N passages of --data (>= 5)")
    il.add_argument("--data", type=Path, default=EVAL200)
    il.add_argument(
        "--compare-epochs",
        type=int,
        default=1,
        help="epochs for both sides of the SEAL-recipe comparison (its padded lines "
        "cost ~2 min per epoch per passage on a 2-core CPU)",
    )
    il.add_argument("--seal-recipe", action="store_true", help="also train with SEAL's recipe")
    il.add_argument(
        "--baseline",
        default=bench_inner_loop.BASELINE_REV,
        metavar="REV",
        help="git revision whose code runs first through the same harness ('none': skip; "
        "default: the code before the speed work)",
    )
    il.add_argument("--seed", type=int, default=0)
    st = sub.add_parser("stores", help="passage store, ledger and adapter store speeds")
    st.add_argument("--passages", type=int, default=10_000, help="passages to embed and insert")
    st.add_argument("--batch", type=int, default=500, help="passages per insert call")
    st.add_argument("--ledger-writes", type=int, default=2000)
    st.add_argument("--versions", type=int, default=10, help="adapter versions to commit")
    ig = sub.add_parser("ingest", help="seal ingest against the local news server: items/hour")
    ig.add_argument("--minutes", type=float, default=60.0, help="length of the run")
    ig.add_argument("--backlog", type=int, default=30, help="stories already published")
    ig.add_argument("--publish-every", type=float, default=20.0, help="seconds between stories")
    ig.add_argument("--poll-every", type=float, default=60.0, help="feed poll interval, seconds")
    su = sub.add_parser("startup", help="start-up time and memory of the light seal commands")
    su.add_argument("--repeats", type=int, default=5, help="runs per command (median)")
    dt = sub.add_parser("dtype", help="bf16 vs float32: training, generation, memory growth")
    dt.add_argument("--steps", type=int, default=120, help="training steps per dtype")
    dv = sub.add_parser(
        "device", help="for a lent GPU: inner loop, a ReST-EM round, answering throughput"
    )
    dv.add_argument("--passages", type=int, default=5, help="inner loop: first N of --data")
    dv.add_argument(
        "--round-passages", type=int, default=10, help="ReST-EM round: first N of --round-data"
    )
    dv.add_argument("--candidates", type=int, default=5, help="ReST-EM candidates per passage")
    dv.add_argument(
        "--answer-passages",
        type=int,
        default=20,
        help="answering: the questions of the first N of --data",
    )
    dv.add_argument(
        "--data", type=Path, default=EVAL200, help="passages of the inner loop and the answering"
    )
    dv.add_argument(
        "--round-data",
        type=Path,
        default=bench_device.ROUND_DATA,
        help="SQuAD-format passages of the ReST-EM round (default ../shared/data/squad/train.json)",
    )
    for p in (il, st, ig, su, dt, dv):
        p.add_argument("--out", type=Path, default=Path("runs/bench"))
        add_config_arguments(p)
    sv = sub.add_parser("serve", help="seal serve: streaming chats of many users during an update")
    sv.add_argument("--users", type=int, default=4)
    sv.add_argument("--clients", type=int, default=8, help="concurrent streaming chats")
    sv.add_argument("--rounds", type=int, default=1, help="times the clients are sent")
    sv.add_argument("--no-page", action="store_true", help="skip the page and its screenshot")
    sv.add_argument("--out", type=Path, default=Path("results/serve"))
    add_config_arguments(sv)
    args = ap.parse_args(argv)

    cfg = config_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.bench == "ingest":
        result = bench_ingest.run(
            config_argv(args),
            args.minutes,
            backlog=args.backlog,
            publish_every=args.publish_every,
            poll_every=args.poll_every,
        )
        result["config"] = cfg.model_dump(mode="json")
        write_atomic(args.out / "bench_ingest.json", json.dumps(result, indent=2) + "\n")
        print(bench_ingest.report(result))
        print(f"wrote {args.out / 'bench_ingest.json'}")
        return 0
    if args.bench == "serve":
        page = None if args.no_page else args.out / "page.png"
        result = bench_serve.run(
            args.set, args.config, args.users, args.clients, args.rounds, page=page
        )
        result["config"] = cfg.model_dump(mode="json")
        write_atomic(args.out / "bench.json", json.dumps(result, indent=2) + "\n")
        print(bench_serve.report(result))
        print(f"wrote {args.out / 'bench.json'}")
        return 0
    if args.bench == "dtype":
        result = bench_dtype.run(args.steps, config_argv(args))
        write_atomic(args.out / "dtype.json", json.dumps(result, indent=2) + "\n")
        print(bench_dtype.report(result))
        print(f"wrote {args.out / 'dtype.json'}")
        return 0
    if args.bench == "device":
        result = bench_device.run(
            cfg,
            config_argv(args),
            load_squad(args.data),
            args.round_data,
            inner_passages=args.passages,
            round_passages=args.round_passages,
            candidates=args.candidates,
            answer_passages=args.answer_passages,
        )
        write_atomic(args.out / "device.json", json.dumps(result, indent=2) + "\n")
        print(bench_device.report(result))
        print(f"wrote {args.out / 'device.json'}")
        inner_loop = args.out / "inner_loop.json"
        if result["machine"]["device"] == "cuda" and bench_device.record_gpu(
            inner_loop, bench_device.gpu_figures(result)
        ):
            print(f"set the gpu figures in {inner_loop}")
        return 0
    if args.bench == "startup":
        result = bench_startup.run(args.repeats)
        write_atomic(args.out / "startup.json", json.dumps(result, indent=2) + "\n")
        print(bench_startup.report(result))
        print(f"wrote {args.out / 'startup.json'}")
        return 0
    if args.bench == "stores":
        result = bench_stores.run(cfg, args.passages, args.batch, args.ledger_writes, args.versions)
        result["config"] = cfg.model_dump(mode="json")
        write_atomic(args.out / "stores.json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out / 'stores.json'}")
        return 0
    child = ["--passages", str(args.passages), "--data", str(args.data.resolve())]
    child += ["--seed", str(args.seed), *config_argv(args)]
    result = bench_inner_loop.run(
        cfg,
        args.data,
        args.passages,
        args.compare_epochs,
        args.seal_recipe,
        args.seed,
        None if args.baseline == "none" else args.baseline,
        child,
        args.out,
    )
    write_atomic(args.out / "inner_loop.json", json.dumps(result, indent=2) + "\n")
    print(bench_inner_loop.report(result))
    print(f"wrote {args.out / 'inner_loop.json'}")
    return 0


def config_argv(args) -> list[str]:
    """The --config/--set flags of this run, for a child process."""
    given = ["--config", str(Path(args.config).resolve())] if args.config else []
    return given + [a for s in args.set for a in ("--set", s)]


if __name__ == "__main__":
    sys.exit(run_cli(main))
