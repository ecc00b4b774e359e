"""Prometheus metrics: every /metrics of a running cluster is valid and moves with work."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from coordinator.metrics import decision_reason
from coordinator.routing.router import Candidate, Decision
from hive.cli.dev import DevCluster
from hive.config import ConfigError, parse_agent_config, parse_cluster_config
from hive.metrics import HttpMetrics, metrics_app, split_listen
from hive.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus; scripts/install-system-deps.sh)",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def cluster(full_dev: DevCluster) -> DevCluster:
    return full_dev


def metrics_urls(dev: DevCluster) -> dict[str, str]:
    assert dev.coordinator is not None and dev.coordinator.metrics_server is not None
    urls = {"coordinator": dev.coordinator.metrics_server.url}
    for name, agent in dev.agents.items():
        assert agent.metrics_server is not None
        urls[f"agent {name}"] = agent.metrics_server.url
    return urls


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=5)
    assert response.status_code == 200, url
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def promtool_check(text: str) -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool prints lint problems (units, _total, camelCase) and still exits 0 for some.
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout


async def run_tasks(dev: DevCluster, n: int) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for i in range(n):
            request = inference_pb2.GenerateRequest(
                model="llama3.1:8b",
                prompt=f"metrics {i}",
                task_type=(
                    common_pb2.TASK_TYPE_CODE_REVIEW if i % 2 else common_pb2.TASK_TYPE_INFERENCE
                ),
            )
            async for _ in stub.Generate(request, timeout=30):
                pass


@needs_promtool
async def test_every_metrics_endpoint_is_valid_and_counts_work(cluster: DevCluster) -> None:
    """promtool accepts every /metrics (coordinator, five agents; the gateway's when it
    serves one); after five tasks the counters and histograms have moved by five."""
    urls = metrics_urls(cluster)
    before = {name: parse(await scrape(url)) for name, url in urls.items()}
    await run_tasks(cluster, 5)

    coordinator = cluster.coordinator
    assert coordinator is not None

    async def heartbeat_after_work() -> bool:
        text = await scrape(urls["coordinator"])
        return total(parse(text), "hive_cluster_endpoint_loaded_models") > 0

    await eventually(heartbeat_after_work, what="a heartbeat showing the loaded model")
    texts = {name: await scrape(url) for name, url in urls.items()}
    assert cluster.gateway is not None
    async with httpx.AsyncClient() as client:
        gateway = await client.get(f"{cluster.gateway.url}/metrics", timeout=5)
    if gateway.status_code == 200 and gateway.text.startswith("#"):
        texts["gateway"] = gateway.text
    for name, text in texts.items():
        promtool_check(text)
        assert "hive_build_info{" in text, name

    after = parse(texts["coordinator"])
    b = before["coordinator"]
    assert total(after, "hive_tasks_total", state="succeeded") - total(
        b, "hive_tasks_total", state="succeeded"
    ) == pytest.approx(5)
    assert total(after, "hive_tasks_total", type="code_review", state="succeeded") >= 2
    assert total(after, "hive_task_assignment_latency_seconds_count") - total(
        b, "hive_task_assignment_latency_seconds_count"
    ) == pytest.approx(5)
    assert total(after, "hive_task_duration_seconds_count") == pytest.approx(5)
    assert total(after, "hive_generated_tokens_total", model="llama3.1:8b") > 0
    assert total(after, "hive_router_decisions_total") == pytest.approx(5)
    assert total(after, "hive_tokens_per_second", model="llama3.1:8b") > 0
    # The whole cluster's GPUs as heartbeats report them: 9 GPUs, 80 GiB.
    assert total(after, "hive_cluster_gpu_memory_total_bytes") == 80 * 2**30
    assert total(after, "hive_nodes", state="healthy") == 5
    assert total(after, "hive_node_state", node="ACACIA", state="healthy") == 1
    walnut = next(
        dict(ls)
        for (n, ls), _ in after.items()
        if n == "hive_cluster_gpu_temperature_celsius" and ("node", "WALNUT") in ls
    )
    assert walnut == {
        "node": "WALNUT",
        "gpu": "0",
        "model": "AMD Radeon RX 9060 XT",
        "vendor": "amd",
    }
    assert total(after, "hive_cluster_gpu_memory_used_bytes") > 0

    # The agents that ran the tasks counted them too, with their own GPUs and endpoints.
    ran = sum(
        total(parse(texts[f"agent {n}"]), "hive_agent_tasks_total", outcome="succeeded")
        for n in cluster.agents
    )
    assert ran == pytest.approx(5)
    ironwood = parse(texts["agent IRONWOOD"])
    assert total(ironwood, "hive_gpu_memory_total_bytes") == 32 * 2**30
    assert total(ironwood, "hive_endpoint_slots", endpoint="gtx1070") == 4
    assert total(ironwood, "hive_agent_connected") == 1
    assert total(ironwood, "hive_agent_sessions_total") == 1


async def test_alert_rules_and_dashboard_use_only_exported_metrics(cluster: DevCluster) -> None:
    """Every hive_* name in the alert rules and the Grafana dashboard is one the processes
    export (or a recording rule), so a renamed metric cannot silently blind an alert."""
    await run_tasks(cluster, 1)
    exported: set[str] = set()
    for url in metrics_urls(cluster).values():
        for family in text_string_to_metric_families(await scrape(url)):
            exported.update(s.name for s in family.samples)
    for path in (
        ROOT / "deploy/prometheus/rules/hive.rules.yml",
        ROOT / "deploy/grafana/hive-dashboard.json",
    ):
        used = set(re.findall(r"\bhive_[a-z_]+", path.read_text()))
        histogram_parts = {n for n in used if n.endswith(("_bucket", "_count", "_sum"))}
        missing = used - exported - histogram_parts
        assert not missing, f"{path.name} uses metrics nobody exports: {sorted(missing)}"


async def test_lost_node_shows_in_node_state(cluster: DevCluster) -> None:
    coordinator = cluster.coordinator
    assert coordinator is not None and coordinator.metrics_server is not None
    await cluster.stop_node("ACACIA")

    async def lost() -> bool:
        samples = parse(await scrape(coordinator.metrics_server.url))  # type: ignore[union-attr]
        return total(samples, "hive_node_state", node="ACACIA", state="lost") == 1

    await eventually(lost, timeout=5, what="ACACIA lost in hive_node_state")
    samples = parse(await scrape(coordinator.metrics_server.url))
    assert total(samples, "hive_nodes", state="lost") == 1
    assert total(samples, "hive_cluster_endpoint_up", node="IRONWOOD") == 2


def test_decision_reason_names_the_scorer_that_won() -> None:
    names = ("queue_wait", "cold_load", "service")
    warm = Candidate("A", "e", 3.0, (1.0, 0.0, 2.0), (1.0, 1.0, 1.0), names)
    cold = Candidate("B", "e", 9.0, (0.0, 7.0, 2.0), (1.0, 1.0, 1.0), names)
    assert decision_reason(Decision("t", "m", (warm, cold), ())) == "cold_load"
    assert decision_reason(Decision("t", "m", (warm,), ())) == "only_candidate"


def test_metrics_listen_is_validated_like_other_keys() -> None:
    cluster = parse_cluster_config({"coordinator": {"metrics_listen": ":9101"}}, "c.yaml")
    assert cluster.coordinator.metrics_listen == ":9101"
    assert parse_cluster_config({}, "c.yaml").coordinator.metrics_listen == "127.0.0.1:9101"
    assert split_listen(":9101") == ("0.0.0.0", 9101)
    with pytest.raises(ConfigError, match=r"c.yaml: coordinator.metrics_listen: expected"):
        parse_cluster_config({"coordinator": {"metrics_listen": "9101"}}, "c.yaml")
    node = {"node": {"name": "N", "gpus": []}}
    agent = parse_agent_config({**node, "metrics_listen": "off"}, "n.yaml")
    assert agent.metrics_listen == "off"
    assert parse_agent_config(node, "n.yaml").metrics_listen == "127.0.0.1:9102"
    with pytest.raises(ConfigError, match="metrics_listen"):
        parse_agent_config({**node, "metrics_listen": "host:99999"}, "n.yaml")


async def test_the_gateway_labels_curl_bodies_and_head_requests_by_their_route() -> None:
    """Requests whose body is not declared JSON (curl's default form type, as Ollama's own
    docs send) and HEAD requests (Ollama's clients probe with them) are counted under the
    route they matched, not ``unmatched``: the gateway's middlewares used to hand the router
    a copy of the request's scope, so the metrics never saw the route."""
    from gateway.app import create_app

    app = create_app("127.0.0.1:1")  # no coordinator: these answers come before one
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        bad = await client.post("/api/generate", content=b'{"model": 5}', headers=form)
        assert bad.status_code == 400
        assert (await client.head("/api/version")).status_code == 200
        text = (await client.get("/metrics")).text
    samples = parse(text)
    assert total(samples, "hive_http_requests_total", route="/api/generate", code="400") == 1
    assert total(samples, "hive_http_requests_total", route="/api/version", method="HEAD") == 1
    assert total(samples, "hive_http_requests_total", route="unmatched") == 0


async def test_http_metrics_label_requests_by_route_template() -> None:
    """The middleware the gateway can wrap itself in: route templates, never raw paths."""
    registry = CollectorRegistry()

    async def item(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{id}", item)])
    app.mount("/metrics", metrics_app(registry))
    wrapped = HttpMetrics(app, registry)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for i in range(3):
            assert (await client.get(f"/items/{i}")).status_code == 200
        assert (await client.get("/nope")).status_code == 404
        text = (await client.get("/metrics/")).text
    samples = parse(text)
    assert total(samples, "hive_http_requests_total", route="/items/{id}", code="200") == 3
    assert total(samples, "hive_http_requests_total", route="unmatched", code="404") == 1
