"""Run settings of the agent graph: the model runtime, the state folder's stores and the config.
They reach nodes as `runtime.context`, never through module globals."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.core.config import SealConfig
    from agent.core.runtime import ModelRuntime
    from stores.state import State


def _quiet(_: str) -> None:
    pass


@dataclass
class AgentContext:
    runtime: ModelRuntime  # answers, scores the gate's probes, writes self-edits, trains
    state: State  # ledger, passage store, adapter store; opened read-only: no learning
    cfg: SealConfig
    progress: Callable[[str], None] = field(default=_quiet)  # lines from the long nodes
    # Answer text as it is generated. A callback rather than LangGraph's "custom" stream mode
    # alone: that mode runs nodes in a pool thread, and the ledger's SQLite connection belongs
    # to the thread that opened it (the answer node writes to both).
    emit: Callable[[str], None] = field(default=_quiet)
    clock: Callable[[], float] = field(default=time.time)  # the gate's budget window
