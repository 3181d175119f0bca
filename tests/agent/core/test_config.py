import json

import pytest

from agent.core.config import SealConfig, load_config, parse_overrides
from agent.core.errors import SealError


def write_toml(tmp_path, text: str):
    path = tmp_path / "seal.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_validate():
    cfg = load_config(environ={})
    assert cfg == SealConfig()
    assert cfg.model.name == "default" and cfg.self_edit.format == "qa-spans"
    assert cfg.adapt.rank == 32 and cfg.adapt.alpha == 64.0


def test_toml_then_environment_then_overrides(tmp_path):
    path = write_toml(
        tmp_path,
        '[adapt]\nepochs = 3\nlearning_rate = 0.1\nrank = 4\n[model]\nname = "from-toml"\n',
    )
    environ = {
        "SEAL_ADAPT__EPOCHS": "7",
        "SEAL_ADAPT__RANK": "16",
        "SEAL_ADAPT__TARGET_MODULES": '["q_proj", "v_proj"]',
        "SEAL_MODEL__NAME": "from-env",
        "HOME": "/nowhere",  # not ours: ignored
        "SEAL_NODOUBLEUNDERSCORE": "1",  # ignored too
    }
    cfg = load_config(path, {"adapt": {"epochs": 9}}, environ=environ)
    assert cfg.adapt.epochs == 9  # override beats environment and file
    assert cfg.adapt.rank == 16  # environment beats file
    assert cfg.adapt.learning_rate == 0.1  # file beats default
    assert cfg.adapt.target_modules == ["q_proj", "v_proj"]  # JSON values are parsed
    assert cfg.model.name == "from-env"  # a plain string stays a string
    assert cfg.adapt.batch_size == 4  # untouched default


def test_environment_is_read_when_not_given(monkeypatch):
    monkeypatch.setenv("SEAL_SELF_EDIT__NUM_CANDIDATES", "5")
    assert load_config().self_edit.num_candidates == 5


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"adapt": {"rank": 0}}, "adapt.rank"),
        ({"adapt": {"learning_rate": "fast"}}, "adapt.learning_rate"),
        ({"model": {"device": "tpu"}}, "model.device"),
        ({"adapt": {"nope": 1}}, "adapt.nope"),
        ({"nosection": {"x": 1}}, "nosection"),
        ({"self_edit": {"format": "poems"}}, "self_edit.format"),
    ],
)
def test_invalid_values_name_the_field(overrides, named):
    with pytest.raises(SealError, match="invalid configuration") as info:
        load_config(overrides=overrides, environ={})
    assert named in str(info.value)


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(SealError, match="self_edit.format.*'implications'.*'self-qa'"):
        load_config(overrides={"self_edit": {"format": "poems"}}, environ={})


def test_invalid_environment_value_names_field_and_source():
    with pytest.raises(SealError, match=r"SEAL_\* environment.*adapt\.epochs"):
        load_config(environ={"SEAL_ADAPT__EPOCHS": "0"})


def test_invalid_value_in_file_names_the_file(tmp_path):
    path = write_toml(tmp_path, "[adapt]\nrank = -1\n")
    with pytest.raises(SealError, match=str(path)) as info:
        load_config(path, environ={})
    assert "adapt.rank" in str(info.value)


def test_bad_toml_names_the_file(tmp_path):
    path = write_toml(tmp_path, "[adapt\nrank = ")
    with pytest.raises(SealError, match=f"{path} is not valid TOML"):
        load_config(path, environ={})


def test_binary_config_file_is_not_valid_toml(tmp_path):
    path = tmp_path / "seal.toml"
    path.write_bytes(b"\xff\xfe\x00rank")
    with pytest.raises(SealError, match="not valid TOML"):
        load_config(path, environ={})


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(SealError, match=f"{path} does not exist"):
        load_config(path, environ={})


def test_parse_overrides():
    assert parse_overrides(
        [
            "adapt.epochs=10",
            "adapt.learning_rate=3e-4",
            "model.name=Qwen/Qwen2.5-7B",
            'adapt.target_modules=["q_proj"]',
            "eval.judge_url=http://host/v1?a=b",
            "self_edit.use_chat_template=false",
        ]
    ) == {
        "adapt": {"epochs": 10, "learning_rate": 3e-4, "target_modules": ["q_proj"]},
        "model": {"name": "Qwen/Qwen2.5-7B"},
        "eval": {"judge_url": "http://host/v1?a=b"},
        "self_edit": {"use_chat_template": False},
    }
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("item", ["adapt.epochs", "epochs=10", "adapt.=10", "=3"])
def test_parse_overrides_rejects_malformed_assignment(item):
    with pytest.raises(SealError, match="expected SECTION.FIELD=VALUE") as info:
        parse_overrides([item])
    assert repr(item) in str(info.value)


def test_save_reloads_to_an_equal_config(tmp_path):
    cfg = load_config(
        overrides={
            "model": {"name": "some/model", "cache_dir": str(tmp_path / "cache")},
            "adapt": {"rank": 4, "target_modules": ["q_proj"]},
            "self_edit": {"format": "self-qa"},
            "eval": {"judge": "openai"},
        },
        environ={},
    )
    path = tmp_path / "out" / "config.json"
    cfg.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["adapt"]["rank"] == 4 and data["model"]["cache_dir"] == str(tmp_path / "cache")
    assert SealConfig.model_validate(data) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary file left


def test_numeric_looking_string_value():
    overrides = parse_overrides(["model.name=2024"])
    assert load_config(overrides=overrides, environ={}).model.name == "2024"
