"""Server-side micro-batching: concurrent requests share one onnxruntime call.

Each request hands its payload (its images, or its table rows) to :meth:`Batcher.submit` and awaits its
own result. One consumer task takes whatever is queued, waits at most ``max_wait_ms`` for more while the
batch holds fewer than ``max_batch_size`` inputs, then runs the batch in a worker thread, so the event loop
keeps accepting and decoding requests while the model runs. ``max_batch_size=1`` turns batching off.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

Payload = TypeVar("Payload")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Payload]):
    payload: Payload
    count: int
    future: asyncio.Future


@dataclass
class BatchStats:
    """What /health reports: how many model calls served how many inputs (their ratio is the mean batch)."""

    batches: int = 0
    inputs: int = 0
    requests: int = 0
    model_seconds: float = 0.0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.inputs / self.batches if self.batches else 0.0
        return {"batches": self.batches, "inputs": self.inputs, "requests": self.requests,
                "mean_batch_size": round(mean, 2), "largest_batch": self.largest_batch,
                "model_seconds": round(self.model_seconds, 3)}


class Batcher(Generic[Payload, Result]):
    """Collects payloads for up to ``max_wait_ms`` or ``max_batch_size`` inputs; ``run`` scores them.

    ``run(payloads)`` is called in a single worker thread (model calls never overlap, each gets every core)
    and must return one result per payload, in order.
    """

    def __init__(self, run: Callable[[list[Payload]], list[Result]], max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, on_scored: Callable[[int, float], None] | None = None,
                 nice: int = 0) -> None:
        """``nice``: the worker thread's scheduling niceness (Linux; 19: runs only on cores nothing else wants),
        for work that must never slow the answers, such as shadow scoring."""
        self.run = run
        self.on_scored = on_scored  # (inputs, seconds) of each model call that succeeded: the metrics hook
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime",
                                            initializer=_set_thread_niceness if nice else None,
                                            initargs=(nice,) if nice else ())

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, payload: Payload, count: int) -> Result:
        """Queue ``payload`` (``count`` inputs) and wait for its result; a failed batch raises here."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(payload, max(1, int(count)), future))
        return await future

    async def _consume(self) -> None:
        queue = self._queue
        if queue is None:  # start() creates the queue, then this task: anything else is a bug here
            raise RuntimeError("Batcher._consume() started without a queue: start() creates both")
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = batch[0].count
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        pending = await asyncio.wait_for(queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                else:
                    pending = queue.get_nowait()
                batch.append(pending)
                size += pending.count
            await self._run(loop, batch, size)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], size: int) -> None:
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.run, [p.payload for p in batch])
        except Exception as error:  # noqa: BLE001 - every waiting request gets the error, the loop goes on
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        finally:
            seconds = time.perf_counter() - started
            self._record(len(batch), size, seconds)
        if self.on_scored is not None:
            self.on_scored(size, seconds)
        for pending, result in zip(batch, results):
            if not pending.future.done():  # a client that went away cancelled its future
                pending.future.set_result(result)

    def _record(self, requests: int, size: int, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.inputs += size
        stats.requests += requests
        stats.model_seconds += seconds
        stats.largest_batch = max(stats.largest_batch, size)


def _set_thread_niceness(nice: int) -> None:
    """Lower this thread's priority alone (Linux schedules threads one by one); elsewhere nothing changes."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:  # not allowed here: the work runs at normal priority, which is only slower for others
            pass
