import json
import math

import pytest

from agent.core.errors import SealError
from agent.core.runtime import ModelRuntime
from agent.core.squad import load_squad
from evals import cpt

HEADLINE = {"contained", "ci95", "short", "short_ci95", "gold_logprob"}


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: what must happen before, or without, any model."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(ModelRuntime, "load", refuse)


@pytest.fixture
def trainings(monkeypatch):
    """The sequences of every adapter cpt.py trains, in order."""
    calls: list[list] = []
    real = cpt.train_adapter

    def spy(runtime, sequences, adapt, **kwargs):
        calls.append(list(sequences))
        return real(runtime, sequences, adapt, **kwargs)

    monkeypatch.setattr(cpt, "train_adapter", spy)
    return calls


def test_cpt_end_to_end_and_resume(
    squad_file, teacher_file, tiny_cli_settings, tmp_path, capsys, trainings, monkeypatch
):
    out = tmp_path / "run"
    names = ["base", "passage", "implications", f"teacher:{teacher_file}"]
    argv = [
        *("--data", str(squad_file), "--passages", "2", "--out", str(out)),
        *("--conditions", ",".join(names), "--trained", "implications", "--start", "passage"),
        *("--set", "eval.bootstrap_samples=100"),
        *tiny_cli_settings,
    ]
    assert cpt.main(argv) == 0
    passages = load_squad(squad_file)

    # one adapter per trained condition, fit to the pooled sequences of both passages
    edits = read_lines(out / "self_edits.jsonl")
    assert {(e["condition"], e["index"]) for e in edits} == {
        (n, i) for n in names[1:] for i in range(2)
    }
    pooled = {n: [s for e in edits if e["condition"] == n for s in e["sequences"]] for n in names}
    assert trainings == [pooled[n] for n in names[1:]]
    assert trainings[0] == [f"{p.title}\n{p.context}" for p in passages]  # passage: both of them
    records = read_lines(out / "conditions.jsonl")
    assert [r["condition"] for r in records] == names
    assert "train" not in records[0]
    for r in records[1:]:
        n = len(pooled[r["condition"]])
        assert r["train"]["n_sequences"] == n >= 2
        assert r["train"]["steps"] == math.ceil(n / 4)  # one epoch of the default batch of 4
    teacher_items = [e["self_edit"]["items"] for e in edits if e["condition"] == names[3]]
    assert teacher_items[1] == [
        "The city of Rome has a famous old temple.",
        "Many people visit Rome every year.",
    ]

    # every question of every passage graded, under every condition
    for r in records:
        assert [p["index"] for p in r["passages"]] == [0, 1]
        for p, passage in zip(r["passages"], passages, strict=True):
            assert [g["gold"] for g in p["graded"]] == [q.answer for q in passage.questions]
            assert all({"prediction", "contained", "short", "f1"} <= set(g) for g in p["graded"])

    summary = json.loads((out / "cpt.json").read_text())
    assert set(summary) == {
        "data",
        "n_passages",
        "n_questions",
        "conditions",
        "passage",
        "teacher",
        "trained",
        "start",
    }
    assert (summary["data"], summary["n_passages"], summary["n_questions"]) == ("squad.json", 2, 3)
    assert list(summary["conditions"]) == names
    for entry in summary["conditions"].values():
        assert set(entry) == HEADLINE
        assert entry["ci95"][0] <= entry["contained"] <= entry["ci95"][1]
        assert entry["short_ci95"][0] <= entry["short"] <= entry["short_ci95"][1]
    assert (summary["passage"], summary["teacher"]) == ("passage", None)  # no teacher:gpt41 here
    assert (summary["trained"], summary["start"]) == ("implications", "passage")
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["passages"] == 2
    assert results["conditions"]["passage"]["n_sequences"] == 2
    assert all(f"| {n} |" in (out / "results.md").read_text() for n in names)

    # a rerun does no work: no model is loaded, nothing is written again
    saved = {f: (out / f).read_text() for f in ("conditions.jsonl", "self_edits.jsonl")}
    capsys.readouterr()
    monkeypatch.setattr(ModelRuntime, "load", lambda *a, **k: pytest.fail("model loaded"))
    assert cpt.main(argv) == 0
    assert "4 done, 0 to do" in capsys.readouterr().err
    assert {f: (out / f).read_text() for f in saved} == saved

    with pytest.raises(SealError, match="different settings.*passages"):
        cpt.main([*argv, "--passages", "1"])


def test_an_interrupted_condition_keeps_its_self_edits(
    squad_file, tiny_cli_settings, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    argv = [
        *("--data", str(squad_file), "--passages", "2", "--out", str(out)),
        *("--conditions", "implications", "--set", "eval.bootstrap_samples=100"),
        *tiny_cli_settings,
    ]
    assert cpt.main(argv) == 0
    [first] = read_lines(out / "conditions.jsonl")
    (out / "conditions.jsonl").write_text("")  # killed after writing the self-edits
    edits = (out / "self_edits.jsonl").read_text()

    def refuse(*_args, **_kwargs):
        raise AssertionError("a self-edit was written again")

    monkeypatch.setattr(cpt, "condition_self_edit", refuse)
    assert cpt.main(argv) == 0
    assert "0 done, 1 to do" in capsys.readouterr().err
    assert (out / "self_edits.jsonl").read_text() == edits
    [again] = read_lines(out / "conditions.jsonl")
    assert again["passages"] == first["passages"]  # the same adapter: the same answers
    assert again["train"]["losses"] == first["train"]["losses"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--passages", "0"], "--passages 0: learn at least 1 passage"),
        (["--passages", "3"], "--passages 3: .*squad.json has only 2 passages"),
        (["--conditions", "base,poems"], "unknown condition 'poems'"),
        (["--conditions", "base", "--trained", "passage"], "--trained 'passage' is not one of"),
        (["--conditions", "base", "--start", "x"], "--start 'x' is not one of"),
    ],
)
def test_bad_input_is_refused_before_any_model_loads(squad_file, tmp_path, no_model, args, message):
    out = tmp_path / "run"
    with pytest.raises(SealError, match=message):
        cpt.main(["--data", str(squad_file), "--out", str(out), "--passages", "2", *args])
    assert not out.exists()
