"""The sans-IO scheduler: priorities, aging, backpressure, admission, retries, drain."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coordinator.routing import (
    ClusterSnapshot,
    EndpointView,
    LoadedModelView,
    NodeView,
    Priority,
    RouterConfig,
    SchedulerConfig,
    TaskSpec,
)
from coordinator.routing.router import HOLD_WAIT_FOR_HOME
from coordinator.routing.snapshot import load_seconds
from coordinator.scheduler import (
    FAIL_ATTEMPTS,
    FAIL_DEADLINE,
    FAIL_NOT_RETRYABLE,
    DuplicateTask,
    FinishKind,
    QueueFull,
    Scheduler,
    TaskState,
    Unroutable,
)
from hive.hardware import GB

MODEL = "qwen2.5-coder:7b"


def ep(node: str, eid: str = "gpu0", parallel: int = 1) -> EndpointView:
    return EndpointView(
        node=node,
        id=eid,
        gpu_names=("NVIDIA GeForce RTX 3070",),
        num_parallel=parallel,
        max_queue=8,
        vram_total_bytes=8 * 2**30,
        vram_used_bytes=0,
        models={MODEL: int(4.7 * GB)},
    )


def cluster(*names: str, parallel: int = 1) -> ClusterSnapshot:
    return ClusterSnapshot(tuple(NodeView(n, endpoints=(ep(n, parallel=parallel),)) for n in names))


def sched(**kw: object) -> Scheduler:
    settings = {"queue_allowance": 0, **kw}
    return Scheduler(RouterConfig(scheduler=SchedulerConfig(**settings)))  # type: ignore[arg-type]


def t(i: str, prio: Priority = Priority.NORMAL, **kw: object) -> TaskSpec:
    return TaskSpec(i, "inference", MODEL, prio, **kw)  # type: ignore[arg-type]


def test_priority_order_and_backpressure() -> None:
    s, snap = sched(), cluster("A")
    s.submit(t("low", Priority.LOW), snap, 0.0)
    s.submit(t("norm"), snap, 0.0)
    s.submit(t("high", Priority.HIGH), snap, 0.0)
    got = s.dispatch(snap, 1.0)
    # One slot, no queue allowance: exactly one task goes out, the high one.
    assert [a.task.id for a in got] == ["high"]
    assert s.dispatch(snap, 1.0) == []
    assert s.queue_depth == 2 and s.running_by_endpoint() == {("A", "gpu0"): 1}
    s.finished("high", 1, 2.0, ok=True)
    assert [a.task.id for a in s.dispatch(snap, 2.0)] == ["norm"]


def test_aging_lets_low_overtake_fresh_high() -> None:
    s, snap = sched(aging_seconds=10.0), cluster("A")
    s.submit(t("low", Priority.LOW), snap, 0.0)
    s.submit(t("high", Priority.HIGH), snap, 21.0)  # low has waited 2 levels + 1 s
    assert [a.task.id for a in s.dispatch(snap, 21.0)] == ["low"]
    s2 = sched(aging_seconds=10.0)
    s2.submit(t("low", Priority.LOW), snap, 0.0)
    s2.submit(t("high", Priority.HIGH), snap, 19.0)
    assert [a.task.id for a in s2.dispatch(snap, 19.0)] == ["high"]


def test_default_limit_is_parallel_plus_allowance() -> None:
    s = Scheduler(RouterConfig(scheduler=SchedulerConfig(queue_allowance=2)))
    snap = cluster("A", parallel=3)
    for i in range(10):
        s.submit(t(f"x{i}"), snap, 0.0)
    assert len(s.dispatch(snap, 0.0)) == 5
    s.set_limit("A", "gpu0", 7)
    assert len(s.dispatch(snap, 0.0)) == 2


def test_admission_queue_full() -> None:
    s, snap = sched(max_queue=2), cluster("A")
    s.submit(t("a"), snap, 0.0)
    s.submit(t("b"), snap, 0.0)
    with pytest.raises(QueueFull) as err:
        s.submit(t("c"), snap, 0.0)
    assert err.value.retry_after_seconds > 0
    with pytest.raises(DuplicateTask):
        s.submit(t("a"), snap, 0.0)


def test_unroutable_model() -> None:
    s, snap = sched(), cluster("A")
    with pytest.raises(Unroutable) as err:
        s.submit(TaskSpec("x", "inference", "starcoder2:15b"), snap, 0.0)
    assert err.value.model == "starcoder2:15b"
    assert s.queue_depth == 0


def test_retry_fails_over_and_stale_completion_ignored() -> None:
    s, snap = sched(max_attempts=2), cluster("A", "B")
    s.submit(t("x"), snap, 0.0)
    (first,) = s.dispatch(snap, 0.0)
    assert first.node == "A"  # tie-break by name
    out = s.finished("x", 1, 1.0, ok=False, error="boom")
    assert out.kind is FinishKind.REQUEUED and out.node == "A"
    (second,) = s.dispatch(snap, 1.0)
    assert second.attempt == 2 and second.node == "B"  # failover to another endpoint
    # A late report of attempt 1 changes nothing.
    assert s.finished("x", 1, 2.0, ok=True).kind is FinishKind.STALE
    assert s.finished("x", 2, 2.0, ok=True).kind is FinishKind.COMPLETED
    assert s.finished("x", 2, 2.0, ok=True).kind is FinishKind.STALE
    assert s.task("x") is None and s.running_count == 0


def test_attempts_exhausted_and_not_retryable() -> None:
    s, snap = sched(max_attempts=2), cluster("A", "B")
    s.submit(t("x"), snap, 0.0)
    s.submit(t("y"), snap, 0.0)
    s.dispatch(snap, 0.0)
    assert s.finished("y", 1, 0.5, ok=False, retryable=False).reason == FAIL_NOT_RETRYABLE
    assert s.finished("x", 1, 1.0, ok=False).kind is FinishKind.REQUEUED
    s.dispatch(snap, 1.0)
    out = s.finished("x", 2, 2.0, ok=False)
    assert out.kind is FinishKind.FAILED and out.reason == FAIL_ATTEMPTS


def test_retry_returns_to_failed_endpoint_when_only_one() -> None:
    s, snap = sched(), cluster("A")
    s.submit(t("x"), snap, 0.0)
    s.dispatch(snap, 0.0)
    s.finished("x", 1, 1.0, ok=False)
    (again,) = s.dispatch(snap, 1.0)
    assert again.node == "A" and again.attempt == 2


def test_drain_takes_no_new_work() -> None:
    s, snap = sched(), cluster("A", "B")
    s.drain("A")
    for i in range(3):
        s.submit(t(f"x{i}"), snap, 0.0)
    got = s.dispatch(snap, 0.0)
    assert [a.node for a in got] == ["B"]
    s.undrain("A")
    assert [a.node for a in s.dispatch(snap, 0.0)] == ["A"]


def test_node_lost_requeues_running_elsewhere() -> None:
    s, snap = sched(), cluster("A", "B")
    s.submit(t("x"), snap, 0.0)
    (a,) = s.dispatch(snap, 0.0)
    assert a.node == "A"
    outs = s.node_lost("A", 1.0)
    assert [(o.kind, o.task_id) for o in outs] == [(FinishKind.REQUEUED, "x")]
    lost = ClusterSnapshot(
        (NodeView("A", state="lost", endpoints=(ep("A"),)), NodeView("B", endpoints=(ep("B"),)))
    )
    (b,) = s.dispatch(lost, 1.0)
    assert b.node == "B" and b.attempt == 2
    assert s.finished("x", 1, 2.0, ok=True).kind is FinishKind.STALE
    assert s.finished("x", 2, 2.0, ok=True).kind is FinishKind.COMPLETED


def test_deadlines_expire_queued_and_running() -> None:
    s, snap = sched(), cluster("A")
    s.submit(t("run", deadline=5.0), snap, 0.0)
    s.submit(t("wait", deadline=3.0), snap, 0.0)
    s.submit(t("free"), snap, 0.0)
    (a,) = s.dispatch(snap, 0.0)
    assert a.task.id == "run"
    assert s.expire(2.0) == []
    outs = s.expire(5.0)
    assert {(o.task_id, o.reason, o.node) for o in outs} == {
        ("wait", FAIL_DEADLINE, ""),
        ("run", FAIL_DEADLINE, "A"),
    }
    # The running one's slot is free again; its late result is stale.
    assert s.finished("run", 1, 6.0, ok=True).kind is FinishKind.STALE
    assert [x.task.id for x in s.dispatch(snap, 6.0)] == ["free"]


def test_expired_task_is_not_dispatched() -> None:
    s, snap = sched(), cluster("A")
    s.submit(t("late", deadline=1.0), snap, 0.0)
    assert s.dispatch(snap, 2.0) == []


def test_cancel_queued_and_running() -> None:
    s, snap = sched(), cluster("A")
    s.submit(t("a"), snap, 0.0)
    s.submit(t("b"), snap, 0.0)
    s.dispatch(snap, 0.0)
    out = s.cancel("a")
    assert out is not None and out.kind is FinishKind.CANCELLED and out.node == "A"
    out = s.cancel("b")
    assert out is not None and out.node == ""
    assert s.cancel("b") is None
    assert s.queue_depth == 0 and s.running_count == 0
    assert s.dispatch(snap, 1.0) == []
    assert s.finished("a", 1, 1.0, ok=True).kind is FinishKind.STALE


def test_unplaceable_model_does_not_block_others() -> None:
    big = EndpointView(
        node="A",
        id="gpu0",
        gpu_names=("NVIDIA GeForce RTX 3070",),
        num_parallel=1,
        max_queue=8,
        vram_total_bytes=8 * 2**30,
        vram_used_bytes=0,
        models={MODEL: int(4.7 * GB), "codellama:13b": int(7.4 * GB)},
    )
    snap = ClusterSnapshot((NodeView("A", endpoints=(big,)), NodeView("B", endpoints=(ep("B"),))))
    s = sched()
    s.submit(TaskSpec("c1", "inference", "codellama:13b", Priority.HIGH), snap, 0.0)
    s.submit(TaskSpec("c2", "inference", "codellama:13b", Priority.HIGH), snap, 0.0)
    s.submit(t("q"), snap, 0.0)
    got = {a.task.id: a.node for a in s.dispatch(snap, 0.0)}
    assert got == {"c1": "A", "q": "B"}
    info = s.task("c2")
    assert info is not None and info.state is TaskState.QUEUED


# ----- holding a task for its model's home (optimizer placement) ------------------------


def _home_and_spare(protect: bool) -> ClusterSnapshot:
    """A: MODEL resident (its home when ``protect``); B: MODEL on disk, nothing loaded."""
    size = int(4.7 * GB)
    home = replace(ep("A"), loaded=(LoadedModelView(MODEL, size),), vram_used_bytes=size)
    snap = ClusterSnapshot((NodeView("A", endpoints=(home,)), NodeView("B", endpoints=(ep("B"),))))
    return replace(snap, protected={("A", "gpu0"): frozenset({MODEL})}) if protect else snap


def _fill_home(s: Scheduler, snap: ClusterSnapshot) -> None:
    s.submit(t("first"), snap, 0.0)
    s.submit(t("second"), snap, 0.0)
    assert [(a.task.id, a.node) for a in s.dispatch(snap, 0.0)] == [("first", "A")]


def test_held_task_goes_home_when_the_home_frees_within_the_bound() -> None:
    s, snap = sched(), _home_and_spare(protect=True)
    _fill_home(s, snap)
    info = s.task("second")
    assert info is not None and info.state is TaskState.QUEUED
    assert info.decision is not None and info.decision.hold is not None
    assert info.decision.hold.reason == HOLD_WAIT_FOR_HOME
    assert (info.decision.hold.node, info.decision.hold.endpoint_id) == ("A", "gpu0")
    assert "held: wait_for_home" in info.decision.explain()
    assert info.decision.to_dict()["hold"]["reason"] == HOLD_WAIT_FOR_HOME
    assert s.dispatch(snap, 1.0) == [] and s.holds == 2
    s.finished("first", 1, 2.0, ok=True)
    got = s.dispatch(snap, 2.0)
    assert [(a.task.id, a.node) for a in got] == [("second", "A")]
    assert got[0].decision.hold is None


def test_task_held_past_the_bound_takes_the_cold_load() -> None:
    s, snap = sched(home_wait_factor=2.0), _home_and_spare(protect=True)
    _fill_home(s, snap)
    hold = s.task("second").decision.hold  # type: ignore[union-attr]
    assert hold is not None
    assert hold.bound_seconds == pytest.approx(2.0 * load_seconds(MODEL, int(4.7 * GB)))
    assert s.dispatch(snap, hold.bound_seconds - 0.1) == []
    got = s.dispatch(snap, hold.bound_seconds)
    assert [(a.task.id, a.node) for a in got] == [("second", "B")]


def test_no_hold_without_a_placement_or_with_a_near_deadline() -> None:
    s, snap = sched(), _home_and_spare(protect=False)
    s.submit(t("first"), snap, 0.0)
    s.submit(t("second"), snap, 0.0)
    got = s.dispatch(snap, 0.0)
    assert sorted((a.task.id, a.node) for a in got) == [("first", "A"), ("second", "B")]
    assert s.holds == 0
    # With a placement but a deadline the wait could miss, the task is not held either.
    s2, protected = sched(), _home_and_spare(protect=True)
    s2.submit(t("first"), protected, 0.0)
    bound = SchedulerConfig().home_wait_factor * load_seconds(MODEL, int(4.7 * GB))
    s2.submit(t("second", deadline=bound), protected, 0.0)
    got = s2.dispatch(protected, 0.0)
    assert sorted((a.task.id, a.node) for a in got) == [("first", "A"), ("second", "B")]
    # And a factor of 0 turns holding off.
    s3 = sched(home_wait_factor=0.0)
    s3.submit(t("first"), protected, 0.0)
    s3.submit(t("second"), protected, 0.0)
    assert len(s3.dispatch(protected, 0.0)) == 2 and s3.holds == 0


def test_only_attempts_routed_to_a_cold_load_teach_the_disk_speed() -> None:
    """Ollama's load_duration also counts a wait for a busy runner's slot: the coordinator
    learns disk speed only from attempts the router sent to load the model."""
    from coordinator.dispatch import cold_load_bytes

    size = int(4.7 * GB)
    warm = replace(ep("A"), loaded=(LoadedModelView(MODEL, size),), vram_used_bytes=size)
    snap = ClusterSnapshot((NodeView("A", endpoints=(warm,)), NodeView("B", endpoints=(ep("B"),))))
    s = sched()
    s.submit(t("warm"), snap, 0.0)
    (to_warm,) = s.dispatch(snap, 0.0)
    assert to_warm.node == "A" and cold_load_bytes(to_warm, snap) == 0
    # Only B is left (A's model is now "busy" but B has room and no copy): a cold load.
    only_b = ClusterSnapshot((NodeView("B", endpoints=(ep("B"),)),))
    s.submit(t("cold"), only_b, 0.0)
    (to_cold,) = s.dispatch(only_b, 0.0)
    assert to_cold.node == "B" and cold_load_bytes(to_cold, only_b) == size
    # The endpoint gone from the snapshot: nothing to learn from.
    assert cold_load_bytes(to_cold, snap.replace_node(NodeView("B"))) == 0
