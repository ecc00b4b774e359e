"""What the optimizer learns from: a bounded, time-ordered record of the cluster's recent past.

The owner of the clock appends observations as they happen (the coordinator from dispatch
results, telemetry and registry transitions; the simulator from its events) and the
optimizer only reads. Every record carries the time it happened on the caller's clock;
``trim(now)`` drops what is older than the window, so memory is bounded by the window and
the rate of events. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

LoadKind = Literal["loaded", "evicted"]
SessionKind = Literal["lost", "suspect", "joined"]


class _HasTime(Protocol):
    @property
    def at(self) -> float: ...


_Timed = TypeVar("_Timed", bound=_HasTime)


@dataclass(frozen=True, slots=True)
class TaskSample:
    """One finished task attempt, as the dispatcher saw it end.

    ``concurrency`` counts requests in flight on the endpoint when it ended, itself
    included; ``run_seconds`` is assignment to last token without a cold load (the
    curve of an endpoint is about serving, not loading)."""

    at: float
    node: str
    endpoint_id: str
    model: str
    task_type: str
    ok: bool = True
    queued_seconds: float = 0.0
    run_seconds: float = 0.0
    eval_count: int = 0
    eval_seconds: float = 0.0
    concurrency: int = 1
    load_seconds: float = 0.0
    # What the router predicted at dispatch and what came out, in seconds (-1: unknown):
    # waiting for a slot on the endpoint, and prompt plus decoding.
    predicted_wait_seconds: float = -1.0
    wait_seconds: float = -1.0
    predicted_service_seconds: float = -1.0
    service_seconds: float = -1.0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.node, self.endpoint_id, self.model)


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    task_type: str
    model: str


@dataclass(frozen=True, slots=True)
class QueueSample:
    """Tasks of one type waiting in the coordinator's queue at ``at``."""

    at: float
    task_type: str
    depth: int


@dataclass(frozen=True, slots=True)
class LoadEvent:
    """A model appeared in (``loaded``) or left (``evicted``) an endpoint's VRAM."""

    at: float
    node: str
    endpoint_id: str
    model: str
    kind: LoadKind


@dataclass(frozen=True, slots=True)
class GpuSample:
    at: float
    node: str
    gpu: int
    temperature_celsius: float
    throttled: bool
    utilization_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A node's liveness changed: its session was lost, it went suspect, or it (re)joined."""

    at: float
    node: str
    kind: SessionKind


class History:
    """Bounded deques of observations, oldest first. Appends must come in time order."""

    def __init__(self, window_seconds: float = 600.0, max_items: int = 50_000) -> None:
        self.window_seconds = window_seconds
        self.tasks: deque[TaskSample] = deque(maxlen=max_items)
        self.arrivals: deque[Arrival] = deque(maxlen=max_items)
        self.queues: deque[QueueSample] = deque(maxlen=max_items)
        self.loads: deque[LoadEvent] = deque(maxlen=max_items)
        self.gpus: deque[GpuSample] = deque(maxlen=max_items)
        self.sessions: deque[SessionEvent] = deque(maxlen=max_items)

    @classmethod
    def of(
        cls,
        items: Iterable[TaskSample | Arrival | QueueSample | LoadEvent | GpuSample | SessionEvent],
        window_seconds: float = 600.0,
    ) -> History:
        """A history holding ``items`` (any order; sorted by time here)."""
        h = cls(window_seconds)
        for item in sorted(items, key=lambda i: i.at):
            h.add(item)
        return h

    def add(
        self, item: TaskSample | Arrival | QueueSample | LoadEvent | GpuSample | SessionEvent
    ) -> None:
        if isinstance(item, TaskSample):
            self.tasks.append(item)
        elif isinstance(item, Arrival):
            self.arrivals.append(item)
        elif isinstance(item, QueueSample):
            self.queues.append(item)
        elif isinstance(item, LoadEvent):
            self.loads.append(item)
        elif isinstance(item, GpuSample):
            self.gpus.append(item)
        else:
            self.sessions.append(item)

    def trim(self, now: float) -> None:
        """Forget everything older than ``now - window_seconds``."""
        cut = now - self.window_seconds
        for d in (self.tasks, self.arrivals, self.queues, self.loads, self.gpus, self.sessions):
            while d and d[0].at < cut:
                d.popleft()


def recent(items: Iterable[_Timed], start: float) -> list[_Timed]:
    """The items at or after ``start`` (items are in time order; scanned from the end)."""
    out: list[_Timed] = []
    seq = items if isinstance(items, deque | list) else list(items)
    for item in reversed(seq):
        if item.at < start:
            break
        out.append(item)
    out.reverse()
    return out
