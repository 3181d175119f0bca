"""evals/writer_table.py: knowledge.py runs joined on their shared passages, paired differences."""

import json

import pytest

from agent.core.errors import SealError
from evals import knowledge, writer_table


def test_two_runs_are_joined_on_the_passages_both_measured(
    squad_file, teacher_file, tiny_cli_settings, tmp_path
):
    common = ["--data", str(squad_file), "--set", "eval.bootstrap_samples=100", *tiny_cli_settings]
    study, writer = tmp_path / "study", tmp_path / "writer"
    teacher = f"teacher:{teacher_file}"
    knowledge.main([*common, "--out", str(study), "--conditions", f"base,passage,{teacher}"])
    # the writer's run measured one passage only: the table keeps that one for every condition
    knowledge.main([*common, "--out", str(writer), "--limit", "1", "--conditions", "rewrite"])
    out = tmp_path / "table"
    argv = [str(study), str(writer), "--trained", "rewrite", "--start", "base"]
    assert (
        writer_table.main([*argv, "--teacher", teacher, "--samples", "50", "--out", str(out)]) == 0
    )
    result = json.loads((out / "rounds.json").read_text())
    assert result["n_passages"] == 1 and result["data"] == squad_file.name
    assert set(result["conditions"]) == {"base", "passage", teacher, "rewrite"}
    assert {"contained", "ci95", "short", "short_ci95", "gold_logprob"} <= set(
        result["conditions"]["rewrite"]
    )
    assert (result["passage"], result["teacher"], result["trained"], result["start"]) == (
        "passage",
        teacher,
        "rewrite",
        "base",
    )
    diffs = result["paired_differences"]
    assert set(diffs) == {"rewrite - passage", f"rewrite - {teacher}", "rewrite - base"}
    for by_key in diffs.values():
        for d in by_key.values():
            assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
    with pytest.raises(SealError, match="no condition"):
        writer_table.main([*argv, "--teacher", "teacher:gpt41", "--out", str(out)])


def test_a_paired_difference_resamples_the_same_passages():
    rows = [
        {"index": i, "condition": c, "graded": [{"contained": v, "short": v}]}
        for i in range(10)
        for c, v in (("a", 1.0), ("b", 0.0 if i < 5 else 1.0))
    ]
    d = writer_table.paired_difference(rows, "a", "b", "contained", samples=500, seed=0)
    assert d["difference"] == 0.5 and 0.1 < d["ci95"][0] <= 0.5 <= d["ci95"][1] < 0.9
