"""The retention check's rule and its choice of earlier documents (real SQLite and chromadb)."""

import random

import pytest

from agent.core.config import SealConfig
from policies.retention import Check, decide, retention_documents
from stores.state import State


@pytest.mark.parametrize(
    "new, old, accept, reason",
    [
        ([Check(1, -3.0, -1.0)], [], True, "new documents +2.000"),
        ([Check(1, -3.0, -3.5)], [], False, "did not improve"),
        ([], [Check(2, -1.0, -1.05)], True, "no probes for the new documents"),
        ([Check(1, -3, -1)], [Check(2, -1.0, -2.5)], False, "document 2 dropped 1.500"),
        ([Check(1, -3, -1)], [Check(2, -1.0, -1.3)] * 2, False, "dropped 0.300 on average"),
        ([Check(1, -3, -1)], [Check(2, -1, -1.05), Check(3, -1, -0.9)], True, "worst -0.050"),
    ],
)
def test_decide(new, old, accept, reason):
    cfg = SealConfig().update.model_copy(update={"max_passage_drop": 1.0, "max_mean_drop": 0.1})
    got, why = decide(new, old, cfg)
    assert got == accept and reason in why


def test_retention_checks_nearest_documents_first(tmp_path):
    state = State.open(tmp_path / "home")
    cfg = SealConfig()
    cfg.update = cfg.update.model_copy(update={"nearest_passages": 1, "random_passages": 1})
    docs = {}
    for text in [
        "The river Seine flows through Paris into the sea.",
        "Volcanoes erupt molten rock called lava.",
        "The museum in Rome has many old paintings.",
        "Bees make honey from the nectar of flowers.",
    ]:
        doc = state.add_document(text, source="test", namespace="user", passage_words=100)
        state.ledger.add_probe(
            document_id=doc.document_id, question="Q?", answer="A", origin="dataset"
        )
        state.ledger.set_document_status(doc.document_id, "learned")
        docs[text.split()[1]] = doc.document_id
    question = ["Which river flows through Paris?"]
    picks = [retention_documents(state, [99], question, cfg, random.Random(s)) for s in range(12)]
    assert all(p[0] == docs["river"] and len(p) == 2 for p in picks)
    assert {p[1] for p in picks} == set(docs.values()) - {docs["river"]}  # random covers the rest
    state.close()
