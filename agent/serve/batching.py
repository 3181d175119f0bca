"""The model thread of `seal serve`: one thread runs everything that touches the serving model or
a user's writer state, in order; questions waiting for the same adapter are answered together.

A CPU (or a GPU) decodes a batch of rows for little more than one row costs, so the questions
that queue up for the same user's adapter while another request runs are taken together: their
prompts are decoded as one left-padded batch (the runtime's step-by-step decoder, the one
`ModelRuntime.stream` uses), and each row's text streams to its own request as it is decoded.
Different users' adapters are never mixed in one batch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    future: concurrent.futures.Future
    fn: Callable | None = None  # a plain call
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    key: Hashable | None = None  # a batchable request: requests of one key run together
    request: Any = None


class ModelThread:
    """A single worker thread with a queue; `submit` runs a call, `submit_batched` a request
    that `run_batch(requests)` handles together with the others of its key queued by then."""

    def __init__(self, run_batch: Callable[[list], list], max_batch: int):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.queue: collections.deque[Task | None] = collections.deque()
        self.ready = threading.Condition()
        self.batches: collections.Counter = collections.Counter()  # size -> count, for status
        self._thread = threading.Thread(target=self._loop, name="seal-model", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args, **kwargs) -> concurrent.futures.Future:
        return self._put(Task(concurrent.futures.Future(), fn, args, kwargs))

    def submit_batched(self, key: Hashable, request: Any) -> concurrent.futures.Future:
        return self._put(Task(concurrent.futures.Future(), key=key, request=request))

    def _put(self, task: Task) -> concurrent.futures.Future:
        with self.ready:
            self.queue.append(task)
            self.ready.notify()
        return task.future

    def stop(self) -> None:
        with self.ready:
            self.queue.append(None)
            self.ready.notify()

    def _next(self) -> list[Task] | None:
        """The next task, with the queued tasks of its key when it is a batchable one."""
        with self.ready:
            while not self.queue:
                self.ready.wait()
            first = self.queue.popleft()
            if first is None or first.key is None:
                return None if first is None else [first]
            tasks = [first]
            for task in list(self.queue):
                if len(tasks) >= self.max_batch:
                    break
                if task is not None and task.key == first.key:
                    self.queue.remove(task)
                    tasks.append(task)
            return tasks

    def _loop(self) -> None:
        while (tasks := self._next()) is not None:
            tasks = [t for t in tasks if t.future.set_running_or_notify_cancel()]
            if not tasks:
                continue
            if tasks[0].key is None:
                self._run_call(tasks[0])
                continue
            self.batches[len(tasks)] += 1
            try:
                results = self.run_batch([t.request for t in tasks])
            except BaseException as exc:  # every request of the batch gets the error
                for task in tasks:
                    task.future.set_exception(exc)
                continue
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, BaseException):
                    task.future.set_exception(result)
                else:
                    task.future.set_result(result)

    @staticmethod
    def _run_call(task: Task) -> None:
        try:
            task.future.set_result(task.fn(*task.args, **task.kwargs))
        except BaseException as exc:
            task.future.set_exception(exc)
