"""Which models sit in VRAM and which requests may use them: the emulator's Ollama scheduler.

It mirrors what routing depends on in Ollama's ``server/sched.go``: a model must be loaded
before it serves, loading takes time and VRAM, idle models are evicted least recently used
first when another needs the room, each loaded model has ``num_parallel`` slots, waiting
requests queue FIFO per model, and more than ``max_queue`` waiting requests are refused.

All state lives on one event loop and every check-and-update runs without an ``await`` in
between, so no locks are needed; waiters sleep on a broadcast that fires on every change
(slot freed, model loaded or unloaded) and re-check their own condition.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hive import hardware

# Ollama prints memory in GiB with one decimal in its errors.
_GIB = float(hardware.GIB)


class SchedulingError(Exception):
    """A request the scheduler refuses; the HTTP layer maps each subclass to a status."""


class ModelTooLarge(SchedulingError):
    def __init__(self, needed_bytes: int, available_bytes: int) -> None:
        super().__init__(
            f"model requires more system memory ({needed_bytes / _GIB:.1f} GiB) "
            f"than is available ({available_bytes / _GIB:.1f} GiB)"
        )


class ServerBusy(SchedulingError):
    def __init__(self) -> None:
        # Ollama's exact text, two spaces included.
        super().__init__("server busy, please try again.  maximum pending requests exceeded")


@dataclass(slots=True)
class EmulatorStats:
    """Counters since start, plus the current number of active and queued requests."""

    requests_total: int = 0  # generate and chat requests received
    completed_total: int = 0
    cancelled_total: int = 0  # the client went away before the answer was complete
    loads_total: int = 0
    evictions_total: int = 0  # idle models dropped to make room for another
    unloads_total: int = 0  # models dropped because their keep_alive ran out (or was 0)
    errors_total: int = 0  # requests answered with an HTTP error
    active: int = 0  # requests holding a slot (loading, evaluating or generating)
    queued: int = 0  # requests waiting for a slot or for VRAM


class Phase(enum.Enum):
    """What a slot is doing; the GPU activity model reads it."""

    LOADING = "loading"
    PROMPT = "prompt"
    DECODE = "decode"
    IDLE = "idle"


@dataclass(eq=False, slots=True)
class Runner:
    """One loaded (or loading) model, like an Ollama runner process."""

    kind: hardware.ModelKind
    keep_alive: float  # seconds idle before unloading; math.inf = forever
    expires_at: float
    last_used: float
    ready: bool = False
    leases: set[Lease] = field(default_factory=set)

    def count(self, phase: Phase) -> int:
        return sum(1 for lease in self.leases if lease.phase is phase)


@dataclass(eq=False, slots=True)
class Lease:
    """A request's claim on one slot of a runner, from the scheduler until release."""

    runner: Runner
    # Modelled (unscaled) seconds this request spent loading the model; 0 if it was resident.
    load_seconds: float = 0.0
    # Clock seconds spent queued for a slot or VRAM, before any load.
    queued_seconds: float = 0.0
    phase: Phase = Phase.IDLE
    released: bool = False


class Scheduler:
    """Owns the runners of one endpoint and hands out slots.

    Invariants: the VRAM of all runners (loading included) never exceeds the endpoint's
    total; a runner with leases or queued requests is never evicted or expired; within
    one model, requests get slots in arrival order. Across models there is no fairness:
    a big model waiting for busy models to drain can be overtaken by small ones that fit.
    """

    def __init__(
        self,
        *,
        gpus: list[hardware.GpuKind],
        num_parallel: int,
        max_queue: int,
        time_scale: float,
        stats: EmulatorStats,
        clock: Callable[[], float],
        load_bytes_per_second: float = hardware.LOAD_BYTES_PER_SECOND,
    ) -> None:
        self.gpus = list(gpus)
        self._load_bps = load_bytes_per_second
        self.total_vram = sum(g.memory_bytes for g in gpus)
        self._num_parallel = num_parallel
        self._max_queue = max_queue
        self._time_scale = time_scale
        self._stats = stats
        self._clock = clock
        self._runners: dict[str, Runner] = {}
        # Per model, the requests waiting for it in arrival order.
        self._lines: dict[str, deque[object]] = {}
        self._changed = asyncio.Event()

    @property
    def time_scale(self) -> float:
        return self._time_scale

    def runners(self) -> list[Runner]:
        """Runners resident now (loading ones included), after dropping expired ones."""
        self.expire()
        return list(self._runners.values())

    def decoding_models(self) -> int:
        return sum(1 for r in self._runners.values() if r.count(Phase.DECODE))

    async def sleep(self, modelled_seconds: float) -> None:
        """Spend modelled time; with time_scale 0 only yield, so overhead stays measurable."""
        if self._time_scale == 0.0 or modelled_seconds <= 0.0:
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(modelled_seconds * self._time_scale)

    async def acquire(self, kind: hardware.ModelKind, keep_alive: float) -> Lease:
        """Wait for a slot on ``kind``, loading it (and evicting idle models) if needed.

        Raises ModelTooLarge if the model can never fit, ServerBusy if the queue is full.
        Cancelling the caller withdraws it from the queue, or abandons a load it started.
        """
        if kind.size_bytes > self.total_vram:
            raise ModelTooLarge(kind.size_bytes, self.total_vram)
        if self._stats.queued >= self._max_queue:
            raise ServerBusy()
        ticket = object()
        line = self._lines.setdefault(kind.name, deque())
        line.append(ticket)
        self._stats.queued += 1
        queued_at = self._clock()
        try:
            while True:
                self.expire()
                if line[0] is ticket:
                    runner = self._runners.get(kind.name)
                    if runner is None and self._make_room(kind):
                        runner = Runner(kind, keep_alive, math.inf, self._clock())
                        self._runners[kind.name] = runner
                        lease = self._take_slot(runner, keep_alive, queued_at)
                        lease.phase = Phase.LOADING
                        break
                    if (
                        runner is not None
                        and runner.ready
                        and len(runner.leases) < self._num_parallel
                    ):
                        return self._take_slot(runner, keep_alive, queued_at)
                await self._wait_for_change()
        finally:
            line.remove(ticket)
            if not line:
                del self._lines[kind.name]
            self._stats.queued -= 1
            self._notify()
        return await self._load(lease)

    def release(self, lease: Lease) -> None:
        """Give the slot back; idempotent. A keep_alive of 0 unloads the model once idle."""
        if lease.released:
            return
        lease.released = True
        runner = lease.runner
        runner.leases.discard(lease)
        self._stats.active -= 1
        now = self._clock()
        runner.last_used = now
        runner.expires_at = now + runner.keep_alive
        self._unload_if_due(runner, now)
        self._notify()

    def unload(self, kind: hardware.ModelKind) -> None:
        """Unload ``kind`` as soon as it is idle (now, if it already is), like keep_alive 0."""
        runner = self._runners.get(kind.name)
        if runner is None:
            return
        runner.keep_alive = 0.0
        runner.expires_at = self._clock()
        self._unload_if_due(runner, runner.expires_at)
        self._notify()

    def expire(self) -> None:
        """Drop idle runners whose keep_alive has run out.

        Expiry is checked lazily, whenever someone looks, rather than by a timer: every
        observer (``/api/ps``, telemetry, a new request needing VRAM) calls this first, so
        nobody can tell the difference and there is no background task to own.
        """
        now = self._clock()
        for runner in list(self._runners.values()):
            self._unload_if_due(runner, now)

    def _unload_if_due(self, runner: Runner, now: float) -> None:
        if (
            runner.ready
            and not runner.leases
            and runner.kind.name not in self._lines
            and runner.expires_at <= now
        ):
            del self._runners[runner.kind.name]
            self._stats.unloads_total += 1

    def _take_slot(self, runner: Runner, keep_alive: float, queued_at: float) -> Lease:
        now = self._clock()
        lease = Lease(runner, queued_seconds=now - queued_at)
        runner.leases.add(lease)
        # The latest request decides how long the model stays, as in Ollama.
        runner.keep_alive = keep_alive
        runner.last_used = now
        runner.expires_at = now + keep_alive
        self._stats.active += 1
        return lease

    async def _load(self, lease: Lease) -> Lease:
        runner = lease.runner
        self._stats.loads_total += 1
        seconds = hardware.load_seconds(runner.kind, self._load_bps)
        try:
            await self.sleep(seconds)
        except BaseException:
            # The loading request went away: abandon the half-loaded model and its VRAM.
            runner.leases.discard(lease)
            lease.released = True
            self._stats.active -= 1
            del self._runners[runner.kind.name]
            self._notify()
            raise
        runner.ready = True
        lease.load_seconds = seconds
        lease.phase = Phase.IDLE
        self._notify()
        return lease

    def _make_room(self, kind: hardware.ModelKind) -> bool:
        """Evict idle runners, least recently used first, until ``kind`` fits.

        Evicts nothing unless evicting could make it fit: if busy runners hold too much,
        the request waits for them rather than needlessly dropping idle models.
        """
        free = self.total_vram - sum(r.kind.size_bytes for r in self._runners.values())
        if free >= kind.size_bytes:
            return True
        idle = sorted(
            (
                r
                for r in self._runners.values()
                if r.ready and not r.leases and r.kind.name not in self._lines
            ),
            key=lambda r: r.last_used,
        )
        if free + sum(r.kind.size_bytes for r in idle) < kind.size_bytes:
            return False
        for runner in idle:
            if free >= kind.size_bytes:
                break
            del self._runners[runner.kind.name]
            self._stats.evictions_total += 1
            free += runner.kind.size_bytes
        return True

    async def _wait_for_change(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        # A fresh event per change: waiters woken by this one re-check and then wait on the next.
        self._changed.set()
        self._changed = asyncio.Event()
