"""Inner-loop executors: each task starts from the base model, and Ray returns the local numbers."""

import sys

import pytest

from agent.core.answering import Question
from agent.core.config import SealConfig, load_config
from agent.core.errors import SealError
from agent.core.runtime import ModelRuntime
from policies.executor import InnerLoopTask, LocalExecutor, RayExecutor, make_executor

QUESTIONS = (
    Question("What is the capital of France?", "Paris"),
    Question("When was the tower built?", "1889"),
)
# Trained on the closed-book prompt itself, so that the tiny model's update shows in the reward.
QA = "Let's answer a question directly and concisely.\nQuestion: {}\nAnswer:\n{}"
TASKS = [
    InnerLoopTask("base", QUESTIONS, None),
    InnerLoopTask("facts", QUESTIONS, tuple(QA.format(q.question, q.answer) for q in QUESTIONS)),
    InnerLoopTask("other", QUESTIONS, ("Rome\nThe capital of Italy is Rome.",)),
]


@pytest.fixture
def cfg(tiny_model_dir) -> SealConfig:
    return load_config(
        overrides={
            "model": {
                "name": str(tiny_model_dir),
                "device": "cpu",
                "dtype": "float32",
                "threads": 1,
            },
            "adapt": {"rank": 8, "alpha": 16, "epochs": 4, "learning_rate": 1e-2, "batch_size": 2},
            "eval": {"max_answer_tokens": 6},
            "policy": {"executor": "ray", "ray_workers": 2},
        },
        environ={},
    )


def local_results(cfg):
    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    return LocalExecutor(runtime, cfg).map(TASKS), runtime


def test_local_tasks_start_from_the_base_model(cfg):
    results, runtime = local_results(cfg)
    executor = LocalExecutor(runtime, cfg)
    reversed_ = executor.map(TASKS[::-1])[::-1]
    assert [r.key for r in results] == ["base", "facts", "other"]
    for a, b in zip(results, reversed_, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-6) and a.answers == b.answers
    assert results[1].logprob > results[0].logprob + 0.1  # the facts were learned
    assert results[0].train_seconds == 0 and results[1].final_loss is not None


def test_ray_executor_on_a_local_instance_returns_the_local_rewards(cfg):
    expected, _ = local_results(cfg)
    executor = make_executor(cfg, runtime=None)
    assert isinstance(executor, RayExecutor)
    try:
        got = executor.map(TASKS)
    finally:
        executor.close()
    assert [r.key for r in got] == [r.key for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.answers == b.answers
        assert a.contained == b.contained
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_missing_ray_is_one_clear_error(cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like
    with pytest.raises(SealError, match="needs Ray"):
        RayExecutor(cfg)
