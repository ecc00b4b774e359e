"""The workflow engine's bound on its tasks at the dispatcher: ``PriorityGate``, a
semaphore whose waiters are served by workflow priority."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PriorityGate:
    """At most ``limit`` holders; waiters are served highest priority first, FIFO within one.

    Bounds how many workflow tasks the engine has at the dispatcher at once, so a burst
    of workflows queues here (cheaply, cancellably) rather than overflowing the
    scheduler's queue. A waiter that is cancelled leaves no trace.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        # A release hands its slot straight to a live waiter, so free slots imply no waiters.
        if self._free > 0:
            self._free -= 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (-priority, next(self._seq), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # granted just as we were cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
