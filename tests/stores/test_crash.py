"""Kill -9 a real writer process at random moments (real SQLite, real files), then restart."""

import importlib.util
from pathlib import Path

import pytest

from agent.core.errors import SealError
from stores.state import State


def load_crash_trials():
    path = Path(__file__).resolve().parents[2] / "evals" / "crash_trials.py"
    spec = importlib.util.spec_from_file_location("crash_trials", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifty_kills_lose_and_corrupt_nothing(tmp_path):
    result = load_crash_trials().run_trials(tmp_path / "home", trials=50, seed=1, max_delay=1.0)
    assert result["failures"] == []
    assert result["stats"]["trials"] == 50
    assert result["committed_versions"] > 0  # the writer got far enough to be interrupted


def test_check_finds_a_lost_commit_and_a_corrupt_version(tmp_path):
    crash = load_crash_trials()
    home = tmp_path / "home"
    with State.open(home) as state:
        version = state.adapters.commit(
            crash._write_weights, parent=None, base_fingerprint="fp", config={}
        )
        state.adapters.set_current(version)
        assert crash.check(state, docs=set(), versions={version}) == []
        assert crash.check(state, docs={7}, versions={version, version + 1}) == [
            f"current {version} is older than reported commit {version + 1}",
            f"committed version {version + 1} lost",
            "committed document 7 lost",
        ]
        weights = state.adapters.path(version) / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
        [problem] = crash.check(state, docs=set(), versions={version})
        assert "fails verification" in problem
    with State.open(home) as state, pytest.raises(SealError, match="fails its checksum"):
        state.adapters.verify(state.adapters.current())  # still damaged: never silently reset


def test_damaged_ledgers_between_kills_are_refused_then_rebuilt(tmp_path):
    """The crash trials' damaged-ledger class: emptied, deleted, page overwritten, in turn."""
    crash = load_crash_trials()
    result = crash.run_trials(tmp_path / "home", trials=9, seed=2, max_delay=0.6, damage_every=3)
    assert result["failures"] == []
    assert result["stats"]["damaged ledgers"] == 3
