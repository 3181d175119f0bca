"""`python evals/bench.py stores`: how fast the agent's memory is on this machine.

- passage store: embed N passages (all-MiniLM-L6-v2 on CPU) and insert them (chromadb, with the
  duplicate and near-duplicate checks every add makes) timed separately; query latency p50/p95
  for text queries (embedding included) against the full collection;
- ledger: single-document writes per second, each its own durable transaction (WAL,
  synchronous=FULL), and replay samples per second;
- adapter store: commit (write, checksum, fsync, rename, ledger row) and rollback (checksum
  verification, pointer switch) of real default-model adapters, and loading one into the model.

Passages are SQuAD eval200 contexts plus the lines of SEAL's published self-edits (all vendored),
so their lengths and vocabulary are those the agent meets. Writes stores.json to --out.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from agent.core.config import SealConfig
from agent.core.runtime import ModelRuntime
from agent.core.squad import EVAL200, load_squad
from stores.ledger import Ledger
from stores.passages import PassageRecord, PassageStore
from stores.state import State

DATA = EVAL200.parent
SELF_EDIT_FILES = ["selfedits_gpt41_eval200.json", "selfedits_seal_iter2_eval200.json"]


def corpus(n: int) -> list[str]:
    """`n` distinct passage texts: eval200 contexts, then self-edit lines of six words or more."""
    seen: dict[str, None] = {p.context: None for p in load_squad(EVAL200)}
    for name in SELF_EDIT_FILES:
        for item in json.loads((DATA / name).read_text(encoding="utf-8")):
            for completion in item["completions"]:
                for line in completion.splitlines():
                    if len(line.split()) >= 6:
                        seen.setdefault(line.strip(), None)
    texts = list(seen)
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} distinct passages available; use --passages <= that")
    return texts[:n]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def bench_passages(folder: Path, n: int, batch: int, queries: list[str]) -> dict:

    texts = corpus(n)
    store = PassageStore(folder / "vectors")
    store.embed(["warm up the embedding model"])
    start = time.perf_counter()
    embeddings = store.embed(texts)
    embed_s = time.perf_counter() - start
    now = time.time()
    records = [PassageRecord(i + 1, i // 4 + 1, text, now) for i, text in enumerate(texts)]
    start = time.perf_counter()
    near = 0
    for lo in range(0, n, batch):
        result = store.add("bench", records[lo : lo + batch], embeddings[lo : lo + batch])
        near += len(result.near_duplicates)
    insert_s = time.perf_counter() - start
    store.query("bench", "warm up")
    latencies = []
    for question in queries:
        start = time.perf_counter()
        store.query("bench", question, k=5)
        latencies.append(1000 * (time.perf_counter() - start))
    return {
        "passages": n,
        "count_after": store.count("bench"),
        "embed_s": round(embed_s, 2),
        "embed_passages_per_s": round(n / embed_s, 1),
        "insert_s": round(insert_s, 2),
        "insert_passages_per_s": round(n / insert_s, 1),
        "insert_batch": batch,
        "near_duplicates_reported": near,
        "queries": len(latencies),
        "query_ms_p50": round(percentile(latencies, 0.5), 2),
        "query_ms_p95": round(percentile(latencies, 0.95), 2),
    }


def bench_ledger(folder: Path, writes: int) -> dict:

    ledger = Ledger(folder / "ledger.sqlite")
    start = time.perf_counter()
    for i in range(writes):
        ledger.add_document(
            namespace="bench",
            source="bench",
            uri=f"doc{i}",
            title=f"doc {i}",
            content_hash=f"hash{i}",
            chars=600,
            passages=[(f"passage {i}", f"p{i}")],
        )
    write_s = time.perf_counter() - start
    edits = [
        ledger.add_self_edit(document_id=i + 1, format="implications", text="x", sequences=["x"])
        for i in range(writes)
    ]
    ledger.add_adapter_version(
        1, parent=None, base_fingerprint="bench", manifest_sha256="x", created_at=time.time()
    )
    ledger.record_update(
        decision="accept",
        reason="bench",
        version=1,
        parent_version=None,
        n_sequences=len(edits),
        new_self_edits=edits,
    )
    start = time.perf_counter()
    samples = 50
    for seed in range(samples):
        ledger.sample_replay(32, seed=seed)
    sample_s = time.perf_counter() - start
    ledger.close()
    return {
        "document_writes": writes,
        "document_writes_per_s": round(writes / write_s, 1),
        "replay_pool": len(edits),
        "replay_samples_per_s": round(samples / sample_s, 1),
    }


def bench_adapters(folder: Path, cfg: SealConfig, versions: int) -> dict:

    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    commits, rollbacks, loads = [], [], []
    with State.open(folder / "home") as state:
        parent = 0
        for _ in range(versions):
            start = time.perf_counter()
            parent = state.adapters.commit(
                runtime.write_adapter_files,
                parent=parent,
                base_fingerprint=runtime.fingerprint(),
                config=cfg.model_dump(mode="json"),
            )
            commits.append(time.perf_counter() - start)
        for version in range(1, versions + 1):
            start = time.perf_counter()
            state.adapters.rollback(version)
            rollbacks.append(time.perf_counter() - start)
            start = time.perf_counter()
            state.adapters.load_into(runtime)
            loads.append(time.perf_counter() - start)
        size = state.adapters.disk_bytes() / versions
    return {
        "model": cfg.model.name,
        "adapter_mb": round(size / 2**20, 1),
        "versions": versions,
        "commit_ms_median": round(1000 * statistics.median(commits), 1),
        "rollback_ms_median": round(1000 * statistics.median(rollbacks), 1),
        "load_into_model_ms_median": round(1000 * statistics.median(loads), 1),
    }


def run(cfg: SealConfig, passages: int, batch: int, writes: int, versions: int) -> dict:
    queries = [q.question for p in load_squad(EVAL200) for q in p.questions][:200]
    with tempfile.TemporaryDirectory(prefix="seal-bench-stores-") as tmp:
        folder = Path(tmp)
        result = {"passage_store": bench_passages(folder, passages, batch, queries)}
        print(json.dumps(result["passage_store"], indent=2), flush=True)
        result["ledger"] = bench_ledger(folder, writes)
        print(json.dumps(result["ledger"], indent=2), flush=True)
        result["adapter_store"] = bench_adapters(folder, cfg, versions)
        print(json.dumps(result["adapter_store"], indent=2), flush=True)
    return result
