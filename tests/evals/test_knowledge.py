import json

import pytest

from agent.core.errors import SealError
from evals import knowledge
from evals.knowledge import markdown_table, parse_conditions, summarize
from evals.teachers import TEACHERS


def graded(*contained: float) -> list[dict]:
    return [
        {"contained": c, "short": c, "recited": False, "em": c, "f1": c, "gold_logprob": -1.0 - c}
        for c in contained
    ]


RECORDS = [
    {"index": 0, "condition": "base", "graded": graded(1, 0)},
    {"index": 1, "condition": "base", "graded": graded(1)},
    {"index": 2, "condition": "base", "graded": graded(0, 0, 1, 1)},
    {
        "index": 0,
        "condition": "passage",
        "graded": graded(1, 1),
        "train": {"seconds": 2.0},
        "self_edit": {"fallback": True},
    },
    {
        "index": 1,
        "condition": "passage",
        "graded": graded(0),
        "train": {"seconds": 4.0},
        "self_edit": {"fallback": False},
    },
]


def test_summarize_micro_averages_over_questions():
    table = summarize(RECORDS, ["base", "passage", "absent"], samples=500, seed=0)
    assert list(table) == ["base", "passage"]  # a condition without records is left out
    base = table["base"]
    # micro: 4 of 7 questions, not the mean of the per-passage rates (1/2, 1, 1/2)
    assert base["contained"] == pytest.approx(4 / 7, abs=1e-4)
    assert base["em"] == base["f1"] == base["short"] == base["contained"]
    assert base["gold_logprob"] == pytest.approx(-1 - 4 / 7, abs=1e-4)
    assert (base["n_passages"], base["n_questions"]) == (3, 7)
    for entry in table.values():
        for metric, (lo, hi) in entry["ci95"].items():
            assert lo <= entry[metric] <= hi
    assert table["passage"]["contained"] == pytest.approx(2 / 3, abs=1e-4)
    assert table["passage"]["train_seconds_median"] == 3.0
    assert table["passage"]["fallback_passages"] == 1
    assert "train_seconds_median" not in base and "fallback_passages" not in base


def test_records_from_before_the_short_answer_score_are_scored_on_reading():
    old = {"gold": "Paris", "contained": 1, "em": 0, "f1": 0.2, "gold_logprob": -1.0}
    records = [
        {"index": 0, "condition": "c", "graded": [old | {"prediction": "Paris, in France."}]},
        {"index": 1, "condition": "c", "graded": [old | {"prediction": "It is big. In Paris."}]},
    ]
    entry = summarize(records, ["c"], samples=100, seed=0)["c"]
    assert entry["contained"] == 1.0 and entry["short"] == 0.5 and entry["recited"] == 0.5


def test_summarize_is_reproducible_for_a_seed():
    assert summarize(RECORDS, ["base"], 200, seed=3) == summarize(RECORDS, ["base"], 200, seed=3)


def test_markdown_table():
    table = summarize(RECORDS, ["base", "passage"], samples=200, seed=0)
    md = markdown_table(table, "a note")
    lines = md.splitlines()
    assert lines[0].startswith(
        "| condition | contained (95% CI) | short answer (95% CI) | EM (95% CI) | F1 (95% CI)"
    )
    assert lines[2].startswith("| base | 57.1 [") and lines[2].endswith("| 3 | 7 |")
    assert lines[3].startswith("| passage | 66.7 [")
    assert md.endswith("\n\na note\n")


def test_parse_conditions(tmp_path):
    teacher = tmp_path / "mine.json"
    teacher.write_text("[]")
    conds = parse_conditions(f" base, passage,self-qa ,teacher:gpt41,teacher:{teacher}")
    assert [(c.name, c.kind) for c in conds] == [
        ("base", "base"),
        ("passage", "format"),
        ("self-qa", "format"),
        ("teacher:gpt41", "teacher"),
        (f"teacher:{teacher}", "teacher"),
    ]
    assert conds[3].teacher_file == TEACHERS["gpt41"] and conds[4].teacher_file == teacher


def test_parse_conditions_unknown_name():
    with pytest.raises(SealError, match="unknown condition 'poems'.*implications"):
        parse_conditions("base,poems")


def test_parse_conditions_missing_teacher_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(SealError, match=f"teacher file {path} does not exist"):
        parse_conditions(f"teacher:{path}")


def test_parse_conditions_empty():
    with pytest.raises(SealError, match="empty"):
        parse_conditions(" , ")


def test_knowledge_end_to_end_and_resume(
    squad_file, teacher_file, tiny_cli_settings, tmp_path, capsys
):
    out = tmp_path / "run"
    names = ["base", "passage", "implications", f"teacher:{teacher_file}"]
    argv = [
        "--data",
        str(squad_file),
        "--conditions",
        ",".join(names),
        "--out",
        str(out),
        "--set",
        "eval.bootstrap_samples=100",
        *tiny_cli_settings,
    ]
    assert knowledge.main(argv) == 0
    lines = (out / "passages.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(names)
    records = [json.loads(line) for line in lines]
    assert {(r["index"], r["condition"]) for r in records} == {
        (i, n) for i in range(2) for n in names
    }
    teacher_record = next(r for r in records if r["condition"] == names[3] and r["index"] == 1)
    assert teacher_record["self_edit"]["items"] == [
        "The city of Rome has a famous old temple.",
        "Many people visit Rome every year.",
    ]
    assert all("train" not in r for r in records if r["condition"] == "base")

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"conditions", "config"}
    assert list(results["conditions"]) == names
    for entry in results["conditions"].values():
        assert {"contained", "em", "f1", "ci95", "n_passages", "n_questions"} <= set(entry)
        assert (entry["n_passages"], entry["n_questions"]) == (2, 3)
    assert results["config"]["adapt"]["epochs"] == 1
    md = (out / "results.md").read_text()
    assert all(f"| {n} |" in md for n in names)
    assert json.loads((out / "config.json").read_text()) == results["config"]

    capsys.readouterr()
    assert knowledge.main(argv) == 0  # everything is done: nothing is trained again
    assert "8 done, 0 to do" in capsys.readouterr().err
    assert (out / "passages.jsonl").read_text().splitlines() == lines

    with pytest.raises(SealError, match="different settings.*adapt") as info:
        knowledge.main([*argv, "--set", "adapt.learning_rate=0.5"])
    assert str(out) in str(info.value)
    assert (out / "passages.jsonl").read_text().splitlines() == lines


def test_knowledge_resumes_a_partial_run(squad_file, tiny_cli_settings, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--data",
        str(squad_file),
        "--conditions",
        "base",
        "--out",
        str(out),
        "--set",
        "eval.bootstrap_samples=100",
        *tiny_cli_settings,
    ]
    assert knowledge.main([*argv, "--limit", "1"]) == 0
    assert len((out / "passages.jsonl").read_text().splitlines()) == 1
    assert knowledge.main(argv) == 0  # --limit may change between runs of one --out
    assert "1 done, 1 to do" in capsys.readouterr().err
    lines = (out / "passages.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1]


def test_a_run_split_between_two_folders_merges(squad_file, tiny_cli_settings, tmp_path, capsys):
    argv = [
        "--data",
        str(squad_file),
        "--conditions",
        "base",
        "--set",
        "eval.bootstrap_samples=100",
    ]
    first, second = tmp_path / "first", tmp_path / "second"
    assert knowledge.main([*argv, "--limit", "1", "--out", str(first), *tiny_cli_settings]) == 0
    assert knowledge.main([*argv, "--start", "1", "--out", str(second), *tiny_cli_settings]) == 0
    assert [json.loads(line)["index"] for line in (second / "passages.jsonl").open()] == [1]
    with (first / "passages.jsonl").open("a") as fh:  # twice: a pair both runs ran counts once
        fh.write((second / "passages.jsonl").read_text() * 2)
    capsys.readouterr()
    assert knowledge.main([*argv, "--out", str(first), *tiny_cli_settings]) == 0
    assert "2 done, 0 to do" in capsys.readouterr().err
    results = json.loads((first / "results.json").read_text())
    assert results["conditions"]["base"]["n_passages"] == 2
    assert results["conditions"]["base"]["n_questions"] == 3
