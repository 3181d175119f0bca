"""Fixtures of the benchmark tests."""

import json

import pytest

from agent.core.squad import load_squad


@pytest.fixture
def teacher_file(tmp_path, squad_file):
    """A teacher self-edit file (SEAL's shape) for the two passages of `squad_file`."""
    entries = [
        {
            "title": p.title,
            "context": p.context,
            "completions": [
                f"1. The city of {p.title} has a famous old temple.\n"
                f"2. Many people visit {p.title} every year."
            ],
        }
        for p in load_squad(squad_file)
    ]
    path = tmp_path / "teacher.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path
