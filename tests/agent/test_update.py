"""The gated update with the tiny model and real stores (SQLite, chromadb, adapter folders)."""

import json

import pytest
import torch

from agent.core.answering import ANSWER_PROMPT
from agent.core.config import EvalConfig, SealConfig
from agent.core.inner_loop import train_adapter
from agent.update import NewMaterial, run_update
from policies.anchors import ANCHOR_DOCUMENT, base_answers
from policies.replay import choose_replay
from policies.retention import Check, changed_anchors, decide
from stores.state import State


def qa(question: str, answer: str) -> str:
    return ANSWER_PROMPT.format(question=question) + answer


def config(tiny_adapt, **update) -> SealConfig:
    cfg = SealConfig()
    cfg.adapt = tiny_adapt(epochs=8, learning_rate=1e-2)
    # anchors off unless a test asks for them: the tiny model's answers to them are noise
    cfg.update = cfg.update.model_copy(update={"replay_ratio": 0.0, "anchors": 0, **update})
    return cfg


def add(state, text, question, answer, sequences):
    """A stored document with one probe and one self-edit; returns its NewMaterial."""
    doc = state.add_document(text, source="test", namespace="user", passage_words=100)
    state.ledger.add_probe(
        document_id=doc.document_id, question=question, answer=answer, origin="dataset"
    )
    edit = state.ledger.add_self_edit(
        document_id=doc.document_id, format="self-qa", text="", sequences=sequences
    )
    return NewMaterial([doc.document_id], [edit], sequences, [text])


DOCS = {  # text, probe question, probe answer, self-edit sequences
    "france": (
        "The capital of France is Paris.",
        "What is the capital of France?",
        "Paris",
        [qa("What is the capital of France?", "Paris")] * 4,
    ),
    "italy": (
        "The capital of Italy is Rome.",
        "What is the capital of Italy?",
        "Rome",
        [qa("What is the capital of Italy?", "Rome")] * 4,
    ),
    "bridge": (
        "The bridge in Rome was built in 1990.",
        "When was the bridge built?",
        "1990",
        [qa("When was the bridge built?", "1990")] * 4,
    ),
    # teaches its own fact, and overwrites France's
    "overwrite": (
        "The tower in Paris was built in 1889.",
        "When was the tower built?",
        "1889",
        [qa("When was the tower built?", "1889"), qa("What is the capital of France?", "Rome")] * 4,
    ),
}


@pytest.fixture
def state(tmp_path):
    with State.open(tmp_path / "home") as state:
        yield state


def logits(runtime):
    ids = runtime.tokenizer("What is the capital of France?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return runtime.model(input_ids=ids, use_cache=False).logits[0]


def test_gate_refuses_an_update_that_destroys_an_earlier_fact(state, make_runtime, tiny_adapt):
    runtime = make_runtime(tiny_adapt())
    cfg = config(tiny_adapt, repair_rounds=0)  # the gate alone (a repair is tested below)
    france = add(state, *DOCS["france"])
    first = run_update(state, runtime, cfg, france)
    assert first.decision == "accept", first.reason
    assert state.adapters.current() == first.version
    learned = logits(runtime)

    tower = add(state, *DOCS["overwrite"])
    second = run_update(state, runtime, cfg, tower)
    assert second.decision == "rollback"
    assert f"document {france.document_ids[0]} dropped" in second.reason
    assert second.new[0].change > 0  # it did learn its own fact
    assert state.adapters.current() == first.version  # current untouched
    assert torch.allclose(logits(runtime), learned, atol=1e-6)  # the runtime answers as before
    row = state.ledger.history(limit=1)[0]
    assert row["decision"] == "rollback" and row["version"] is None
    assert state.ledger.document(tower.document_ids[0])["status"] == "rejected"
    assert [r.document_id for r in state.ledger.replay_pool()] == france.document_ids


def test_gate_accepts_a_compatible_update_and_records_evidence(state, make_runtime, tiny_adapt):
    runtime = make_runtime(tiny_adapt())
    # the tiny model shifts every answer a little; the tolerance is for real interference
    cfg = config(tiny_adapt, replay_ratio=1.0, max_mean_drop=0.5)
    france = add(state, *DOCS["france"])
    assert run_update(state, runtime, cfg, france).decision == "accept"
    italy = add(state, *DOCS["italy"])
    result = run_update(state, runtime, cfg, italy)
    assert result.decision == "accept", result.reason
    assert result.n_replay == 1 and [c.document_id for c in result.old] == france.document_ids
    assert state.adapters.current() == result.version
    assert state.ledger.adapter_version(result.version)["parent"] == result.parent
    [update] = [u for u in state.ledger.provenance(result.version)][:1]
    assert update["update"]["n_replay"] == 1
    assert {(d["id"], d["role"]) for d in update["documents"]} == {
        (france.document_ids[0], "replay"),
        (italy.document_ids[0], "new"),
    }


def test_loss_replay_picks_what_the_adapter_fits_worst(state, make_runtime, tiny_adapt):
    runtime = make_runtime(tiny_adapt())
    cfg = config(tiny_adapt)
    texts = [
        "The capital of France is Paris.",
        "The river is long and the sea is deep.",
        "Many people visit the museum every year.",
        "The king of France lived in a large palace.",
        "The bridge in Rome was built in 1990.",
    ]
    edits = []
    for text in texts:
        material = add(state, text, "Q?", "A", [text])
        edits.append(material.self_edit_ids[0])
    state.ledger.add_adapter_version(
        1, parent=None, base_fingerprint="fp", manifest_sha256="x", created_at=0.0
    )
    state.ledger.record_update(
        decision="accept", reason="", version=1, parent_version=None, n_sequences=5,
        new_self_edits=edits,
    )  # fmt: skip
    train_adapter(runtime, texts[:4] * 3, cfg.adapt)  # fit all but the last one
    loss_cfg = cfg.update.model_copy(update={"replay_policy": "loss"})
    [worst] = choose_replay(state.ledger, 1, loss_cfg, seed=0, runtime=runtime)
    assert worst.self_edit_id == edits[-1]
    uniform = cfg.update.model_copy(update={"replay_policy": "uniform"})
    seen = {choose_replay(state.ledger, 1, uniform, seed=s)[0].self_edit_id for s in range(30)}
    assert seen == set(edits)


def test_per_document_consolidation_kept_or_rolled_back(state, make_runtime, tiny_adapt):
    runtime = make_runtime(tiny_adapt())
    # Summed adapters interfere a lot in the tiny model (about 3 nats on France's answer for a
    # compatible document, 6.5 for a contradicting one): the tolerance sits between the two.
    cfg = config(
        tiny_adapt,
        strategy="per-document",
        consolidation="cat",
        max_passage_drop=4.5,
        max_mean_drop=10.0,
    )
    france = add(state, *DOCS["france"])
    first = run_update(state, runtime, cfg, france)
    assert first.decision == "accept", first.reason
    # (a second capital would interfere: summed adapters generalise "capital of X -> Rome")
    bridge = add(state, *DOCS["bridge"])
    second = run_update(state, runtime, cfg, bridge)
    assert second.decision == "accept", second.reason
    row = state.ledger.adapter_version(second.version)
    assert row["kind"] == "consolidated"
    parts = state.adapters.components(second.version)
    assert len(parts) == 2 and all(
        state.ledger.adapter_version(v)["kind"] == "document" for v in parts
    )
    assert state.adapters.components(first.version)[0] == parts[0]
    state.adapters.gc(keep_last=0)  # the current combination keeps its document adapters
    for version in [second.version, *parts]:
        state.adapters.verify(version)

    rome = add(state, *DOCS["overwrite"])
    third = run_update(state, runtime, cfg, rome)
    assert third.decision == "rollback" and "document 1 dropped" in third.reason
    assert state.adapters.current() == second.version
    assert len(state.ledger.adapter_versions()) == 3  # nothing of the refused candidate kept


def test_a_repair_round_restores_what_the_candidate_hurt(state, make_runtime, tiny_adapt):
    # The tiny model learns "the capital of Italy is Rome" as "the capital is Rome": France's
    # answer falls by ~14 nats per token. Replaying France with Italy wins most of it back.
    tolerance = {"max_passage_drop": 2.0, "max_mean_drop": 2.0}
    results = {}
    for rounds in (0, 2):
        with State.open(state.home.parent / f"home{rounds}") as home:
            runtime = make_runtime(tiny_adapt())
            cfg = config(tiny_adapt, repair_rounds=rounds, **tolerance)
            france = add(home, *DOCS["france"])
            assert run_update(home, runtime, cfg, france).decision == "accept"
            italy = add(home, *DOCS["italy"])
            results[rounds] = run_update(home, runtime, cfg, italy)
            replayed = home.ledger.history(limit=1)[0]["n_replay"]
    refused, repaired = results[0], results[2]
    assert refused.decision == "rollback" and refused.repairs == 0
    assert "repair" not in refused.reason
    assert repaired.decision == "accept", repaired.reason
    assert repaired.repairs >= 1 and "replayed documents" in repaired.reason
    assert repaired.old[0].change > refused.old[0].change  # France recovered
    assert repaired.new[0].change > 0 and replayed == 1  # France's self-edit, recorded


def test_anchors_are_trained_with_the_update_and_checked_by_the_gate(
    state, make_runtime, tiny_adapt
):
    runtime = make_runtime(tiny_adapt())
    loose = {"max_passage_drop": 100.0, "max_mean_drop": 100.0}
    cfg = config(tiny_adapt, anchors=3, check_anchors=True, **loose)
    france = add(state, *DOCS["france"])
    result = run_update(state, runtime, cfg, france)
    assert result.decision == "accept", result.reason
    assert result.log.n_sequences == len(france.sequences) + 3  # the self-edits and 3 anchors
    assert [c.document_id for c in result.old] == [ANCHOR_DOCUMENT]  # 3 others, scored
    [row] = state.ledger.history(limit=1)
    assert "the anchor questions" in row["reason"]
    [(after,)] = state.ledger.db.execute("SELECT retention_after FROM updates").fetchall()
    assert str(ANCHOR_DOCUMENT) in json.loads(after)["old"]


def test_with_answers_routed_the_anchors_are_trained_not_checked(state, make_runtime, tiny_adapt):
    runtime = make_runtime(tiny_adapt())
    cfg = config(tiny_adapt, anchors=3, max_passage_drop=100.0, max_mean_drop=100.0)
    france = add(state, *DOCS["france"])
    result = run_update(state, runtime, cfg, france)  # chat.adapter_min_similarity > 0
    assert result.log.n_sequences == len(france.sequences) + 3
    assert result.old == []  # nothing earlier, and the anchors not checked
    cfg.chat = cfg.chat.model_copy(update={"adapter_min_similarity": 0.0})
    result = run_update(state, runtime, cfg, add(state, *DOCS["italy"]))
    assert ANCHOR_DOCUMENT in [c.document_id for c in result.old]  # the adapter answers all


def test_an_update_that_changes_everyday_answers_is_repaired_then_refused(
    state, make_runtime, tiny_adapt
):
    """The anchors' answers are asked, not only scored: a candidate whose everyday answers say
    something else than the base model's is refused (after a repair round), whatever the
    log-probability tolerances allow."""
    runtime = make_runtime(tiny_adapt())
    loose = {"max_passage_drop": 100.0, "max_mean_drop": 100.0, "max_anchor_changes": 0}
    cfg = config(tiny_adapt, anchors=4, check_anchors=True, **loose)
    # twenty epochs of one answer at a high rate: the tiny model says "Paris" to everything
    cfg.adapt = tiny_adapt(epochs=20, learning_rate=2e-2)
    result = run_update(state, runtime, cfg, add(state, *DOCS["france"]))
    rounds = cfg.update.repair_rounds
    assert result.decision == "rollback" and result.repairs == rounds
    assert "everyday answers changed (tolerance 0), e.g." in result.reason
    assert f"after repair round {rounds}" in result.reason


def test_changed_anchors_asks_the_adapted_model(make_runtime, tiny_adapt):
    runtime = make_runtime(tiny_adapt())
    asking = EvalConfig(max_answer_tokens=6)
    questions = ["What color is grass?", "What do cows drink?"]
    anchors = list(zip(questions, base_answers(runtime, questions, asking), strict=True))
    assert changed_anchors(runtime, anchors, asking) == []  # B = 0: the base model answers
    paris = [qa(q, "Paris Paris Paris") for q in questions] * 2
    train_adapter(runtime, paris, tiny_adapt(epochs=20, learning_rate=2e-2))
    changed = changed_anchors(runtime, anchors, asking)
    assert [q for q, _, _ in changed] == questions
    assert all("Paris" in now for _, _, now in changed)


def test_a_drop_of_the_anchors_refuses_the_update():
    strict = SealConfig().update.model_copy(update={"max_passage_drop": 0.5})
    accept, reason = decide([Check(1, -3.0, -1.0)], [Check(ANCHOR_DOCUMENT, -1.0, -2.0)], strict)
    assert not accept and reason.startswith("the anchor questions dropped 1.000")
