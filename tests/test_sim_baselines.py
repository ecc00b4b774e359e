"""The strong baselines of ``hive sim``, each on a hand-built snapshot: the behaviour that
defines the scheduler it imitates (coordinator/sim/policies.py cites the source)."""

from __future__ import annotations

import pytest

from coordinator.routing import (
    ClusterSnapshot,
    EndpointView,
    LoadedModelView,
    NodeView,
    SpeedEstimate,
    TaskSpec,
)
from coordinator.routing.snapshot import prior_speed
from coordinator.scheduler import PolicyContext
from coordinator.sim.policies import (
    Finished,
    GpuStackPlacement,
    LeastWork,
    LiteLLMLatency,
    LiteLLMLeastBusy,
    LlmdEndpointPicker,
)
from hive.hardware import GB, GIB

FAST = "NVIDIA GeForce RTX 4090"
SLOW = "NVIDIA Tesla P4"
MODEL = "qwen2.5-coder:7b"
OTHER = "llama3.1:8b"
SIZE = int(4.7 * GB)
OTHER_SIZE = int(4.9 * GB)


def ep(node: str, gpu: str = FAST, **kw: object) -> EndpointView:
    base: dict[str, object] = dict(
        node=node,
        id="gpu0",
        gpu_names=(gpu,),
        num_parallel=4,
        max_queue=8,
        vram_total_bytes=24 * GIB,
        vram_used_bytes=0,
        models={MODEL: SIZE, OTHER: OTHER_SIZE},
    )
    base.update(kw)
    return EndpointView(**base)  # type: ignore[arg-type]


def loaded(*models: tuple[str, int]) -> tuple[LoadedModelView, ...]:
    sizes = {MODEL: SIZE, OTHER: OTHER_SIZE}
    return tuple(LoadedModelView(m, sizes[m], n) for m, n in models)


def snap(*eps: EndpointView, **kw: object) -> ClusterSnapshot:
    return ClusterSnapshot(tuple(NodeView(e.node, endpoints=(e,)) for e in eps), **kw)  # type: ignore[arg-type]


def task(tid: str = "t", **kw: object) -> TaskSpec:
    base: dict[str, object] = dict(
        id=tid, type="inference", model=MODEL, prompt_tokens=600, output_tokens=200
    )
    base.update(kw)
    return TaskSpec(**base)  # type: ignore[arg-type]


def ctx(s: ClusterSnapshot, now: float = 0.0) -> PolicyContext:
    return PolicyContext(now, {e.key: 100 for e in s.endpoints()})


def chosen(decision: object) -> str:
    c = decision.chosen  # type: ignore[attr-defined]
    assert c is not None
    return str(c.node)


# ----- least expected work -----------------------------------------------------------------


def test_least_work_is_backlog_plus_work_per_slot_at_the_known_speed() -> None:
    policy = LeastWork()
    # Same GPU: the smaller backlog per slot wins (40 s over 4 slots beats 15 s over 1).
    s = snap(ep("a", num_parallel=1, backlog_seconds=15.0), ep("b", backlog_seconds=40.0))
    d = policy(task(), s, ctx(s))
    assert chosen(d) == "b"
    prior = prior_speed((FAST,), MODEL, SIZE)
    work = 600 / prior.prompt_tps + 200 / prior.decode_tps
    assert d.candidates[0].total == pytest.approx((40.0 + work) / 4)
    assert d.candidates[1].total == pytest.approx(15.0 + work)
    # Idle: the faster GPU by the hardware prior...
    s = snap(ep("a", SLOW), ep("b", FAST))
    assert chosen(policy(task(), s, ctx(s))) == "b"
    # ...until the 4090 is measured slow: the measured speed is what counts.
    slow = {("b", "gpu0", MODEL): SpeedEstimate(1.0, 12.0, 5)}
    s = snap(ep("a", SLOW), ep("b", FAST), speeds=slow)
    assert chosen(policy(task(), s, ctx(s))) == "a"


def test_warm_preference_takes_the_loaded_endpoint_over_a_faster_cold_one() -> None:
    s = snap(
        ep("a", FAST),
        ep("b", SLOW, loaded=loaded((MODEL, 1)), vram_used_bytes=SIZE, backlog_seconds=5.0),
    )
    assert chosen(LeastWork(warm=False)(task(), s, ctx(s))) == "a"
    warm = LeastWork(warm=True)
    assert warm.name == "least_work_warm"
    assert chosen(warm(task(), s, ctx(s))) == "b"
    # With no warm endpoint feasible it still places the task (on the least work).
    s = snap(ep("a", FAST), ep("b", SLOW))
    assert chosen(warm(task(), s, ctx(s))) == "a"


# ----- llm-d ---------------------------------------------------------------------------------


def test_llm_d_scores_queue_kv_cache_and_locality_with_its_default_weights() -> None:
    picker = LlmdEndpointPicker(seed=1)
    # a: model loaded, 4 in flight on 2 slots (2 waiting, cache full) -> 2*0 + 2*0 + 3*1 = 3
    # b: idle, model not loaded                                      -> 2*1 + 2*1 + 3*0 = 4
    a = ep("a", num_parallel=2, loaded=loaded((MODEL, 4)), in_flight=4, vram_used_bytes=SIZE)
    s = snap(a, ep("b", num_parallel=2))
    d = picker(task(), s, ctx(s))
    assert chosen(d) == "b"
    assert [c.total for c in d.candidates] == [4.0, 3.0]
    # a with its 2 slots busy but nobody waiting: queue ties (1 each) -> 2 + 0 + 3 = 5 > 4.
    a = ep("a", num_parallel=2, loaded=loaded((MODEL, 2)), in_flight=2, vram_used_bytes=SIZE)
    s = snap(a, ep("b", num_parallel=2))
    d = picker(task(), s, ctx(s))
    assert chosen(d) == "a"
    assert [c.total for c in d.candidates] == [5.0, 4.0]


def test_llm_d_breaks_ties_at_random_like_its_max_score_picker() -> None:
    picker = LlmdEndpointPicker(seed=3)
    s = snap(ep("a"), ep("b"), ep("c"))
    picks = {chosen(picker(task(f"t{i}"), s, ctx(s))) for i in range(30)}
    assert picks == {"a", "b", "c"}
    # Seeded: the same task gets the same pick.
    assert chosen(picker(task("t1"), s, ctx(s))) == chosen(picker(task("t1"), s, ctx(s)))


# ----- LiteLLM -------------------------------------------------------------------------------


def test_litellm_least_busy_counts_its_own_requests_first_used_first() -> None:
    policy = LiteLLMLeastBusy()
    s = snap(ep("a"), ep("b"), ep("c"))
    # Nothing finishes: each request goes to the deployment with the fewest in flight;
    # ties go to the deployment first entered in LiteLLM's dict.
    picks = [chosen(policy(task(f"t{i}"), s, ctx(s, now=i))) for i in range(4)]
    assert picks == ["a", "b", "c", "a"]
    assert policy.counts(MODEL, 4.0) == {("a", "gpu0"): 2, ("b", "gpu0"): 1, ("c", "gpu0"): 1}
    # It counts its own requests, not the snapshot's: b finishing makes b least busy.
    policy.learn(Finished("b", "gpu0", MODEL, 1.0, 5.0, 100))
    assert chosen(policy(task("t5"), s, ctx(s, now=5.0))) == "b"


def test_litellm_least_busy_counts_restart_when_the_cache_entry_expires() -> None:
    policy = LiteLLMLeastBusy()
    s = snap(ep("a"), ep("b"))
    for i in range(3):
        policy(task(f"t{i}"), s, ctx(s, now=float(i)))
    assert sum(policy.counts(MODEL, 599.0).values()) == 3
    # The in-memory cache's default TTL (600 s from the first write) drops the counts
    # while requests are still in flight; their ends then push counts below zero.
    assert policy.counts(MODEL, 601.0) == {}
    policy.learn(Finished("b", "gpu0", MODEL, 1.0, 601.0, 100))
    assert policy.counts(MODEL, 602.0) == {("b", "gpu0"): -1}
    assert chosen(policy(task("t9"), s, ctx(s, now=602.0))) == "b"


def test_litellm_latency_picks_the_lowest_seconds_per_token_trying_new_ones_first() -> None:
    policy = LiteLLMLatency(seed=2)
    s = snap(ep("a"), ep("b"), ep("c"))
    # a answered 100 tokens in 10 s: 0.1 s a token.
    policy.learn(Finished("a", "gpu0", MODEL, 0.0, 10.0, 100))
    # b and c are new (latency [0]): they score 0 and are tried before a.
    first = chosen(policy(task("t1"), s, ctx(s, now=11.0)))
    assert first in ("b", "c")
    policy.learn(Finished("b", "gpu0", MODEL, 11.0, 16.0, 100))  # 0.05 s a token
    policy.learn(Finished("c", "gpu0", MODEL, 11.0, 31.0, 100))  # 0.2 s a token
    # The 0 LiteLLM put in for a new deployment stays in its list: b averages 0.025.
    assert policy.latency(MODEL, ("b", "gpu0"), 32.0) == pytest.approx(0.025)
    assert policy.latency(MODEL, ("c", "gpu0"), 32.0) == pytest.approx(0.1)
    assert policy.latency(MODEL, ("a", "gpu0"), 32.0) == pytest.approx(0.1)
    assert {chosen(policy(task(f"u{i}"), s, ctx(s, now=32.0))) for i in range(10)} == {"b"}


def test_litellm_latency_keeps_its_first_nine_samples_and_expires_after_an_hour() -> None:
    policy = LiteLLMLatency()
    key = ("a", "gpu0")
    for i in range(1, 13):  # 1 .. 12 s a token
        policy.learn(Finished("a", "gpu0", MODEL, 0.0, float(i), 1))
    # A full list keeps its first 9 and replaces the last: [1..9, 12].
    assert policy.latency(MODEL, key, 20.0) == pytest.approx((45 + 12) / 10)
    # The map's TTL (1 h) runs from its first write and is not extended by later ones.
    assert policy.latency(MODEL, key, 3600.5) is not None
    assert policy.latency(MODEL, key, 3601.5) is None


# ----- GPUStack ------------------------------------------------------------------------------


def test_gpustack_dispatches_to_the_least_busy_running_instance() -> None:
    s = snap(
        ep("a", loaded=loaded((MODEL, 2)), in_flight=2, vram_used_bytes=SIZE),
        ep("b", SLOW, loaded=loaded((MODEL, 1)), in_flight=1, vram_used_bytes=SIZE),
        ep("c"),
    )
    for strategy in ("binpack", "spread"):
        d = GpuStackPlacement(strategy)(task(), s, ctx(s))
        # Not the idle c: a running instance takes it, the one with fewer requests.
        assert [c.node for c in d.candidates] == ["b", "a", "c"]


def test_gpustack_places_a_new_instance_by_binpack_or_spread() -> None:
    # Nowhere running: a has 24 GiB free; b has 12 GiB with another model idle in it.
    s = snap(
        ep("a"),
        ep(
            "b",
            vram_total_bytes=12 * GIB,
            loaded=loaded((OTHER, 0)),
            vram_used_bytes=OTHER_SIZE,
        ),
    )
    # Binpack: the fullest fit (b, where the model takes 4.7 of ~8 GB free).
    binpack = GpuStackPlacement("binpack")
    assert chosen(binpack(task(), s, ctx(s))) == "b"
    assert binpack.binpack_score(s.endpoints()[1], SIZE) == pytest.approx(
        SIZE / (12 * GIB - OTHER_SIZE)
    )
    # Spread: the worker with fewer instances (a has none; b one of another model).
    spread = GpuStackPlacement("spread")
    d = spread(task(), s, ctx(s))
    assert chosen(d) == "a"
    # a: 0.85 * (0.85 + 0.15 * 1) + 0.15 * 1; b: 0.85 * 0.85 + 0.15 / 1.2
    assert [c.values[1] for c in d.candidates] == pytest.approx(
        [0.85 + 0.15, 0.85 * 0.85 + 0.15 / 1.2]
    )


def test_gpustack_prefers_free_vram_over_evicting_an_idle_model() -> None:
    # b is the tighter fit but only after evicting its idle model; a fits in free VRAM.
    s = snap(
        ep("a"),
        ep(
            "b",
            vram_total_bytes=8 * GIB,
            loaded=loaded((OTHER, 0)),
            vram_used_bytes=OTHER_SIZE,
        ),
    )
    assert chosen(GpuStackPlacement("binpack")(task(), s, ctx(s))) == "a"
