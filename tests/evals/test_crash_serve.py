"""The crash harness of `seal serve` (evals/crash_serve.py), reduced: one kill -9 during an
update, the restart, the drain; nothing acknowledged is lost or learned twice."""

from evals.crash_serve import run_trials


def test_a_killed_server_loses_nothing_and_learns_nothing_twice(tmp_path, tiny_model_dir):
    result = run_trials(tmp_path, trials=1, max_delay=1.0, model_dir=tiny_model_dir)
    assert result["failures"] == []
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["documents_fed"] == 2
    assert set(result["final_states"]) <= {"learned", "refused"}
