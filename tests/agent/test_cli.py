import json
import re

import pytest

from agent.cli import main
from agent.core.config import SealConfig


def assert_one_line_error(capsys, status: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    return err


@pytest.mark.parametrize("name", ["missing.txt", "missing.json"])
def test_missing_file(tmp_path, capsys, name):
    path = tmp_path / name
    status = main(["demo", "--file", str(path), "--question", "What?"])
    assert_one_line_error(capsys, status, str(path))


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01", b"text\x00with nul bytes"])
def test_binary_file(tmp_path, capsys, data):
    path = tmp_path / "image.txt"
    path.write_bytes(data)
    status = main(["demo", "--file", str(path), "--question", "What?"])
    assert_one_line_error(capsys, status, str(path), "binary")


def test_plain_text_without_questions(tmp_path, capsys):
    path = tmp_path / "paris.txt"
    path.write_text("The capital of France is Paris.", encoding="utf-8")
    status = main(["demo", "--file", str(path)])
    assert_one_line_error(capsys, status, str(path), "--question")


def test_json_index_out_of_range(squad_file, capsys):
    status = main(["demo", "--file", str(squad_file), "--index", "2"])
    assert_one_line_error(capsys, status, "--index 2", "2 passages")


def test_bad_set_flag(capsys):
    status = main(["demo", "--set", "adapt.epochs"])
    assert_one_line_error(capsys, status, "SECTION.FIELD=VALUE")


def test_demo_end_to_end(tiny_model_dir, tiny_cli_settings, squad_file, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["demo", "--file", str(squad_file), "--out", str(out), *tiny_cli_settings])
    printed = capsys.readouterr().out
    assert status == 0
    assert "Document: Paris" in printed
    assert printed.count("before: ") == 2 and printed.count("after:  ") == 2
    assert "gold: 1889" in printed and "gold contained anywhere in the answer" in printed
    assert re.search(r"^correct: \d/2 -> \d/2$", printed, re.MULTILINE)  # the last line
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 8
    saved = SealConfig.model_validate_json((out / "config.json").read_text())
    assert saved.model.name == str(tiny_model_dir) and saved.adapt.epochs == 1


def test_demo_on_plain_text_with_questions(tiny_cli_settings, tmp_path, capsys):
    path = tmp_path / "river_seine.txt"
    path.write_text("Paris is a city on the river Seine.\nThe river Seine flows into the sea.\n")
    out = tmp_path / "run"
    status = main(
        [
            "demo",
            "--file",
            str(path),
            "--question",
            "Which river flows through Paris?",
            "--out",
            str(out),
            *tiny_cli_settings,
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "Document: river seine" in printed and "gold:" not in printed
    assert "correct:" not in printed  # no gold answers, nothing to count
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_demo_learns_the_bundled_document_by_default(tiny_cli_settings, tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path / "run"), *tiny_cli_settings])
    printed = capsys.readouterr().out
    assert status == 0 and "Document: Velrath Dynamics" in printed
    assert printed.count("before: ") == 6
    assert printed.rstrip().splitlines()[-1].startswith("correct: ")
