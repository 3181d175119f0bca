"""`seal learn`: store a document, write self-edits of its passages, and update the adapter.

The update (agent/update.py) continues from the current adapter version with replay, and is
committed only if the retention check passes; `seal history` shows the decision and why.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import SealConfig
from agent.documents import read_file
from stores.state import State


@dataclass
class Document:
    title: str
    text: str
    uri: str
    questions: list[tuple[str, str]]  # known (question, answer) probes, e.g. SQuAD's


def read_document(path: Path, index: int) -> Document:
    """A SQuAD-format .json (passage `index`, with its questions as probes), or a text, Markdown,
    HTML or PDF file (agent/documents.py)."""
    if path.suffix.lower() == ".json":
        from evals.squad import load_squad_passage

        p = load_squad_passage(path, index)
        qs = [(q.question, q.answer) for q in p.questions]
        return Document(p.title, p.context, f"{path.resolve()}#{index}", qs)
    doc = read_file(path)
    return Document(doc.title, doc.text, doc.uri, [])


def load_runtime(state: State, cfg: SealConfig):
    """The model as the state knows it: the configured base model (or the merged base the state
    points at), with the current adapter version loaded. Every process that answers or learns
    from a state loads the model here."""
    from agent.runtime import ModelRuntime

    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    state.adapters.load_into(runtime)
    return runtime


def learn_document(state: State, runtime, cfg: SealConfig, doc_id: int, title: str):
    """Probe (if it has no probes yet), self-edit every passage, then the gated update."""
    from agent.update import NewMaterial, run_update
    from policies.probes import make_probes
    from policies.self_edit import write_self_edits

    ledger = state.ledger
    state.adapters.load_into(runtime)
    passages = ledger.passages(doc_id)
    if not ledger.probes(doc_id):  # made before learning, so that they measure its effect
        for passage in passages:
            for question, answer in make_probes(
                runtime,
                title,
                passage["text"],
                cfg.self_edit,
                cfg.update.probes_per_passage,
                cfg.update.probe_source,
            ):
                ledger.add_probe(
                    document_id=doc_id,
                    passage_id=passage["id"],
                    question=question,
                    answer=answer,
                    origin="generated",
                )
    edit_ids, sequences = [], []
    for n, passage in enumerate(passages, 1):
        print(f"  self-edit {n}/{len(passages)} ...", flush=True)
        [edit, *_] = write_self_edits(
            runtime, title, passage["text"], cfg.self_edit, seed=cfg.adapt.seed
        )
        edit_ids.append(
            ledger.add_self_edit(
                document_id=doc_id,
                passage_id=passage["id"],
                format=edit.format,
                text=edit.raw,
                sequences=edit.sequences,
            )
        )
        sequences += edit.sequences
    ledger.set_document_status(doc_id, "self_edited")
    print(f"  training on {len(sequences)} sequences (+ replay) and checking retention ...")
    material = NewMaterial([doc_id], edit_ids, sequences, [p["text"] for p in passages])
    return run_update(state, runtime, cfg, material, seed=cfg.adapt.seed)


def run_learn(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    doc = read_document(args.path, args.index)
    with State.open(home) as state:
        state.near_duplicate_similarity = cfg.store.near_duplicate_similarity
        stored = state.add_document(
            doc.text,
            source="file",
            namespace=cfg.store.namespace,
            passage_words=cfg.store.passage_words,
            uri=doc.uri,
            title=doc.title,
        )
        doc_id = stored.document_id
        if stored.duplicate_of is not None:
            doc_id = stored.duplicate_of
            status = state.ledger.document(doc_id)["status"]
            if status == "learned":
                print(f"{args.path} is already known as document {doc_id}; nothing to do")
                return 0
            print(f"{args.path} is document {doc_id} ({status}, not learned); learning it now")
        else:
            print(f"stored document {doc_id} ({len(stored.passage_ids)} passages) in {home}")
        for new, old, similarity in stored.near_duplicates:
            print(f"  passage {new} is a near duplicate of stored passage {old} ({similarity:.2f})")
        if not state.ledger.probes(doc_id):
            for question, answer in doc.questions:
                state.ledger.add_probe(
                    document_id=doc_id, question=question, answer=answer, origin="dataset"
                )
        start = time.perf_counter()
        runtime = load_runtime(state, cfg)
        try:
            result = learn_document(state, runtime, cfg, doc_id, doc.title)
        except BaseException as exc:
            state.ledger.set_document_status(doc_id, "rejected", f"learning failed: {exc}")
            raise
    if result.decision == "accept":
        print(
            f"learned document {doc_id}: adapter version {result.version} (parent "
            f"{result.parent or 'base'}) from {result.log.n_sequences} sequences "
            f"({result.n_replay} replayed self-edits), final loss {result.log.losses[-1]:.3f}"
        )
    else:
        print(f"did not learn document {doc_id}: the update was rolled back")
    print(f"  {result.reason}; {time.perf_counter() - start:.1f} s")
    return 0
