"""evals/facts.py end to end with the tiny model: facts stated through the chat graph are
learned by the gated update and asked in other words; controls are chosen and re-asked."""

import json

import pytest

from agent.core.config import SealConfig
from agent.core.errors import SealError
from evals.facts import CONTROL_CANDIDATES, Fact, main, report, run
from policies.anchors import ANCHOR_QUESTIONS
from stores.state import State

FACTS = (
    Fact(
        "The capital of Italy is Rome.",
        "Rome",
        ("What is the capital of Italy?", "Which city is the capital of Italy?"),
    ),
    Fact(
        "The bridge in Rome was built in 1990.",
        "1990",
        ("When was the bridge built?", "When was the bridge in Rome built?"),
    ),
)


def test_facts_are_stated_learned_and_asked_in_other_words(make_runtime, tiny_adapt, tmp_path):
    cfg = SealConfig()
    cfg.adapt = tiny_adapt(epochs=10, learning_rate=1e-2)
    cfg.self_edit = cfg.self_edit.model_copy(update={"format": "qa-spans"})
    runtime = make_runtime(cfg.adapt)
    with State.open(tmp_path / "home") as state:
        result = run(runtime, state, cfg, facts=FACTS, controls=2)
        history = state.ledger.history(10)
    assert result["total"] == 4 and 0 <= result["learned"] <= 4
    assert result["controls_total"] <= 2 and result["controls_kept"] <= result["controls_total"]
    assert [t["statement"] for t in result["turns"]] == [f.statement for f in FACTS]
    # every statement went through the gate, and each one it chose through the gated update
    chosen = [t for t in result["turns"] if t["gate"] == "learn"]
    assert len([h for h in history if h["kind"] == "update"]) == len(chosen) >= 1
    assert all(t["decision"] in ("accept", "rollback") for t in chosen)
    assert "facts learned (short answers)" in report(result)
    # every answer names the weights that gave it; the unrouted counts are on the same scale
    assert all(isinstance(a["knowledge_adapter"], bool) for a in result["answers"])
    assert 0 <= result["unrouted"]["learned"] <= 4
    assert result["unrouted"]["controls_kept"] <= result["controls_total"]


def test_controls_are_never_anchor_questions():
    # the anchors are trained with every update: a control among them would be taught, not kept
    controls = {q.lower() for q, _ in CONTROL_CANDIDATES}
    assert not controls & {q.lower() for q in ANCHOR_QUESTIONS}
    answers = {a.lower() for _, a in CONTROL_CANDIDATES}
    assert not any(a in q.lower().split() for q in ANCHOR_QUESTIONS for a in answers)


def test_seeds_are_run_on_fresh_states_pooled_and_resumed(tiny_cli_settings, tmp_path, capsys):
    out = tmp_path / "facts"
    argv = ["--out", str(out), "--seeds", "2", *tiny_cli_settings, "--set", "adapt.epochs=1"]
    assert main(argv) == 0
    result = json.loads((out / "facts.json").read_text())
    runs = result["runs"]
    assert [r["seed"] for r in runs] == [0, 1] == [r["seed"] for r in result["per_seed"]]
    assert result["total"] == 2 * runs[0]["total"] == 40
    assert result["learned"] == sum(r["learned"] for r in runs)
    assert result["controls_kept"] == sum(r["controls_kept"] for r in runs)
    (out / "facts.json").unlink()
    capsys.readouterr()
    assert main(argv) == 0  # both seeds are kept: nothing runs again
    assert "seed 0:" not in capsys.readouterr().out
    assert json.loads((out / "facts.json").read_text())["runs"] == runs
    with pytest.raises(SealError, match="seed0.json was run with other settings"):
        main([*argv, "--set", "adapt.learning_rate=0.5"])
