"""When to learn: batches of documents, a compute budget per rolling hour, a bounded queue.

Pure functions of the queue and the clock, so the policy is testable without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.core.config import IngestConfig

HOUR_S = 3600.0


def budget_left_s(used_s: float, cfg: IngestConfig) -> float:
    """Update seconds still allowed in the current rolling hour (`used_s` spent in it)."""
    return cfg.update_minutes_per_hour * 60.0 - used_s


def should_learn(
    queue: Sequence[dict[str, Any]], now: float, cfg: IngestConfig, *, draining: bool
) -> bool:
    """A full batch is waiting, or its oldest document waited `batch_wait_s`, or the run is
    draining (one pass, nothing left to fetch)."""
    if not queue:
        return False
    if len(queue) >= cfg.batch_size or draining:
        return True
    oldest = min(item["updated_at"] for item in queue)
    return now - oldest >= cfg.batch_wait_s


def next_batch(queue: Sequence[dict[str, Any]], cfg: IngestConfig) -> list[dict[str, Any]]:
    """The newest `batch_size` items (the queue comes newest first)."""
    return list(queue[: cfg.batch_size])


def overflow(queue: Sequence[dict[str, Any]], cfg: IngestConfig) -> list[dict[str, Any]]:
    """Items beyond `max_queue`: the oldest ones, dropped so that news stays fresh."""
    return list(queue[cfg.max_queue :])
