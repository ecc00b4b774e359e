"""`hive check`: the seed's test script as a command against a running cluster.

The seed's ``scripts/test_distributed_workflows.py`` checks system health, cluster
connectivity, workflow submission and tracking, performance metrics, load balancing and
multi-GPU utilisation, with ``--single-test NAME`` and ``--output report.md``. Here each
is one coroutine that talks to the cluster only through its public interfaces (the
coordinator's gRPC API, the gateway's HTTP API, ``/metrics``) and returns a
``CheckResult`` whose ``reason`` says what a person should look at. The exit status is 1
when any check fails, so it can gate a deployment.

The coordinator's ``/metrics`` is where the coordinator says it is (GetClusterStatus's
``metrics_address``), not a guessed port; ``--metrics-url`` overrides it.

Also `hive health`: one gRPC health (or HTTP) probe, for container health checks.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from hive.tls import client_channel
from hive.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

DEFAULT_COORDINATOR = "127.0.0.1:50051"
DEFAULT_GATEWAY = "http://127.0.0.1:8000"
ENV_COORDINATOR = "HIVE_COORDINATOR"
ENV_GATEWAY = "HIVE_GATEWAY"
# Hosts a server binds to listen on every interface; a client reaches it at any of them.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# The seed's promise: "<500ms task assignment with optimized agent selection".
MAX_ASSIGNMENT_SECONDS = 0.5
TASK_TYPES = (
    common_pb2.TASK_TYPE_CODE_GENERATION,
    common_pb2.TASK_TYPE_CODE_REVIEW,
    common_pb2.TASK_TYPE_TESTING,
    common_pb2.TASK_TYPE_OPTIMIZATION,
)
WORKFLOW_TERMINAL = {
    workflow_pb2.WORKFLOW_STATE_SUCCEEDED,
    workflow_pb2.WORKFLOW_STATE_FAILED,
    workflow_pb2.WORKFLOW_STATE_CANCELLED,
}


class CheckFailed(Exception):
    """A check's verdict: failed, with the reason a person should act on."""

    def __init__(self, reason: str, details: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or []


class CheckSkipped(Exception):
    """The check cannot say anything about this cluster (e.g. one node: no balancing)."""


@dataclass
class CheckResult:
    name: str
    status: str  # "pass", "fail", "skip"
    reason: str
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass
class Target:
    coordinator: str = DEFAULT_COORDINATOR
    gateway: str | None = DEFAULT_GATEWAY
    metrics_url: str | None = None
    # No metrics_url given: ask the coordinator where its /metrics is (run_checks).
    metrics_from_coordinator: bool = False
    model: str | None = None
    timeout: float = 120.0
    max_assignment_seconds: float = MAX_ASSIGNMENT_SECONDS


class Session:
    """What the checks share: channels, and the load that earlier checks ran."""

    def __init__(self, target: Target, channel: grpc.aio.Channel, http: httpx.AsyncClient) -> None:
        self.target = target
        self.channel = channel
        self.http = http
        self.cluster = cluster_pb2_grpc.ClusterServiceStub(channel)
        self.inference = inference_pb2_grpc.InferenceServiceStub(channel)
        self.workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)

    async def status(self) -> cluster_pb2.GetClusterStatusResponse:
        return await self.cluster.GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest(), timeout=10
        )


Check = Callable[[Session], Awaitable[CheckResult]]


def _healthy(node: cluster_pb2.NodeStatus) -> bool:
    return node.state == common_pb2.NODE_STATE_HEALTHY and not node.draining


def _state(node: cluster_pb2.NodeStatus) -> str:
    return common_pb2.NodeState.Name(node.state).removeprefix("NODE_STATE_").lower()


# --- the checks ----------------------------------------------------------------------


async def check_health(s: Session) -> CheckResult:
    """The coordinator answers gRPC health SERVING; the gateway's /health and the
    coordinator's /metrics answer, where given."""
    details = []
    stub = health_pb2_grpc.HealthStub(s.channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    except grpc.aio.AioRpcError as err:
        raise CheckFailed(
            f"coordinator {s.target.coordinator} unreachable: {err.code().name} {err.details()}"
        ) from None
    serving = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise CheckFailed(f"coordinator {s.target.coordinator} health is {serving}")
    details.append(f"coordinator {s.target.coordinator}: gRPC health {serving}")
    if s.target.gateway:
        url = f"{s.target.gateway.rstrip('/')}/health"
        try:
            r = await s.http.get(url, timeout=10)
        except httpx.HTTPError as exc:
            raise CheckFailed(f"gateway {url} unreachable: {exc!r}", details) from None
        if r.status_code != 200:
            raise CheckFailed(f"gateway {url} answered {r.status_code}: {r.text[:200]}", details)
        details.append(f"gateway {url}: {r.status_code} {r.text[:120]}")
    if s.target.metrics_url:
        try:
            r = await s.http.get(s.target.metrics_url, timeout=10)
        except httpx.HTTPError as exc:
            raise CheckFailed(
                f"coordinator metrics {s.target.metrics_url} unreachable: {exc!r}", details
            ) from None
        if r.status_code != 200 or "hive_build_info" not in r.text:
            raise CheckFailed(f"{s.target.metrics_url} is not Hive's /metrics", details)
        details.append(f"metrics {s.target.metrics_url}: {r.status_code}")
    return CheckResult("health", "pass", "coordinator serving" + _and_gateway(s), details)


def _and_gateway(s: Session) -> str:
    return ", gateway healthy" if s.target.gateway else ""


async def check_connectivity(s: Session) -> CheckResult:
    """Every node the coordinator knows is healthy and heartbeating, every Ollama endpoint
    answers its agent, and every agent answers GetNode from here (noted, not required:
    agents may sit on a network this machine cannot reach)."""
    status = await s.status()
    if not status.nodes:
        raise CheckFailed("no node agent has registered with the coordinator")
    problems, details = [], []
    now = time.time()
    for node in status.nodes:
        name = node.info.name
        age = now - node.last_heartbeat.ToNanoseconds() / 1e9
        line = f"{name}: {_state(node)}, last heartbeat {age:.1f}s ago"
        line += f", agent {node.info.agent_address}"
        details.append(line + (", draining" if node.draining else ""))
        if node.state != common_pb2.NODE_STATE_HEALTHY:
            problems.append(f"node {name} is {_state(node)} (last heartbeat {age:.1f}s ago)")
            if node.state != common_pb2.NODE_STATE_DEGRADED:
                continue  # a degraded node heartbeats: its endpoints below say why
        for endpoint in node.telemetry.endpoints:
            if not endpoint.healthy:
                problems.append(
                    f"node {name}: Ollama endpoint {endpoint.id} unhealthy: {endpoint.error}"
                )
    reachable = await asyncio.gather(*(_dial_agent(n) for n in status.nodes))
    details.extend(reachable)
    if problems:
        raise CheckFailed("; ".join(problems), details)
    endpoints = sum(len(n.info.endpoints) for n in status.nodes)
    return CheckResult(
        "connectivity",
        "pass",
        f"{len(status.nodes)} nodes healthy, {endpoints} Ollama endpoints answering",
        details,
    )


async def _dial_agent(node: cluster_pb2.NodeStatus) -> str:
    from hive.v1 import node_agent_pb2, node_agent_pb2_grpc

    address = node.info.agent_address
    try:
        async with client_channel(address, server_name=node.info.name) as channel:
            stub = node_agent_pb2_grpc.NodeAgentServiceStub(channel)
            await stub.GetNode(node_agent_pb2.GetNodeRequest(), timeout=3)
        return f"{node.info.name}: agent {address} answers GetNode from here"
    except grpc.aio.AioRpcError as err:
        return f"{node.info.name}: agent {address} not reachable from here ({err.code().name})"


async def check_workflow(s: Session) -> CheckResult:
    """Submit a quick workflow and track it to the end."""
    request = workflow_pb2.SubmitWorkflowRequest(
        name="hive check",
        requirements="A function that returns the sum of two integers, with a unit test.",
        language="python",
        priority=common_pb2.PRIORITY_HIGH,
        pipeline="quick",
        request_id=f"hive-check-{uuid.uuid4().hex[:12]}",
        labels={"source": "hive-check"},
    )
    try:
        reply = await s.workflows.SubmitWorkflow(request, timeout=30)
    except grpc.aio.AioRpcError as err:
        raise CheckFailed(f"SubmitWorkflow answered {err.code().name}: {err.details()}") from None
    wf = reply.workflow
    details = [f"submitted {wf.id} (pipeline {wf.pipeline or 'quick'})"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.target.timeout
    seen = wf.state
    while wf.state not in WORKFLOW_TERMINAL:
        if loop.time() > deadline:
            raise CheckFailed(
                f"workflow {wf.id} still {workflow_pb2.WorkflowState.Name(wf.state)} after "
                f"{s.target.timeout:.0f}s",
                details,
            )
        await asyncio.sleep(0.2)
        try:
            wf = (
                await s.workflows.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=wf.id), timeout=10)
            ).workflow
        except grpc.aio.AioRpcError as err:
            raise CheckFailed(
                f"GetWorkflow({wf.id}) answered {err.code().name}: {err.details()}", details
            ) from None
        if wf.state != seen:
            details.append(f"state {workflow_pb2.WorkflowState.Name(wf.state)}")
            seen = wf.state
    for stage in wf.stages:
        nodes = sorted({t.node for t in stage.tasks if t.node})
        details.append(
            f"stage {stage.name}: {common_pb2.TaskType.Name(stage.type)} "
            f"on {', '.join(nodes) or '-'}"
        )
    if wf.state != workflow_pb2.WORKFLOW_STATE_SUCCEEDED:
        raise CheckFailed(
            f"workflow {wf.id} ended {workflow_pb2.WorkflowState.Name(wf.state)}: {wf.error}",
            details,
        )
    return CheckResult(
        "workflow", "pass", f"workflow {wf.id} succeeded ({len(wf.stages)} stages)", details
    )


async def _pick_model(s: Session) -> tuple[str, int]:
    """The model to load the cluster with: --model, else the one most healthy nodes have."""
    status = await s.status()
    holders: dict[str, set[str]] = collections.defaultdict(set)
    for node in status.nodes:
        if _healthy(node):
            for endpoint in node.info.endpoints:
                for info in endpoint.models:
                    holders[info.name].add(node.info.name)
    if s.target.model:
        return s.target.model, len(holders.get(s.target.model, ()))
    if not holders:
        raise CheckFailed("no healthy node serves any model")
    model = max(sorted(holders), key=lambda m: len(holders[m]))
    return model, len(holders[model])


async def _one_task(
    s: Session, model: str, task_type: common_pb2.TaskType, i: int
) -> tuple[str, float, float]:
    """Run one small task; (node/endpoint, seconds to assignment, tokens/s)."""
    request = inference_pb2.GenerateRequest(
        model=model, prompt=f"hive check task {i}: say hello", task_type=task_type
    )
    request.options.update({"num_predict": 16})
    start = time.perf_counter()
    where, assigned, tps = "", 0.0, 0.0
    async for event in s.inference.Generate(request, timeout=s.target.timeout):
        if event.HasField("assigned"):
            where = f"{event.assigned.node}/{event.assigned.endpoint_id}"
            assigned = assigned or time.perf_counter() - start
        elif event.HasField("result"):
            st = event.result.stats
            tps = st.eval_count / (st.eval_duration_ns / 1e9) if st.eval_duration_ns else 0.0
    return where, assigned, tps


async def _burst(s: Session, model: str, n: int) -> list[tuple[str, float, float]]:
    return list(
        await asyncio.gather(
            *(_one_task(s, model, TASK_TYPES[i % len(TASK_TYPES)], i) for i in range(n))
        )
    )


async def check_load_balancing(s: Session) -> CheckResult:
    """A burst of concurrent tasks of several types spreads over more than one node."""
    model, holders = await _pick_model(s)
    if holders < 2:
        raise CheckSkipped(f"only {holders} healthy node serves {model}: nothing to balance")
    status = await s.status()
    slots = sum(
        e.num_parallel
        for n in status.nodes
        if _healthy(n)
        for e in n.info.endpoints
        if any(m.name == model for m in e.models)
    )
    n = max(8, min(32, 2 * slots))
    try:
        results = await _burst(s, model, n)
    except grpc.aio.AioRpcError as err:
        raise CheckFailed(
            f"a task of the burst failed: {err.code().name} {err.details()}"
        ) from None
    per_node = collections.Counter(where.split("/")[0] for where, _, _ in results)
    per_endpoint = collections.Counter(where for where, _, _ in results)
    details = [f"{n} concurrent {model} tasks over {slots} slots on {holders} nodes"]
    details += [f"{where}: {count} tasks" for where, count in sorted(per_endpoint.items())]
    if len(per_node) < 2:
        raise CheckFailed(
            f"all {n} concurrent tasks went to {next(iter(per_node))} although "
            f"{holders} healthy nodes serve {model}",
            details,
        )
    return CheckResult(
        "load_balancing",
        "pass",
        f"{n} concurrent tasks spread over {len(per_node)} nodes, {len(per_endpoint)} endpoints",
        details,
    )


async def check_performance(s: Session) -> CheckResult:
    """Task assignment is fast on an idle cluster (the seed's <500 ms) and the cluster
    reports performance metrics (GetPerformanceMetrics, else Prometheus /metrics)."""
    model, holders = await _pick_model(s)
    if holders == 0:
        raise CheckFailed(f"no healthy node serves {model}")
    try:
        runs = [await _one_task(s, model, common_pb2.TASK_TYPE_INFERENCE, i) for i in range(3)]
    except grpc.aio.AioRpcError as err:
        raise CheckFailed(f"a task failed: {err.code().name} {err.details()}") from None
    assignment = statistics.median(r[1] for r in runs)
    tps = statistics.median(r[2] for r in runs)
    details = [
        f"assignment latency (median of 3 sequential tasks): {assignment * 1000:.0f} ms",
        f"decode speed (median): {tps:.1f} tokens/s",
    ]
    details += await _performance_source(s)
    if assignment > s.target.max_assignment_seconds:
        raise CheckFailed(
            f"task assignment took {assignment * 1000:.0f} ms on an idle cluster; the target "
            f"is {s.target.max_assignment_seconds * 1000:.0f} ms",
            details,
        )
    return CheckResult(
        "performance",
        "pass",
        f"assignment {assignment * 1000:.0f} ms, {tps:.1f} tokens/s",
        details,
    )


async def _performance_source(s: Session) -> list[str]:
    try:
        perf = await s.cluster.GetPerformanceMetrics(
            cluster_pb2.GetPerformanceMetricsRequest(), timeout=10
        )
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise CheckFailed(
                f"GetPerformanceMetrics answered {err.code().name}: {err.details()}"
            ) from None
        note = f"GetPerformanceMetrics: UNIMPLEMENTED ({err.details()}); read /metrics instead"
    else:
        if perf.tasks_succeeded == 0:
            raise CheckFailed("GetPerformanceMetrics counts no succeeded task after 3 ran")
        return [
            f"GetPerformanceMetrics: {perf.tasks_succeeded} tasks succeeded, "
            f"{perf.tasks_failed} failed, {perf.tokens_per_second:.1f} tokens/s, "
            f"utilisation {perf.utilization_percent:.0f}%"
        ]
    if not s.target.metrics_url:
        raise CheckFailed(
            "no performance data: GetPerformanceMetrics is UNIMPLEMENTED and no --metrics-url"
        )
    try:
        r = await s.http.get(s.target.metrics_url, timeout=10)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        raise CheckFailed(f"{s.target.metrics_url} unreachable: {exc!r}", [note]) from None
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }
    succeeded = sum(
        v
        for (name, labels), v in samples.items()
        if name == "hive_tasks_total" and ("state", "succeeded") in labels
    )
    count = sum(
        v for (n, _), v in samples.items() if n == "hive_task_assignment_latency_seconds_count"
    )
    total = sum(
        v for (n, _), v in samples.items() if n == "hive_task_assignment_latency_seconds_sum"
    )
    tokens = sum(v for (n, _), v in samples.items() if n == "hive_generated_tokens_total")
    if succeeded == 0 or count == 0:
        raise CheckFailed(f"{s.target.metrics_url} counts no finished task after 3 ran", [note])
    return [
        note,
        f"/metrics: {succeeded:.0f} tasks succeeded, {count:.0f} assignments "
        f"(mean {1000 * total / count:.1f} ms), {tokens:.0f} tokens generated",
    ]


async def check_multi_gpu(s: Session) -> CheckResult:
    """Every GPU reports telemetry; under load more than one GPU holds a model, and a model
    on a multi-GPU Ollama endpoint is spread over all of that endpoint's GPUs."""
    status = await s.status()
    gpus = [(n.info.name, g.index) for n in status.nodes if _healthy(n) for g in n.info.gpus]
    if not gpus:
        raise CheckFailed("no healthy node reports a GPU")
    model, holders = await _pick_model(s)
    if holders:
        try:
            await _burst(s, model, 8)
        except grpc.aio.AioRpcError as err:
            raise CheckFailed(f"a task failed: {err.code().name} {err.details()}") from None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        problems, details, in_use = _gpu_view(await s.status())
        if (not problems and (in_use >= 2 or len(gpus) < 2)) or loop.time() > deadline:
            break
        await asyncio.sleep(0.25)
    if problems:
        raise CheckFailed("; ".join(problems), details)
    if len(gpus) >= 2 and in_use < 2:
        raise CheckFailed(f"only {in_use} of {len(gpus)} GPUs hold a model under load", details)
    return CheckResult(
        "multi_gpu", "pass", f"{in_use} of {len(gpus)} GPUs hold models under load", details
    )


def _gpu_view(status: cluster_pb2.GetClusterStatusResponse) -> tuple[list[str], list[str], int]:
    problems, details, in_use = [], [], 0
    for node in status.nodes:
        if not _healthy(node):
            continue
        samples = {g.index: g for g in node.telemetry.gpus}
        for gpu in node.info.gpus:
            sample = samples.get(gpu.index)
            if sample is None:
                problems.append(f"{node.info.name} GPU {gpu.index} ({gpu.name}) sends no telemetry")
                continue
            in_use += sample.memory_used_bytes > 0
            details.append(
                f"{node.info.name} GPU {gpu.index} {gpu.name}: "
                f"{sample.memory_used_bytes / 2**30:.1f}/{gpu.memory_total_bytes / 2**30:.0f} GiB, "
                f"{sample.utilization_percent:.0f}%, {sample.temperature_celsius:.0f} C"
            )
        loaded = {e.id: e for e in node.telemetry.endpoints}
        for endpoint in node.info.endpoints:
            if len(endpoint.gpu_indices) < 2:
                continue
            tel = loaded.get(endpoint.id)
            if tel is None or not tel.loaded_models:
                details.append(f"{node.info.name}/{endpoint.id}: multi-GPU endpoint, idle")
                continue
            empty = [
                i
                for i in endpoint.gpu_indices
                if i in samples and samples[i].memory_used_bytes == 0
            ]
            names = ", ".join(m.name for m in tel.loaded_models)
            if empty:
                problems.append(
                    f"{node.info.name}/{endpoint.id} has {names} loaded but GPUs {empty} of "
                    f"{list(endpoint.gpu_indices)} hold nothing: the model is not split"
                )
            else:
                details.append(
                    f"{node.info.name}/{endpoint.id}: {names} "
                    f"across GPUs {list(endpoint.gpu_indices)}"
                )
    return problems, details, in_use


CHECK_FUNCTIONS: dict[str, Check] = {
    "health": check_health,
    "connectivity": check_connectivity,
    "workflow": check_workflow,
    "load_balancing": check_load_balancing,
    "performance": check_performance,
    "multi_gpu": check_multi_gpu,
}


async def _run_one(name: str, s: Session) -> CheckResult:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(s.target.timeout + 30):
            result = await CHECK_FUNCTIONS[name](s)
    except CheckFailed as exc:
        result = CheckResult(name, "fail", exc.reason, exc.details)
    except CheckSkipped as exc:
        result = CheckResult(name, "skip", str(exc))
    except TimeoutError:
        result = CheckResult(name, "fail", f"did not finish within {s.target.timeout + 30:.0f}s")
    except grpc.aio.AioRpcError as err:
        result = CheckResult(name, "fail", f"{err.code().name}: {err.details()}")
    result.seconds = time.perf_counter() - start
    return result


def reachable(bound: str, dialled: str) -> str:
    """The address a client uses for a server the coordinator bound at ``bound``
    (``host:port``): ``bound`` itself, but a wildcard host (every interface: ``0.0.0.0``,
    ``[::]``) becomes the host the client reached the coordinator at (``dialled``, the
    first of a list)."""
    host, _, port = bound.rpartition(":")
    if host.strip("[]") not in WILDCARD_HOSTS:
        return bound
    dialled_host = dialled.split(",")[0].strip().rpartition(":")[0]
    return f"{dialled_host or '127.0.0.1'}:{port}"


async def metrics_url_of(channel: grpc.aio.Channel, dialled: str) -> str | None:
    """The coordinator's /metrics URL as it reports it (GetClusterStatus's
    metrics_address); None when it serves none (metrics_listen: off) or does not say."""
    status = await cluster_pb2_grpc.ClusterServiceStub(channel).GetClusterStatus(
        cluster_pb2.GetClusterStatusRequest(), timeout=10
    )
    if not status.metrics_address:
        return None
    return f"http://{reachable(status.metrics_address, dialled)}/metrics"


async def run_checks(target: Target, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (all, in order, by default) against ``target``; with
    ``metrics_from_coordinator``, first ask the coordinator where its /metrics is (the
    resolved URL is left in ``target.metrics_url``)."""
    names = names or list(CHECK_FUNCTIONS)
    async with (
        client_channel(target.coordinator) as channel,
        httpx.AsyncClient() as http,
    ):
        if target.metrics_from_coordinator:
            # An unreachable coordinator leaves it None: the health check says why.
            with contextlib.suppress(grpc.aio.AioRpcError):
                target.metrics_url = await metrics_url_of(channel, target.coordinator)
            target.metrics_from_coordinator = False
        session = Session(target, channel, http)
        return [await _run_one(name, session) for name in names]


def render_report(target: Target, results: list[CheckResult]) -> str:
    """The Markdown report of ``--output``."""
    failed = sum(r.failed for r in results)
    lines = [
        "# Hive cluster check",
        "",
        f"- coordinator: `{target.coordinator}`",
        f"- gateway: `{target.gateway or 'not checked'}`",
        f"- metrics: `{target.metrics_url or 'not checked'}`",
        f"- run at: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"- result: **{'FAILED' if failed else 'PASSED'}** "
        f"({len(results) - failed}/{len(results)} checks did not fail)",
        "",
        "| check | result | seconds | summary |",
        "|---|---|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.status.upper()} | {r.seconds:.2f} | {_cell(r.reason)} |")
    for r in results:
        lines += ["", f"## {r.name}: {r.status.upper()}", "", r.reason]
        if r.details:
            lines.append("")
            lines += [f"- {d}" for d in r.details]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- CLI ----------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    target = Target(
        coordinator=args.coordinator,
        gateway=None if args.gateway in ("", "none", "off") else args.gateway,
        metrics_url=None if args.metrics_url in ("", "none", "off") else args.metrics_url,
        metrics_from_coordinator=not args.metrics_url,
        model=args.model,
        timeout=args.timeout,
        max_assignment_seconds=args.max_assignment_ms / 1000,
    )
    names = [args.single_test] if args.single_test else None
    results = asyncio.run(run_checks(target, names))
    # With --json, stdout holds the JSON alone; the report's line goes to stderr.
    out = sys.stderr if args.json else sys.stdout
    if args.json:
        print(json.dumps(check_json(target, results), indent=2))
    else:
        for r in results:
            mark = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[r.status]
            print(f"{mark:<5} {r.name:<15} {r.reason}  ({r.seconds:.2f}s)", flush=True)
    if args.output:
        Path(args.output).write_text(render_report(target, results))
        print(f"report written to {args.output}", file=out)
    return 1 if any(r.failed for r in results) else 0


def check_json(target: Target, results: list[CheckResult]) -> dict[str, object]:
    """``hive check --json``: what was checked and each check's verdict."""
    return {
        "coordinator": target.coordinator,
        "gateway": target.gateway,
        "metrics_url": target.metrics_url,
        "passed": not any(r.failed for r in results),
        "checks": [dataclasses.asdict(r) for r in results],
    }


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the gRPC server at --coordinator (or the deprecated positional address)
    says it is serving, or when --http URL answers 200."""
    if args.address and args.coordinator and args.address != args.coordinator:
        print(
            f"hive health: two addresses, {args.address} and --coordinator {args.coordinator}: "
            "give one (--coordinator; the positional address is deprecated)",
            file=sys.stderr,
        )
        return 2
    address = args.coordinator or args.address or coordinator_default()

    def report(target: str, healthy: bool, shown: str, **answer: object) -> int:
        if args.json:
            print(json.dumps({"target": target, "healthy": healthy, **answer}, indent=2))
        else:
            print(f"{target}: {shown}")
        return 0 if healthy else 1

    async def grpc_probe() -> int:
        async with client_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        return report(address, serving, name, status=name.lower(), detail="")

    if args.http:
        try:
            r = httpx.get(args.http, timeout=args.timeout)
        except httpx.HTTPError as exc:
            return report(args.http, False, repr(exc), status_code=None, detail=repr(exc))
        return report(
            args.http,
            r.status_code == 200,
            str(r.status_code),
            status_code=r.status_code,
            detail="",
        )
    try:
        return asyncio.run(grpc_probe())
    except grpc.aio.AioRpcError as err:
        name = err.code().name
        shown = f"{name} {err.details()}"
        return report(address, False, shown, status=name.lower(), detail=err.details() or "")


def coordinator_default() -> str:
    return os.environ.get(ENV_COORDINATOR) or DEFAULT_COORDINATOR


def gateway_default() -> str:
    return os.environ.get(ENV_GATEWAY) or DEFAULT_GATEWAY


COORDINATOR_HELP = (
    f"coordinator gRPC host:port (default ${ENV_COORDINATOR} or {DEFAULT_COORDINATOR})"
)
GATEWAY_HELP = f"gateway base URL (default ${ENV_GATEWAY} or {DEFAULT_GATEWAY})"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="check a running cluster end to end (the seed's test script)",
        description="Checks: " + ", ".join(CHECK_FUNCTIONS) + ". Exit status 1 if any fails.",
    )
    p.add_argument("--coordinator", default=coordinator_default(), help=COORDINATOR_HELP)
    p.add_argument(
        "--gateway", default=gateway_default(), help=GATEWAY_HELP + "; 'none' to skip it"
    )
    p.add_argument(
        "--metrics-url",
        default="",
        help="coordinator /metrics URL (default: where the coordinator says it serves it, "
        "GetClusterStatus's metrics_address); 'none' to skip it",
    )
    p.add_argument(
        "--json", action="store_true", help="the verdicts as JSON (passed, and each check's)"
    )
    p.add_argument("--single-test", choices=list(CHECK_FUNCTIONS), help="run one check only")
    p.add_argument("--output", help="write a Markdown report here")
    p.add_argument("--model", help="model for the load checks (default: the most served)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per check")
    p.add_argument(
        "--max-assignment-ms",
        type=float,
        default=MAX_ASSIGNMENT_SECONDS * 1000,
        help="slowest acceptable task assignment on an idle cluster",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("health", help="probe one server's health (for container health checks)")
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="the gRPC server to probe (a coordinator's, an agent's); "
        f"default ${ENV_COORDINATOR} or {DEFAULT_COORDINATOR}",
    )
    p.add_argument(
        "address",
        nargs="?",
        default="",
        help="deprecated: the same as --coordinator (kept for existing health checks)",
    )
    p.add_argument("--json", action="store_true", help="the answer as JSON")
    p.add_argument("--service", default="", help="gRPC service name ('' = the whole server)")
    p.add_argument("--http", help="probe this HTTP URL instead (200 = healthy)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_health)
