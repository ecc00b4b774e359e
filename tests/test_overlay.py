"""The scheduler's overlay (its in-flight work on top of telemetry) as the simulator's speed
work left it: views built field by field, and for a policy that does not read
``backlog_seconds`` reused while nothing under them changed."""

from __future__ import annotations

import dataclasses

from coordinator.routing import (
    ClusterSnapshot,
    EndpointView,
    LoadedModelView,
    NodeView,
    RouterConfig,
    TaskSpec,
)
from coordinator.scheduler import HivePolicy, Scheduler
from coordinator.sim.policies import RoundRobin
from hive.hardware import GB, GIB

MODEL = "qwen2.5-coder:7b"
OTHER = "llama3.1:8b"


def endpoint(**kw: object) -> EndpointView:
    """A view whose every field differs from its default."""
    base: dict[str, object] = dict(
        node="n",
        id="e",
        gpu_names=("NVIDIA GeForce RTX 4090",),
        num_parallel=3,
        max_queue=5,
        vram_total_bytes=24 * GIB,
        vram_used_bytes=int(5 * GB),
        models={MODEL: int(4.7 * GB), OTHER: int(4.9 * GB)},
        loaded=(LoadedModelView(OTHER, int(4.9 * GB), 0),),
        in_flight=1,
        healthy=True,
        utilization_percent=42.0,
        backlog_seconds=7.0,
        load_bytes_per_second=2e9,
        hive_cluster="far",
    )
    base.update(kw)
    return EndpointView(**base)  # type: ignore[arg-type]


def snapshot(ep: EndpointView) -> ClusterSnapshot:
    return ClusterSnapshot((NodeView(ep.node, endpoints=(ep,)),))


def test_overlaid_view_carries_every_field_like_dataclasses_replace() -> None:
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(EndpointView)
        if f.init and f.default is not dataclasses.MISSING
    }
    # Telemetry says one request is in flight; the scheduler has none there.
    ep = endpoint(healthy=False)
    assert all(getattr(ep, name) != value for name, value in defaults.items())
    s = Scheduler(RouterConfig())
    got = s.overlay(snapshot(ep), 1.0).endpoints()[0]
    assert got == dataclasses.replace(ep, in_flight=0, backlog_seconds=0.0)
    # One task of another model dispatched there: counted, loaded, its VRAM used.
    ep = endpoint()
    s.submit(TaskSpec("t", "inference", MODEL), snapshot(ep), 0.0)
    [a] = s.dispatch(snapshot(ep), 0.0)
    assert (a.node, a.endpoint_id) == ("n", "e")
    got = s.overlay(snapshot(ep), 1.0).endpoints()[0]
    assert got.backlog_seconds > 0
    assert got == dataclasses.replace(
        ep,
        loaded=(LoadedModelView(OTHER, int(4.9 * GB), 0), LoadedModelView(MODEL, int(4.7 * GB), 1)),
        in_flight=1,
        vram_used_bytes=int(5 * GB) + int(4.7 * GB),
        backlog_seconds=got.backlog_seconds,
    )


def test_without_backlog_the_view_is_reused_until_its_work_or_telemetry_changes() -> None:
    ep = endpoint(hive_cluster="", in_flight=0, loaded=())
    s = Scheduler(RouterConfig(), RoundRobin())
    assert s.policy.reads_backlog is False  # type: ignore[attr-defined]
    snap = snapshot(ep)
    s.submit(TaskSpec("t1", "inference", MODEL), snap, 0.0)
    s.dispatch(snap, 0.0)
    first = s.overlay(snap, 1.0, backlog=False).endpoints()[0]
    assert first.in_flight == 1 and first.backlog_seconds == 0.0
    # Later, nothing changed: the same object.
    assert s.overlay(snap, 5.0, backlog=False).endpoints()[0] is first
    # With backlog it is estimated afresh, and otherwise equal.
    full = s.overlay(snap, 5.0).endpoints()[0]
    assert full.backlog_seconds > 0 and dataclasses.replace(full, backlog_seconds=0.0) == first
    # Another task on it: rebuilt.
    s.submit(TaskSpec("t2", "inference", MODEL), snap, 6.0)
    s.dispatch(snap, 6.0)
    second = s.overlay(snap, 7.0, backlog=False).endpoints()[0]
    assert second is not first and second.in_flight == 2
    # One finishes: rebuilt again.
    s.finished("t1", 1, 8.0, ok=True)
    assert s.overlay(snap, 9.0, backlog=False).endpoints()[0].in_flight == 1
    # New telemetry for the endpoint: rebuilt from it.
    newer = snapshot(dataclasses.replace(ep, utilization_percent=99.0))
    assert s.overlay(newer, 9.0, backlog=False).endpoints()[0].utilization_percent == 99.0


def test_dispatch_asks_the_policy_whether_it_reads_backlog() -> None:
    ep = endpoint(hive_cluster="", in_flight=0, loaded=(), backlog_seconds=0.0)
    seen: list[float] = []

    class Spy(HivePolicy):
        reads_backlog = False

        def __call__(self, task, snapshot, context):  # type: ignore[no-untyped-def]
            seen.append(snapshot.endpoints()[0].backlog_seconds)
            return super().__call__(task, snapshot, context)

    s = Scheduler(RouterConfig(), Spy(RouterConfig()))
    snap = snapshot(ep)
    for i in range(2):
        s.submit(TaskSpec(f"t{i}", "inference", MODEL), snap, float(i))
        s.dispatch(snap, float(i))
    assert seen == [0.0, 0.0]  # the second saw one task running, without its backlog
    Spy.reads_backlog = True
    s.submit(TaskSpec("t9", "inference", MODEL), snap, 3.0)
    s.dispatch(snap, 3.0)
    assert seen[-1] > 0.0
