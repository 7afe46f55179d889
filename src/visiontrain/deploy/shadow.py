"""Shadow scoring off the response path: a bounded queue of copies, scored by the candidate after the answer.

A request that production answered offers its copy (:meth:`ShadowQueue.offer`) and returns at once; a few worker
tasks score the copies on the candidate's own batcher (so they batch with each other, never with production's
calls). When the queue is full the copy is dropped and counted: shadowing must never slow the answers or grow
memory without bound. Each copy holds a lease on the candidate until it has been scored or dropped, so a switch
never closes a version under a copy.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from visiontrain.deploy.deployed import Deployed

logger = logging.getLogger("visiontrain")

QUEUE_SIZE = 256  # copies waiting at most (requests, not inputs)
WORKERS = 4  # copies scored at once: enough for the candidate's batcher to batch them


@dataclass
class ShadowCopy:
    """What production answered, to be scored again by ``target``."""

    target: Deployed
    payload: Any  # the inputs as the request carried them (raw rows; image files and their statistics)
    answered: list[dict[str, Any]]  # production's results, for the agreement count
    production: str  # production's label


class ShadowQueue:
    """Copies waiting for ``score(copy)``; ``on_drop(copy)`` counts a copy the full queue turned away and
    ``on_failure(copy, error)`` one that could not be scored."""

    def __init__(self, score: Callable[[ShadowCopy], Awaitable[None]], on_drop: Callable[[ShadowCopy], None],
                 on_failure: Callable[[ShadowCopy, Exception], None], size: int = QUEUE_SIZE,
                 workers: int = WORKERS) -> None:
        self.score, self.on_drop, self.on_failure = score, on_drop, on_failure
        self.size, self.workers = max(1, int(size)), max(1, int(workers))
        self._queue: asyncio.Queue[ShadowCopy] | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Start the workers (in the server's event loop)."""
        self._queue = asyncio.Queue(self.size)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(self.workers)]

    def offer(self, copy: ShadowCopy) -> bool:
        """Queue ``copy`` without waiting; False (and counted) when the queue is full."""
        if self._queue is None:
            raise RuntimeError("ShadowQueue.start() was not called")
        copy.target.acquire()
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            copy.target.release()
            self.on_drop(copy)
            return False
        return True

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def close(self) -> None:
        """Stop the workers; copies still waiting are dropped (their leases released)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().target.release()

    async def _work(self) -> None:
        queue = self._queue
        if queue is None:
            raise RuntimeError("ShadowQueue._work() started without a queue: start() creates both")
        while True:
            copy = await queue.get()
            try:
                await self.score(copy)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a shadow failure is counted and logged, never raised
                self.on_failure(copy, error)
            finally:
                copy.target.release()
