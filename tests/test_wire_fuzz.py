"""Hostile input on the wire: malformed, truncated and random payloads to every gRPC method
of every service on the coordinator and an agent, and random bodies to every REST path
of the gateway. Nothing may crash, nothing may answer as a server fault (UNKNOWN,
INTERNAL, DATA_LOSS; HTTP 5xx), and the cluster must keep serving afterwards."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from fastapi.routing import APIRoute
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from hive.cli.dev import DevCluster
from hive.v1 import (
    agent_session_pb2,
    cluster_pb2,
    cluster_pb2_grpc,
    enrollment_pb2,
    inference_pb2,
    node_agent_pb2,
    workflow_pb2,
)
from tests.conftest import fast_cluster

SERVER_FAULTS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
FILES = [
    agent_session_pb2,
    cluster_pb2,
    enrollment_pb2,
    inference_pb2,
    node_agent_pb2,
    workflow_pb2,
    health_pb2,
    reflection_pb2,
]


def methods(service_names: set[str]) -> list[tuple[str, object]]:
    out = []
    for module in FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in service_names:
                out.extend((f"/{service.full_name}/{m.name}", m) for m in service.methods)
    return out


def payloads(method: object, rng: random.Random) -> list[bytes]:
    """Random bytes, bytes that are not protobuf, and truncated valid messages."""
    sample = GetMessageClass(method.input_type)()  # type: ignore[attr-defined]
    for field in sample.DESCRIPTOR.fields:
        if field.type == field.TYPE_STRING and not field.is_repeated:
            setattr(sample, field.name, "x" * 40)
    valid = sample.SerializeToString()
    out = [b"\xff\xff\xff\xff\x0f", b"\x0a\xff\x01", bytes([0x0A, 0x50]) + b"short"]
    out += [valid[: len(valid) // 2], valid[:-1]] if len(valid) > 2 else []
    out += [rng.randbytes(rng.randint(1, 64)) for _ in range(4)]
    return out


async def call(ch: grpc.aio.Channel, name: str, method: object, payload: bytes) -> None:
    ident = lambda b: b  # noqa: E731
    client_stream = method.client_streaming  # type: ignore[attr-defined]
    server_stream = method.server_streaming  # type: ignore[attr-defined]

    async def requests() -> AsyncIterator[bytes]:
        yield payload

    if not client_stream and not server_stream:
        await ch.unary_unary(name, ident, ident)(payload, timeout=2)
    elif not client_stream:
        async for _ in ch.unary_stream(name, ident, ident)(payload, timeout=0.5):
            pass
    elif not server_stream:
        await ch.stream_unary(name, ident, ident)(requests(), timeout=2)
    else:
        async for _ in ch.stream_stream(name, ident, ident)(requests(), timeout=0.5):
            pass


async def test_garbage_to_every_grpc_method_is_a_client_error(dev: DevCluster) -> None:
    rng = random.Random(1234)
    agent = dev.agents["WALNUT"]
    targets = [
        (
            dev.coordinator_address,
            {
                "hive.v1.AgentSessionService",
                "hive.v1.ClusterService",
                "hive.v1.WorkflowService",
                "hive.v1.InferenceService",
                "hive.v1.AccessService",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            },
        ),
        (
            agent.address,
            {
                "hive.v1.NodeAgentService",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            },
        ),
    ]
    faults = []
    tried = 0
    for address, services in targets:
        found = methods(services)
        assert len(found) >= (5 if "hive.v1.NodeAgentService" in services else 20)
        async with grpc.aio.insecure_channel(address) as ch:
            for name, method in found:
                for payload in payloads(method, rng):
                    tried += 1
                    try:
                        await call(ch, name, method, payload)
                    except grpc.aio.AioRpcError as err:
                        if err.code() in SERVER_FAULTS:
                            faults.append(f"{name} {payload[:16]!r}: {err.code().name}")
    assert not faults, "\n".join(faults)
    assert tried > 200
    # Everything still up and serving.
    async with grpc.aio.insecure_channel(dev.coordinator_address) as ch:
        status = await cluster_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest(), timeout=5
        )
    assert status.summary.nodes_healthy == 5


async def test_undecodable_request_is_invalid_argument(dev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ch.unary_unary("/hive.v1.WorkflowService/GetWorkflow", lambda b: b, lambda b: b)(
                b"\xff\xff\xff\xff\x0f", timeout=2
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def gw() -> AsyncIterator[DevCluster]:
    cluster = DevCluster(
        fast_cluster(), coordinator_listen="127.0.0.1:0", gateway_port=0, time_scale=0.0
    )
    try:
        await cluster.start()
        await cluster.wait_registered(timeout=10)
        yield cluster
    finally:
        await cluster.stop()


async def test_random_bodies_to_every_rest_path(gw: DevCluster) -> None:
    from gateway.app import create_app

    assert gw.gateway is not None
    rng = random.Random(99)
    app = create_app(gw.coordinator_address)
    bodies: list[tuple[bytes, str]] = [
        (b"", "application/json"),
        (b"{", "application/json"),
        (b"[]", "application/json"),
        (b'{"model": 1, "prompt": {"a": []}, "messages": "x"}', "application/json"),
        (b'{"requirements": "' + b"x" * 5000 + b'"}', "application/json"),
        (b"\x00\xff" * 50, "application/octet-stream"),
        (b"a=b&c=d", "application/x-www-form-urlencoded"),
        (b'{"a":' * 500 + b"1" + b"}" * 500, "application/json"),
    ]
    bodies += [(rng.randbytes(rng.randint(1, 200)), "application/json") for _ in range(3)]
    faults = []
    async with httpx.AsyncClient(base_url=gw.gateway.url, timeout=10) as http:
        for route in app.routes:
            if not isinstance(route, APIRoute):
                continue
            path = (
                route.path.replace("{workflow_id}", "wf-%00-nope").replace("{", "").replace("}", "")
            )
            for method in route.methods:
                for body, ctype in bodies:
                    r = await http.request(
                        method, path, content=body, headers={"content-type": ctype}
                    )
                    if r.status_code >= 500 and r.status_code != 501:
                        faults.append(f"{method} {path} {body[:20]!r}: {r.status_code} {r.text}")
        assert (await http.get("/health")).status_code == 200
    assert not faults, "\n".join(faults[:20])
