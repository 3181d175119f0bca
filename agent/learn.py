"""`seal learn`: store a document, write self-edits of its passages, and update the adapter.

The update (agent/update.py) continues from the current adapter version with replay, and is
committed only if the retention check passes; `seal history` shows the decision and why.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.core.config import SealConfig
from agent.core.squad import load_squad_passage
from agent.documents import read_file
from agent.state_model import load_runtime
from agent.update import NewMaterial, run_update
from policies.probes import make_probes
from policies.self_edit import write_self_edits
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
        p = load_squad_passage(path, index)
        qs = [(q.question, q.answer) for q in p.questions]
        return Document(p.title, p.context, f"{path.resolve()}#{index}", qs)
    doc = read_file(path)
    return Document(doc.title, doc.text, doc.uri, [])


def learn_document(state: State, runtime, cfg: SealConfig, doc_id: int, title: str):
    """Probe (if it has no probes yet), self-edit every passage, then the gated update."""
    return learn_documents(state, runtime, cfg, [doc_id], titles={doc_id: title})


def learn_documents(
    state: State,
    runtime,
    cfg: SealConfig,
    doc_ids: list[int],
    *,
    titles: dict[int, str] | None = None,
    progress: Callable[[str], None] | None = None,
):
    """One update from several documents (SEAL's continued-pretraining setting): probe each
    document that has no probes yet, self-edit every passage of every document, then one gated
    update on all the self-edits. Titles default to the ledger's; `progress` gets progress lines
    (default: printed)."""
    say = progress or (lambda line: print(line, flush=True))
    material = self_edit_documents(state, runtime, cfg, doc_ids, titles=titles, progress=say)
    n = len(material.sequences)
    say(f"  training on {n} sequences (+ replay) and checking retention ...")
    return run_update(state, runtime, cfg, material, seed=cfg.adapt.seed)


def add_probes(
    state: State,
    runtime,
    cfg: SealConfig,
    doc_id: int,
    title: str,
    fallback: Callable[[str, str], list[tuple[str, str]]] | None = None,
) -> None:
    """Probes of every passage of a document that has none yet; made before it is learned, so
    that they measure the update. `fallback(title, text)` gives probes where the model makes
    none."""

    ledger = state.ledger
    if ledger.probes(doc_id):
        return
    for passage in ledger.passages(doc_id):
        made = make_probes(
            runtime,
            title,
            passage["text"],
            cfg.self_edit,
            cfg.update.probes_per_passage,
            cfg.update.probe_source,
        )
        for question, answer in made or (fallback(title, passage["text"]) if fallback else []):
            ledger.add_probe(
                document_id=doc_id,
                passage_id=passage["id"],
                question=question,
                answer=answer,
                origin="generated",
            )


def self_edit_documents(
    state: State,
    runtime,
    cfg: SealConfig,
    doc_ids: list[int],
    *,
    titles: dict[int, str] | None = None,
    progress: Callable[[str], None] | None = None,
):
    """The material of one update (the graph's self-edit node, then `learn_documents`): probes
    for each document that has none yet, and a self-edit of every passage."""
    ledger = state.ledger
    say = progress or (lambda line: print(line, flush=True))
    state.adapters.load_into(runtime)
    titles = titles or {}
    documents = [
        (d, titles.get(d) or ledger.document(d)["title"] or "", ledger.passages(d)) for d in doc_ids
    ]
    for doc_id, title, _ in documents:
        add_probes(state, runtime, cfg, doc_id, title)
    edit_ids, sequences, texts = [], [], []
    total = sum(len(passages) for _, _, passages in documents)
    n = 0
    for doc_id, title, passages in documents:
        for passage in passages:
            n += 1
            say(f"  self-edit {n}/{total} ...")
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
                    policy_version=edit.writer,
                )
            )
            sequences += edit.sequences
            texts.append(passage["text"])
        ledger.set_document_status(doc_id, "self_edited")
    return NewMaterial(list(doc_ids), edit_ids, sequences, texts)


def run_learn(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    doc = read_document(args.path, args.index)
    with State.open(home, near_duplicate_similarity=cfg.store.near_duplicate_similarity) as state:
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
    if result.merge is not None:
        print(f"merge into the base ({cfg.update.merge_every} updates since the last): ", end="")
        print_merge(result.merge)
    return 0


def print_merge(result) -> None:
    if result.decision == "accept":
        print(f"version {result.version} (parent v{result.parent}): {result.reason}")
    else:
        print(f"rolled back, v{result.parent} stays current: {result.reason}")
