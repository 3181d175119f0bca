"""`seal learn`: store a document, write self-edits of its passages, and commit a new adapter.

The update continues from the current adapter version and becomes current when it is committed.
(The retention check that can refuse an update comes with the learning-without-forgetting work;
until then every update is accepted and the ledger says so.)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import SealConfig
from agent.errors import SealError
from agent.io import read_text_file
from stores.adapters import BASE
from stores.state import State

MAX_DOCUMENT_BYTES = 1_000_000


@dataclass
class Document:
    title: str
    text: str
    uri: str
    questions: list[tuple[str, str]]  # known (question, answer) probes, e.g. SQuAD's


def read_document(path: Path, index: int) -> Document:
    """A SQuAD-format .json (passage `index`, with its questions as probes) or a text file."""
    if path.suffix.lower() == ".json":
        from evals.squad import load_squad

        passages = load_squad(path)
        if not 0 <= index < len(passages):
            raise SealError(f"--index {index} is out of range: {path} has {len(passages)} passages")
        p = passages[index]
        qs = [(q.question, q.answer) for q in p.questions]
        return Document(p.title, p.context, f"{path.resolve()}#{index}", qs)
    text = read_text_file(path, MAX_DOCUMENT_BYTES)
    return Document(path.stem.replace("_", " "), text, str(path.resolve()), [])


@dataclass
class LearnResult:
    document_id: int
    version: int
    parent: int
    n_sequences: int
    train_seconds: float
    final_loss: float


def learn_document(state: State, runtime, cfg: SealConfig, doc_id: int, title: str) -> LearnResult:
    """Self-edit every passage of a stored document, train, commit, make the version current."""
    from agent.inner_loop import train_adapter
    from policies.self_edit import write_self_edits

    ledger, adapters = state.ledger, state.adapters
    parent = adapters.current()
    adapters.load_into(runtime, parent)
    passages = ledger.passages(doc_id)
    edit_ids, sequences = [], []
    for n, passage in enumerate(passages, 1):
        print(f"  self-edit {n}/{len(passages)} ...", flush=True)
        edit = write_self_edits(
            runtime, title, passage["text"], cfg.self_edit, seed=cfg.adapt.seed
        )[0]
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
    print(f"  training on {len(sequences)} sequences ...", flush=True)
    log = train_adapter(runtime, sequences, cfg.adapt, reset=parent == BASE)
    version = adapters.commit(
        runtime.write_adapter_files,
        parent=parent,
        base_fingerprint=runtime.fingerprint(),
        config=cfg.model_dump(mode="json"),
        note=f"document {doc_id}: {title}",
    )
    with ledger.transaction():
        ledger.record_update(
            decision="accept",
            reason="accepted without a retention check",
            version=version,
            parent_version=parent or None,
            n_sequences=len(sequences),
            new_self_edits=edit_ids,
            strategy="continual",
            losses=log.losses,
            seconds=log.seconds,
        )
        adapters.set_current(version)
    return LearnResult(doc_id, version, parent, len(sequences), log.seconds, log.losses[-1])


def run_learn(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    from agent.runtime import ModelRuntime

    doc = read_document(args.path, args.index)
    with State.open(home) as state:
        stored = state.add_document(
            doc.text,
            source="file",
            namespace=cfg.store.namespace,
            passage_words=cfg.store.passage_words,
            uri=doc.uri,
            title=doc.title,
        )
        if stored.duplicate_of is not None:
            print(f"{args.path} is already known as document {stored.duplicate_of}; nothing to do")
            return 0
        doc_id = stored.document_id
        for question, answer in doc.questions:
            state.ledger.add_probe(
                document_id=doc_id, question=question, answer=answer, origin="dataset"
            )
        for new, old, similarity in stored.near_duplicates:
            print(f"  passage {new} is a near duplicate of stored passage {old} ({similarity:.2f})")
        print(f"stored document {doc_id} ({len(stored.passage_ids)} passages) in {home}")
        start = time.perf_counter()
        runtime = ModelRuntime.load(cfg.model, cfg.adapt)
        try:
            result = learn_document(state, runtime, cfg, doc_id, doc.title)
        except BaseException as exc:
            state.ledger.set_document_status(doc_id, "rejected", f"learning failed: {exc}")
            raise
    print(
        f"learned document {doc_id}: adapter version {result.version} (parent "
        f"{result.parent or 'base'}) from {result.n_sequences} sequences, final loss "
        f"{result.final_loss:.3f}, training {result.train_seconds:.1f} s, "
        f"total {time.perf_counter() - start:.1f} s"
    )
    return 0
