"""The router on hand-built snapshots: each filter and each score moves the decision."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.routing import (
    ClusterSnapshot,
    EndpointView,
    LoadedModelView,
    NodeView,
    Priority,
    RouterConfig,
    SpeedEstimate,
    SpeedTracker,
    TaskSpec,
    Weights,
    route,
)
from coordinator.routing import filters as f
from coordinator.routing.snapshot import snapshot_from_cluster
from hive.config import ConfigError, seed_cluster
from hive.hardware import GB

GPU = "NVIDIA GeForce RTX 3070"
MODEL = "qwen2.5-coder:7b"
SIZE = int(4.7 * GB)


def ep(node: str, eid: str = "gpu0", **kw: object) -> EndpointView:
    base: dict[str, object] = dict(
        node=node,
        id=eid,
        gpu_names=(GPU,),
        num_parallel=4,
        max_queue=8,
        vram_total_bytes=8 * 2**30,
        vram_used_bytes=0,
        models={MODEL: SIZE, "codellama:13b": int(7.4 * GB)},
    )
    base.update(kw)
    return EndpointView(**base)  # type: ignore[arg-type]


def node(name: str, *eps: EndpointView, **kw: object) -> NodeView:
    return NodeView(name, endpoints=eps or (ep(name),), **kw)  # type: ignore[arg-type]


def task(**kw: object) -> TaskSpec:
    base: dict[str, object] = dict(id="t", type="inference", model=MODEL)
    base.update(kw)
    return TaskSpec(**base)  # type: ignore[arg-type]


def two(a: NodeView, b: NodeView, **kw: object) -> ClusterSnapshot:
    return ClusterSnapshot((a, b), **kw)  # type: ignore[arg-type]


CFG = RouterConfig()


def chosen_node(
    snapshot: ClusterSnapshot, t: TaskSpec | None = None, cfg: RouterConfig = CFG
) -> str:
    d = route(t or task(), snapshot, cfg)
    assert d.chosen is not None, d.explain()
    return d.chosen.node


def test_ties_broken_by_name_and_deterministic() -> None:
    snap = two(node("B"), node("A"))
    assert chosen_node(snap) == "A"
    assert route(task(), snap, CFG) == route(task(), snap, CFG)


# ----- filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (node("A", state="suspect"), f.REJECT_NODE_SUSPECT),
        (node("A", state="lost"), f.REJECT_NODE_LOST),
        (node("A", draining=True), f.REJECT_NODE_DRAINING),
        (node("A", ep("A", healthy=False)), f.REJECT_ENDPOINT_UNHEALTHY),
        (node("A", ep("A", models={"other:1b": 1})), f.REJECT_MODEL_MISSING),
        (node("A", ep("A", models={MODEL: 9 * 2**30})), f.REJECT_MODEL_TOO_LARGE),
        (
            node(
                "A",
                ep(
                    "A",
                    vram_used_bytes=7 * 2**30,
                    loaded=(LoadedModelView("codellama:13b", 7 * 2**30, 1),),
                ),
            ),
            f.REJECT_VRAM_BUSY,
        ),
        (node("A", ep("A", in_flight=12)), f.REJECT_AT_CAPACITY),
    ],
)
def test_each_filter_rejects_with_its_reason(bad: NodeView, reason: str) -> None:
    # "A" would win the name tie-break if it were feasible.
    d = route(task(), two(bad, node("B")), CFG)
    assert d.chosen is not None and d.chosen.node == "B"
    assert [r.reason for r in d.rejected] == [reason]
    assert d.rejected[0].node == "A"
    assert reason in f.REJECT_REASONS


def test_idle_models_count_as_evictable() -> None:
    full_of_idle = ep(
        "A", vram_used_bytes=7 * 2**30, loaded=(LoadedModelView("codellama:13b", 7 * 2**30, 0),)
    )
    d = route(task(), ClusterSnapshot((node("A", full_of_idle),)), CFG)
    assert d.chosen is not None and d.chosen.node == "A"


def test_scheduler_limit_caps_capacity() -> None:
    snap = two(node("A", ep("A", in_flight=2)), node("B", ep("B", in_flight=3)))
    d = route(task(), snap, CFG, limits={("A", "gpu0"): 2})
    assert d.chosen is not None and d.chosen.node == "B"
    assert d.rejected[0].reason == f.REJECT_AT_CAPACITY


def test_nothing_feasible_gives_no_choice() -> None:
    d = route(task(model="codellama:13b"), ClusterSnapshot((node("A", ep("A", models={})),)), CFG)
    assert d.chosen is None and d.candidates == ()
    assert "no feasible endpoint" in d.explain()


# ----- scores --------------------------------------------------------------------------


def test_loaded_model_beats_cold_load() -> None:
    warm = ep("B", loaded=(LoadedModelView(MODEL, SIZE, 0),), vram_used_bytes=SIZE)
    d = route(task(), two(node("A"), node("B", warm)), CFG)
    assert d.chosen is not None and d.chosen.node == "B"
    assert d.candidates[1].value("cold_load") > 0 and d.chosen.value("cold_load") == 0


def test_a_measured_slow_disk_makes_a_cold_load_cost_more_there() -> None:
    """Both endpoints must load the model; A's host was measured reading 0.25 GB/s, B's
    never loaded anything (the default speed): B wins, and A's cold_load is priced at its
    measured speed."""
    from hive.hardware import LOAD_FIXED_SECONDS

    slow = ep("A", load_bytes_per_second=0.25e9)
    d = route(task(), two(node("A", slow), node("B")), CFG)
    assert d.chosen is not None and d.chosen.node == "B"
    by_node = {c.node: c for c in d.candidates}
    assert by_node["A"].value("cold_load") == pytest.approx(LOAD_FIXED_SECONDS + SIZE / 0.25e9)
    assert by_node["B"].value("cold_load") < by_node["A"].value("cold_load") / 4


def test_shorter_queue_wins() -> None:
    busy = ep("A", loaded=(LoadedModelView(MODEL, SIZE, 6),), vram_used_bytes=SIZE, in_flight=6)
    quiet = ep("B", loaded=(LoadedModelView(MODEL, SIZE, 1),), vram_used_bytes=SIZE, in_flight=1)
    d = route(task(), two(node("A", busy), node("B", quiet)), CFG)
    assert d.chosen is not None and d.chosen.node == "B"
    assert d.candidates[1].value("queue_wait") > 0


def test_faster_gpu_wins() -> None:
    slow = ep("A", gpu_names=("NVIDIA Tesla P4",))
    fast = ep("B", gpu_names=("NVIDIA GeForce RTX 4090",), vram_total_bytes=24 * 2**30)
    assert chosen_node(two(node("A", slow), node("B", fast))) == "B"


def test_measured_speed_overrides_prior() -> None:
    speeds = {("B", "gpu0", MODEL): SpeedEstimate(5.0, 60.0, 50)}
    assert chosen_node(two(node("A"), node("B"), speeds=speeds)) == "A"
    speeds = {("A", "gpu0", MODEL): SpeedEstimate(5.0, 60.0, 50)}
    assert chosen_node(two(node("A"), node("B"), speeds=speeds)) == "B"


def test_error_rate_penalised() -> None:
    snap = two(node("A"), node("B"), error_rates={("A", "gpu0"): 0.5})
    d = route(task(), snap, CFG)
    assert d.chosen is not None and d.chosen.node == "B"
    assert d.candidates[1].value("error_rate") > 0


def test_gpu_utilisation_penalised() -> None:
    assert chosen_node(two(node("A", ep("A", utilization_percent=90.0)), node("B"))) == "B"


def test_joining_a_batch_beats_adding_a_second_model() -> None:
    # A runs our model (one in flight); B runs another model (one in flight).
    a = ep("A", loaded=(LoadedModelView(MODEL, SIZE, 1),), vram_used_bytes=SIZE, in_flight=1)
    b = ep(
        "B",
        loaded=(LoadedModelView("codellama:13b", int(7.4 * GB), 1),),
        vram_used_bytes=int(7.4 * GB) - 4 * 2**30,
        vram_total_bytes=16 * 2**30,
        in_flight=1,
    )
    d = route(task(), two(node("B", b), node("A", a)), CFG)
    assert d.chosen is not None and d.chosen.node == "A"
    assert d.candidates[1].value("interference") > 0


def test_failover_avoids_failed_endpoint() -> None:
    snap = two(node("A"), node("B"))
    d = route(task(), snap, CFG, avoid=frozenset({("A", "gpu0")}))
    assert d.chosen is not None and d.chosen.node == "B"


def test_chain_honoured_when_all_else_equal() -> None:
    nodes = tuple(node(n) for n in ("A", "B", "C"))
    cfg = RouterConfig(chains={"code_review": ("C", "B", "A")})
    assert chosen_node(ClusterSnapshot(nodes), task(type="code_review"), cfg) == "C"
    d = route(task(type="code_review"), ClusterSnapshot(nodes), cfg)
    assert [c.node for c in d.candidates] == ["C", "B", "A"]
    # Other types have no chain: name order.
    assert chosen_node(ClusterSnapshot(nodes), task(type="testing"), cfg) == "A"
    # A zero weight turns the preference off.
    off = RouterConfig(weights=Weights(chain=0.0), chains=cfg.chains)
    assert chosen_node(ClusterSnapshot(nodes), task(type="code_review"), off) == "A"


def test_explain_matches_decision() -> None:
    c = seed_cluster()
    cfg = RouterConfig.from_mapping(c.routing, c.source, [n.name for n in c.nodes])
    d = route(task(type="code_generation", model="codellama:13b"), snapshot_from_cluster(c), cfg)
    assert d.chosen is not None
    text = d.explain()
    assert f"chosen {d.chosen.node}/{d.chosen.endpoint_id}" in text
    data = d.to_dict()
    assert data["chosen"] == {"node": d.chosen.node, "endpoint": d.chosen.endpoint_id}
    totals = [c["total"] for c in data["candidates"]]
    assert totals == sorted(totals)
    for cand in d.candidates:
        assert cand.total == pytest.approx(sum(p.value * p.weight for p in cand.components))
    # ACACIA and FORSTEINET lack codellama:13b.
    assert {(r.node, r.reason) for r in d.rejected} == {
        ("ACACIA", f.REJECT_MODEL_MISSING),
        ("FORSTEINET", f.REJECT_MODEL_MISSING),
    }


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 24),  # total GiB
            st.integers(0, 24),  # used GiB
            st.lists(
                st.tuples(
                    st.sampled_from(["m1", "m2", "m3"]), st.integers(1, 12), st.integers(0, 3)
                ),
                max_size=3,
            ),
            st.integers(1, 20),  # need GiB
            st.integers(0, 8),  # in flight
        ),
        min_size=1,
        max_size=8,
    )
)
def test_never_places_where_the_model_cannot_fit(
    spec: list[tuple[int, int, list[tuple[str, int, int]], int, int]],
) -> None:
    G = 2**30
    nodes = []
    for i, (total, used, loaded_raw, need, inflight) in enumerate(spec):
        loaded = {
            name: LoadedModelView(name, gib * G, n) for name, gib, n in loaded_raw if name != "want"
        }
        e = ep(
            f"N{i}",
            vram_total_bytes=total * G,
            vram_used_bytes=min(used, total) * G,
            models={"want": need * G},
            loaded=tuple(loaded.values()),
            in_flight=inflight,
        )
        nodes.append(node(f"N{i}", e))
    snap = ClusterSnapshot(tuple(nodes))
    d = route(task(model="want"), snap, CFG)
    # The router's inlined feasibility check agrees with the named filters.
    chosen = {c.key for c in d.candidates}
    for e in snap.endpoints():
        assert (e.key in chosen) == f.passes_filters(
            task(model="want"), e, e.num_parallel + e.max_queue
        )
    for cand in d.candidates:
        e = snap.endpoint(cand.key)
        assert e is not None
        need = e.models["want"]
        resident = sum(m.vram_bytes for m in e.loaded)
        idle = sum(m.vram_bytes for m in e.loaded if m.in_flight == 0)
        assert need <= e.vram_total_bytes - max(e.vram_used_bytes, resident) + idle
        assert need <= e.vram_total_bytes - (resident - idle)


def test_an_endpoint_leading_to_a_cluster_the_task_passed_through_is_a_routing_loop() -> None:
    """Federation: LAB-B's endpoint is Hive cluster "b"'s gateway; a task that has been
    through "b" never goes there, whatever it offers, and a task that has not may."""
    peer = node("LAB-B", ep("LAB-B", "hive", hive_cluster="b", vram_total_bytes=96 * 2**30))
    local = node("LOCAL", ep("LOCAL"))
    snap = two(peer, local)
    d = route(task(via=frozenset({"a"})), snap, CFG)
    assert {c.key for c in d.candidates} == {("LAB-B", "hive"), ("LOCAL", "gpu0")}
    looping = task(via=frozenset({"a", "b"}))
    d = route(looping, snap, CFG)
    assert d.chosen is not None and d.chosen.key == ("LOCAL", "gpu0")
    (rejection,) = [r for r in d.rejected if r.node == "LAB-B"]
    assert rejection.reason == f.REJECT_ROUTING_LOOP
    assert rejection.detail == "leads to Hive cluster 'b', which the request has passed through"
    assert not f.passes_filters(looping, snap.nodes[0].endpoints[0], 12)
    # Only the looping endpoint has the model: waiting cannot help.
    assert f.could_ever_run(MODEL, ClusterSnapshot((peer,)), {"a"})
    assert not f.could_ever_run(MODEL, ClusterSnapshot((peer,)), {"a", "b"})


# ----- speed tracking ------------------------------------------------------------------


def test_speed_tracker_ewma_and_errors() -> None:
    tr = SpeedTracker(alpha=0.5)
    tr.observe(
        "A",
        "gpu0",
        MODEL,
        ok=True,
        eval_count=100,
        eval_duration_ns=10**9,
        prompt_eval_count=1000,
        prompt_eval_duration_ns=10**9,
    )
    tr.observe("A", "gpu0", MODEL, ok=True, eval_count=200, eval_duration_ns=10**9)
    est = tr.speeds()[("A", "gpu0", MODEL)]
    assert est.decode_tps == pytest.approx(150.0) and est.prompt_tps == pytest.approx(1000.0)
    assert est.samples == 2
    # Four requests batched: measured 100 tok/s is 175 single-stream.
    tr.observe("B", "gpu0", MODEL, ok=True, eval_count=100, eval_duration_ns=10**9, concurrency=4)
    assert tr.speeds()[("B", "gpu0", MODEL)].decode_tps == pytest.approx(175.0)
    tr.observe("A", "gpu0", MODEL, ok=False)
    assert tr.error_rates()[("A", "gpu0")] == pytest.approx(0.1)
    assert tr.error_rates()[("B", "gpu0")] == 0.0


# ----- config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"weights": {"foo": 1}}, "routing.weights.foo"),
        ({"weights": {"chain": -1}}, "routing.weights.chain"),
        ({"weights": {"service": "fast"}}, "routing.weights.service"),
        ({"weights": {"service": True}}, "routing.weights.service"),
        ({"chains": {"juggling": ["A"]}}, "routing.chains.juggling"),
        ({"chains": {"testing": ["A", "NOPE"]}}, "routing.chains.testing[1]"),
        ({"chains": {"testing": "A"}}, "routing.chains.testing"),
        ({"bogus": 1}, "routing.bogus"),
        ({"scheduler": {"max_queue": 0}}, "routing.scheduler.max_queue"),
        ({"scheduler": {"aging": 1}}, "routing.scheduler.aging"),
        ({"scheduler": {"home_wait_factor": -1}}, "routing.scheduler.home_wait_factor"),
        ({"scheduler": {"residual_window": -1}}, "routing.scheduler.residual_window"),
        ({"scheduler": {"residual_window": 2.5}}, "routing.scheduler.residual_window"),
    ],
)
def test_config_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        RouterConfig.from_mapping(data, "c.yaml", node_names=["A", "B"])
    assert err.value.key == key and err.value.source == "c.yaml"


def test_config_from_seed() -> None:
    c = seed_cluster()
    cfg = RouterConfig.from_mapping(
        {**c.routing, "weights": {"chain": 2}}, c.source, [n.name for n in c.nodes]
    )
    assert cfg.chains["code_generation"] == ("IRONWOOD", "WALNUT", "ROSEWOOD")
    assert cfg.weights.chain == 2.0 and cfg.weights.service == Weights().service
    assert replace(cfg, weights=Weights()).weights.chain == Weights().chain
    assert task(priority=Priority.HIGH).priority > Priority.LOW
    held = RouterConfig.from_mapping({"scheduler": {"home_wait_factor": 0}}, "c.yaml", ["A"])
    assert held.scheduler.home_wait_factor == 0.0 and cfg.scheduler.home_wait_factor == 1.0


# ----- the optimizer's placement ---------------------------------------------------------

LLAMA = "llama3.1:8b"
LLAMA_SIZE = int(4.9 * GB)


def _swap_choice(protected: dict[tuple[str, str], frozenset[str]]) -> tuple[str, float]:
    """A holds an idle llama (loading qwen evicts it); B is busy with qwen, one queued."""
    models = {MODEL: SIZE, LLAMA: LLAMA_SIZE}
    a = ep(
        "A",
        num_parallel=2,
        models=models,
        loaded=(LoadedModelView(LLAMA, LLAMA_SIZE, 0),),
        vram_used_bytes=LLAMA_SIZE,
    )
    b = ep(
        "B",
        num_parallel=2,
        models=models,
        loaded=(LoadedModelView(MODEL, SIZE, 3),),
        vram_used_bytes=SIZE,
        in_flight=3,
    )
    d = route(task(output_tokens=600), two(node("A", a), node("B", b), protected=protected), CFG)
    assert d.chosen is not None, d.explain()
    evicting = next(c for c in d.candidates if c.node == "A")
    return d.chosen.node, evicting.value("placement")


def test_placement_penalty_moves_the_decision_off_a_protected_model() -> None:
    # Without a placement the swap on A is cheaper than queueing on B.
    assert _swap_choice({}) == ("A", 0.0)
    node_name, penalty = _swap_choice({("A", "gpu0"): frozenset({LLAMA})})
    assert node_name == "B" and penalty > 0


def test_placement_has_no_effect_when_empty_or_not_evicting() -> None:
    snap = two(node("A"), node("B", ep("B", loaded=(LoadedModelView(MODEL, SIZE, 0),))))
    plain = route(task(), snap, CFG)
    same = route(task(), replace(snap, protected={("A", "gpu0"): frozenset({LLAMA})}), CFG)
    assert [c.total for c in plain.candidates] == [c.total for c in same.candidates]
    assert all(c.value("placement") == 0.0 for c in same.candidates)
    # Protecting an unrelated model on an endpoint that fits both costs nothing either.
    roomy = ep("A", loaded=(LoadedModelView(LLAMA, LLAMA_SIZE, 0),), vram_total_bytes=24 * 2**30)
    d = route(
        task(), two(node("A", roomy), node("B"), protected={("A", "gpu0"): frozenset({LLAMA})}), CFG
    )
    assert all(c.value("placement") == 0.0 for c in d.candidates)
