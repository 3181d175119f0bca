"""`python evals/arc.py` and `seal train-policy --task arc` end to end on the tiny model: the
writer's ReST-EM (a kept config finetunes it), the four conditions, results, report, pictures,
resume."""

import json
import random

import pytest

from agent.cli import main as seal
from agent.core.errors import SealError
from agent.core.io import read_jsonl
from evals import arc
from policies.arc import rest_em
from stores.policies import PolicyStore

GOOD = json.dumps(
    {
        "data_generation": {
            "use_basic_augmentations": True,
            "use_size_augmentations": False,
            "use_chain_augmentations": False,
            "use_repeat_augmentations": False,
        },
        "training": {
            "strategy": "train_using_output_tokens",
            "learning_rate": 0.01,
            "num_train_epochs": 1,
        },
    }
)


def flip_task(rng: random.Random, demos: int) -> tuple[dict, list]:
    def grid():
        return [[rng.choice((0, 1, 2)) for _ in range(3)] for _ in range(3)]

    pairs = [grid() for _ in range(demos + 1)]
    flip = lambda g: [row[::-1] for row in g]  # noqa: E731
    task = {"train": [{"input": g, "output": flip(g)} for g in pairs[:-1]],
            "test": [{"input": pairs[-1]}]}  # fmt: skip
    return task, [flip(pairs[-1])]


@pytest.fixture
def arc_files(tmp_path):
    rng = random.Random(0)
    paths = {}
    for split in ("training", "evaluation"):
        tasks, solutions = {}, {}
        for i in range(2):
            tasks[f"{split[:4]}{i}"], solutions[f"{split[:4]}{i}"] = flip_task(rng, 3)
        challenges = tmp_path / f"arc-agi_{split}_challenges.json"
        challenges.write_text(json.dumps(tasks))
        (tmp_path / f"arc-agi_{split}_solutions.json").write_text(json.dumps(solutions))
        paths[split] = challenges
    return paths


ARC_SETTINGS = [
    "eval_tasks=2",
    "self_edits_per_task=2",
    "max_examples=4",
    "step_budget=8",
    "views=2",
    "reward_views=1",
    "max_answer_tokens=16",
    "writer_max_new_tokens=16",
]
POLICY_SETTINGS = [
    "policy.candidates=2",
    "policy.rounds=1",
    "policy.keep_only_beating_baseline=false",
    "policy.epochs=1",
]


def flags(tiny_cli_settings) -> list[str]:
    out = list(tiny_cli_settings)
    for s in ARC_SETTINGS:
        out += ["--arc-set", s]
    for s in POLICY_SETTINGS:
        out += ["--set", s]
    return out


def test_the_four_conditions_with_a_trained_writer_and_resume(
    arc_files, tiny_cli_settings, tmp_path, monkeypatch
):
    # The tiny random model writes no valid config; a writer that writes one is kept by ReST-EM.
    monkeypatch.setattr(rest_em, "write_configs", lambda rt, d, s, k, p, seed: [GOOD, "{"][:k])
    out = tmp_path / "run"
    argv = [
        "--out", str(out), "--eval-data", str(arc_files["evaluation"]),
        "--train-data", str(arc_files["training"]), *flags(tiny_cli_settings),
    ]  # fmt: skip
    assert arc.main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == 2 and results["self_edits_per_task"] == 2
    assert set(results["conditions"]) == {"icl", "ttt-oracle", "ttt-self-edit", "seal"}
    for entry in results["conditions"].values():
        assert {"solved", "partial", "gold_logprob"} <= set(entry)
        assert entry["ci95"]["partial"][0] <= entry["partial"] <= entry["ci95"]["partial"][1]
    assert results["conditions"]["icl"]["pairs"] == 2
    assert results["conditions"]["seal"]["pairs"] == 4
    assert results["conditions"]["ttt-oracle"]["trained"] == 2
    assert set(results["per_task"]) == {"eval0", "eval1"}
    assert "ttt-oracle - icl" in results["comparisons"]
    assert (out / "solved.png").stat().st_size > 1000 and (out / "failed.png").exists()
    report = (out / "report.md").read_text()
    assert "| ttt-oracle |" in report and "ttt-oracle above icl" in report

    # ReST-EM kept the valid config of each training task and finetuned the writer on them
    store = PolicyStore(out / "policy")
    assert store.versions() == [1] and store.current() == 1
    stats = store.verify(1)["stats"]
    assert stats["kept"] == 2 and stats["valid"] == 2 and stats["train"]["steps"] > 0
    log = [r for r in read_jsonl(out / "policy" / "log.jsonl") if r["kind"] == "arc-task"]
    assert [c["result"]["refused"] is None for c in log[0]["candidates"]] == [True, False]
    assert "bad JSON" in log[0]["candidates"][1]["result"]["refused"]

    # a rerun resumes: nothing is computed again, the same numbers come out
    lines = (out / "records.jsonl").read_text().count("\n")
    assert arc.main(argv) == 0
    assert (out / "records.jsonl").read_text().count("\n") == lines == 2 + 2 + 4 + 4
    assert json.loads((out / "results.json").read_text())["conditions"] == results["conditions"]


def test_train_policy_task_arc_writes_a_writer_version(arc_files, tiny_cli_settings, tmp_path):
    out = tmp_path / "writer"
    argv = ["train-policy", str(arc_files["training"]), "--task", "arc", "--out", str(out)]
    assert seal([*argv, *flags(tiny_cli_settings)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"][0]["candidates"] == 4 and summary["versions"] == [1]
    # a second run with other settings is refused, naming them
    assert seal([*argv, *flags(tiny_cli_settings), "--arc-set", "step_budget=9"]) == 2


def test_bad_settings_are_one_clear_error(arc_files, tiny_cli_settings, tmp_path, capsys):
    argv = ["train-policy", str(arc_files["training"]), "--task", "arc", "--out", str(tmp_path)]
    assert seal([*argv, *tiny_cli_settings, "--arc-set", "step_budget=-1"]) == 2
    assert "step_budget" in capsys.readouterr().err
    assert seal([*argv, *tiny_cli_settings, "--arc-set", "no_such_field=1"]) == 2
    with pytest.raises(SealError, match="unknown condition"):
        arc.main(["--conditions", "icl,magic", "--out", str(tmp_path / "eval")])
