"""Remaining work of running requests, learned from finished ones (coordinator/residual.py)
and used by the scheduler's view of each endpoint's backlog."""

from __future__ import annotations

import pytest

from coordinator.residual import ResidualLife
from coordinator.routing import RouterConfig, SchedulerConfig
from coordinator.scheduler import Scheduler
from tests.test_scheduler import cluster, t


def pareto_ratios(n: int, x_min: float, alpha: float) -> list[float]:
    """n evenly spaced quantiles of a Pareto distribution (deterministic)."""
    return [x_min / (1.0 - (i + 0.5) / n) ** (1.0 / alpha) for i in range(n)]


def test_no_answer_until_enough_requests_finished() -> None:
    r = ResidualLife(window=100, min_samples=10)
    for _ in range(9):
        r.observe(2.0, 1.0)
    assert r.remaining(0.5, 1.0) is None
    r.observe(2.0, 1.0)
    assert r.remaining(0.5, 1.0) == pytest.approx(1.5)
    # Older than every finished request: nothing to learn from, the caller guesses.
    assert r.remaining(3.0, 1.0) is None
    # Scales with the request's own estimate.
    assert r.remaining(5.0, 10.0) == pytest.approx(15.0)


def test_heavy_tail_a_request_that_ran_long_has_long_left() -> None:
    # Pareto with index 2: the mean residual life at x is x / (alpha - 1) = x.
    r = ResidualLife(window=4096)
    for ratio in pareto_ratios(4096, 0.5, 2.0):
        r.observe(ratio, 1.0)
    young, old, older = r.remaining(0.6, 1.0), r.remaining(2.0, 1.0), r.remaining(4.0, 1.0)
    assert young is not None and old is not None and older is not None
    assert young < old < older
    assert old == pytest.approx(2.0, rel=0.15) and older == pytest.approx(4.0, rel=0.25)


def test_window_forgets_old_requests() -> None:
    r = ResidualLife(window=64, min_samples=64)
    for _ in range(64):
        r.observe(1.0, 1.0)
    assert r.remaining(0.0, 1.0) == pytest.approx(1.0)
    for _ in range(64):
        r.observe(3.0, 1.0)
    assert len(r) == 64 and r.remaining(0.0, 1.0) == pytest.approx(3.0)


def test_bad_window_is_refused() -> None:
    with pytest.raises(ValueError):
        ResidualLife(window=0)


def _overdue_backlog(window: int) -> tuple[float, float]:
    """Teach a scheduler 64 requests (90 % ran half their estimate, 10 % five times it),
    then look at the backlog of one that has run twice its estimate.
    Returns (backlog, its estimate)."""
    s = Scheduler(
        RouterConfig(scheduler=SchedulerConfig(queue_allowance=0, residual_window=window))
    )
    snap = cluster("A")
    now = 0.0
    work = 0.0
    for i in range(64):
        s.submit(t(f"t{i}"), snap, now)
        (a,) = s.dispatch(snap, now)
        work = s.overlay(snap, now).endpoints()[0].backlog_seconds
        now += work * (5.0 if i % 10 == 0 else 0.5)
        s.finished(a.task.id, a.attempt, now, ok=True)
    s.submit(t("long"), snap, now)
    s.dispatch(snap, now)
    return s.overlay(snap, now + 2.0 * work).endpoints()[0].backlog_seconds, work


def test_scheduler_backlog_of_an_overdue_request_comes_from_what_finished() -> None:
    learned, work = _overdue_backlog(64)
    # Of the finished requests only the long ones (5x) ran past 2x: 3x the estimate left.
    assert learned == pytest.approx(3.0 * work, rel=1e-6)
    # Without learning, elapsed time is subtracted from the estimate: next to nothing left.
    guessed, work = _overdue_backlog(0)
    assert guessed == pytest.approx(0.1 * work, rel=1e-6)
