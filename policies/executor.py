"""Where inner-loop evaluations run: one update of a fresh adapter plus graded closed-book answers.

ReST-EM's cost is K inner loops per passage (SEAL ran them on a second GPU). An `Executor` maps
a list of `InnerLoopTask`s to `InnerLoopResult`s in order:

- `LocalExecutor` (default) runs them one after another on the runtime already loaded, so the
  base model is loaded once and shared by every inner loop;
- `RayExecutor` spreads them over Ray actors (Ray, an existing distributed engine), each loading
  the model once; for users with several GPUs or machines. `ray` is imported only here.

Each task starts from the base model (fresh adapter, seeded), so its result depends only on the
task and the config: both executors return the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.core.answering import Question, answer_and_grade, mean_of
from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.core.inner_loop import train_adapter
from agent.core.runtime import ModelRuntime


@dataclass(frozen=True)
class InnerLoopTask:
    key: str  # names the task in logs, e.g. "r1/p3/c2"
    questions: tuple[Question, ...]
    sequences: tuple[str, ...] | None  # None: no update, the base model answers


@dataclass(frozen=True)
class InnerLoopResult:
    key: str
    contained: float  # graded: share of questions whose gold answer is in the answer
    f1: float
    logprob: float  # mean over questions of the gold answer's mean log-prob per token
    answers: tuple[str, ...]
    train_seconds: float
    final_loss: float | None

    def as_dict(self) -> dict:
        return {
            "contained": round(self.contained, 5),
            "f1": round(self.f1, 5),
            "logprob": round(self.logprob, 5),
            "answers": list(self.answers),
            "train_seconds": round(self.train_seconds, 3),
            "final_loss": None if self.final_loss is None else round(self.final_loss, 5),
        }


def run_inner_loop(runtime, cfg: SealConfig, task: InnerLoopTask) -> InnerLoopResult:
    """Train a fresh knowledge adapter on the task's sequences (none: the base model), then
    answer its questions closed-book and grade them."""
    runtime.reset_adapter(cfg.adapt.seed)
    seconds, loss = 0.0, None
    if task.sequences is not None:
        log = train_adapter(runtime, list(task.sequences), cfg.adapt)
        seconds, loss = log.seconds, log.losses[-1]
    graded = answer_and_grade(runtime, task.questions, cfg.eval)
    return InnerLoopResult(
        task.key,
        mean_of(graded, "contained"),
        mean_of(graded, "f1"),
        mean_of(graded, "gold_logprob"),
        tuple(g.prediction for g in graded),
        seconds,
        loss,
    )


def run_task(runtime, cfg: SealConfig, task) -> object:
    """Run one task: a task with its own `run(runtime, cfg)` (ARC's test-time training,
    policies/arc/ttt.py) runs itself; an `InnerLoopTask` runs `run_inner_loop`."""
    run = getattr(task, "run", None)
    return run(runtime, cfg) if run is not None else run_inner_loop(runtime, cfg, task)


class Executor(Protocol):
    def map(self, tasks: Sequence[InnerLoopTask]) -> list[InnerLoopResult]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Inner loops in this process, on the runtime already loaded (the model is shared)."""

    def __init__(self, runtime, cfg: SealConfig):
        self.runtime = runtime
        self.cfg = cfg

    def map(self, tasks: Sequence[InnerLoopTask]) -> list[InnerLoopResult]:
        return [run_task(self.runtime, self.cfg, t) for t in tasks]

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor: loads the model once, then runs the inner loops it is sent."""

    def __init__(self, cfg_json: str):
        self.cfg = SealConfig.model_validate_json(cfg_json)
        self.runtime = ModelRuntime.load(self.cfg.model, self.cfg.adapt)

    def run(self, task):
        return run_task(self.runtime, self.cfg, task)


class RayExecutor:
    """Inner loops on `workers` Ray actors. Without an address, a local Ray instance is started
    on 127.0.0.1 with one CPU per worker (and stopped by `close`)."""

    def __init__(self, cfg: SealConfig):
        try:
            import ray
        except ImportError:
            raise SealError(
                "policy.executor = 'ray' needs Ray: pip install 'ray>=2.40', or use "
                "policy.executor = 'local'"
            ) from None
        self.ray = ray
        policy = cfg.policy
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                if policy.ray_address:
                    ray.init(address=policy.ray_address, log_to_driver=False)
                else:
                    ray.init(
                        address="local",
                        num_cpus=policy.ray_workers,
                        include_dashboard=False,
                        log_to_driver=False,
                        _node_ip_address="127.0.0.1",
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SealError(
                    f"cannot start or join Ray (policy.ray_address = {policy.ray_address!r}): {exc}"
                ) from exc
        actor = ray.remote(num_cpus=1, num_gpus=policy.ray_gpus_per_worker)(_Worker)
        cfg_json = cfg.model_dump_json()
        self.workers = [actor.remote(cfg_json) for _ in range(policy.ray_workers)]

    def map(self, tasks: Sequence[InnerLoopTask]) -> list[InnerLoopResult]:
        # Round-robin: each actor runs its share in order; results come back in task order.
        refs = [self.workers[i % len(self.workers)].run.remote(t) for i, t in enumerate(tasks)]
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as exc:
            raise SealError(f"a Ray worker died while running inner loops: {exc}") from exc

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker)
        self.workers = []
        if self.started_here:
            self.ray.shutdown()


def make_executor(cfg: SealConfig, runtime) -> Executor:
    if cfg.policy.executor == "ray":
        return RayExecutor(cfg)
    return LocalExecutor(runtime, cfg)
