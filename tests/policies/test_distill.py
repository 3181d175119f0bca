"""Teacher self-edits read from SEAL's published shapes, and the passages a writer must not see."""

import json

import pytest

from agent.core.errors import SealError
from agent.core.squad import EVAL200, load_squad
from policies.distill import parse_seal_prompt, read_teacher_pairs
from policies.self_edit import get_format


def seal_prompt(fmt: str, title: str, context: str) -> str:
    return get_format(fmt).prompt(title, context)


def test_a_seal_prompt_gives_back_its_format_title_and_passage():
    for fmt in ("implications", "implications-long", "rewrite", "self-qa"):
        prompt = seal_prompt(fmt, "Paris", "The capital of France is Paris.\n\nIt is old.")
        assert parse_seal_prompt(prompt) == (
            fmt,
            "Paris",
            "The capital of France is Paris.\n\nIt is old.",
        )
    with pytest.raises(ValueError, match="not a self-edit prompt"):
        parse_seal_prompt("Summarize this passage: The capital of France is Paris.")


def test_both_published_shapes_are_read_pair_by_pair(tmp_path):
    prompt = seal_prompt("implications", "Paris", "The capital of France is Paris.")
    listed = tmp_path / "implications.json"
    completions = json.dumps(["1. Paris is a capital.", "", "1. France has a capital."])
    listed.write_text(
        json.dumps(
            [
                {
                    "title": "Paris",
                    "context": "The capital of France is Paris.",
                    "prompt": prompt,
                    "completions": completions,
                }
            ]
        )
    )
    lines = tmp_path / "kept.jsonl"
    rewrite = seal_prompt("rewrite", "Rome", "Rome is a city on the river Tiber.")
    lines.write_text(
        json.dumps({"prompt": rewrite, "completion": "Rome lies on the Tiber."}) + "\n"
    )
    pairs = read_teacher_pairs([listed, lines])
    assert [(p.format, p.title, p.completion, p.source) for p in pairs] == [
        ("implications", "Paris", "1. Paris is a capital.", "implications.json"),
        ("implications", "Paris", "1. France has a capital.", "implications.json"),
        ("rewrite", "Rome", "Rome lies on the Tiber.", "kept.jsonl"),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a file of teacher self-edits"),
        ('{"prompt": "x"}', "not a file of teacher self-edits"),
        (
            '[{"title": "T", "context": "C", "prompt": "Tell me a story", "completions": []}]',
            "not a self-edit prompt",
        ),
        ("[]", "no teacher self-edits in it"),
    ],
)
def test_a_bad_file_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "teacher.json"
    path.write_text(content)
    with pytest.raises(SealError, match=message) as err:
        read_teacher_pairs([path])
    assert str(path) in str(err.value)


def test_self_edits_of_evaluation_passages_are_refused(tmp_path):
    held_out = load_squad(EVAL200)[3]
    path = tmp_path / "leak.jsonl"
    prompt = seal_prompt("implications", held_out.title, held_out.context)
    path.write_text(json.dumps({"prompt": prompt, "completion": "1. Something."}) + "\n")
    with pytest.raises(SealError, match="eval200 passages"):
        read_teacher_pairs([path])
