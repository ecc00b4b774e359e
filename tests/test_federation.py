"""Federation: two whole Hive clusters, each a node of the other through the other's
gateway, with requests that would otherwise go round in circles."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import ollama
import pytest
from rich.console import Console

from coordinator.server import default_cluster_name
from hive import pki
from hive.cli import main as cli_main
from hive.cli import render_decision, render_status
from hive.cli.dev import DevCluster
from hive.config import (
    CLUSTER_NAME,
    AgentConfig,
    AuthSettings,
    ConfigError,
    EndpointSpec,
    GpuSpec,
    NodeSpec,
    parse_cluster_config,
)
from hive.federation import VIA_HEADER
from hive.hardware import GB
from hive.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from node_agent.agent import Agent
from node_agent.endpoints import LocalEndpoint
from node_agent.ollama import OllamaClient, OllamaError
from node_agent.service import _abort_for
from tests.conftest import FAST, eventually, fast_cluster, running_dev

MODEL = "qwen2.5-coder:7b"


@contextlib.asynccontextmanager
async def peer_node(
    cluster: DevCluster,
    name: str,
    peer: DevCluster,
    token_file: Path | None = None,
    ca_file: Path | None = None,
) -> AsyncIterator[Agent]:
    """A node of ``cluster`` whose one "Ollama" is ``peer``'s gateway, as an operator would
    run `hive agent` with the peer's gateway URL as the endpoint's url."""
    assert peer.gateway is not None
    agent = Agent(
        AgentConfig(
            source="test",
            coordinator=cluster.coordinator_address,
            node=NodeSpec(
                name=name,
                gpus=(GpuSpec("NVIDIA GeForce RTX 4090", "nvidia", 24 * GB),),
                endpoints=(
                    EndpointSpec(
                        id="hive",
                        gpus=(0,),
                        num_parallel=8,
                        url=peer.gateway.url,
                        token_file=str(token_file) if token_file else None,
                        ca_file=str(ca_file) if ca_file else None,
                    ),
                ),
            ),
            listen="127.0.0.1:0",
            telemetry="none",
            metrics_listen="off",
            heartbeat_interval_seconds=0.1,
        )
    )
    await agent.start()
    try:
        await agent.connected.wait()
        yield agent
    finally:
        await agent.stop(grace=0)


def served(cluster: DevCluster) -> int:
    """Generate and chat requests the cluster's own emulated Ollama servers received."""
    return sum(e.stats.requests_total for e in cluster.emulators.values())


async def drain_all(cluster: DevCluster) -> None:
    """Drain the cluster's own nodes, as `hive drain` does."""
    async with grpc.aio.insecure_channel(cluster.coordinator_address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        for node in cluster.cluster.nodes:
            await stub.DrainNode(cluster_pb2.DrainNodeRequest(node=node.name, drain=True))


async def runs_on_peer(a: DevCluster, b: DevCluster) -> None:
    """With A's own nodes drained, a generate at A's gateway is served by B's nodes."""
    assert a.gateway is not None
    await drain_all(a)
    before = served(b)
    async with httpx.AsyncClient(base_url=a.gateway.url, timeout=30) as http:
        r = await http.post("/api/generate", json={"model": MODEL, "prompt": "hi"})
    assert r.status_code == 200, r.text
    assert served(b) == before + 1


@pytest.mark.asyncio
async def test_two_clusters_serve_each_other_and_never_loop(tmp_path: Path) -> None:
    async with (
        running_dev(gateway_port=0, state_path=str(tmp_path / "a.sqlite")) as a,
        running_dev(gateway_port=0, state_path=str(tmp_path / "b.sqlite")) as b,
        peer_node(a, "LAB-B", b),
        peer_node(b, "LAB-A", a),
    ):
        assert a.coordinator is not None and b.coordinator is not None
        assert a.gateway is not None and b.gateway is not None
        name_a, name_b = a.coordinator.cluster_name, b.coordinator.cluster_name
        assert name_a != name_b and name_a.endswith(f":{a.coordinator.port}")
        async with httpx.AsyncClient(base_url=a.gateway.url, timeout=30) as http:
            # A's gateway names its cluster; B's agent learns that its endpoint leads there.
            version = (await http.get("/api/version")).json()
            assert version["hive_cluster"] == name_a and version["version"]

            def leads_to(cluster: DevCluster, node: str) -> str:
                assert cluster.coordinator is not None
                (endpoint,) = cluster.coordinator.registry.get(node).info.endpoints
                return endpoint.hive_cluster

            await eventually(lambda: leads_to(b, "LAB-A") == name_a, what="LAB-A leads to A")
            await eventually(lambda: leads_to(a, "LAB-B") == name_b, what="LAB-B leads to B")
            async with grpc.aio.insecure_channel(a.coordinator_address) as channel:
                status = await cluster_pb2_grpc.ClusterServiceStub(channel).GetClusterStatus(
                    cluster_pb2.GetClusterStatusRequest()
                )
            assert status.cluster_name == name_a
            # Unload, pull and delete act on this cluster's own endpoints; the peer's models
            # are its own to manage.
            async with grpc.aio.insecure_channel(a.coordinator_address) as channel:
                unloaded = await inference_pb2_grpc.InferenceServiceStub(channel).Unload(
                    inference_pb2.UnloadRequest(model=MODEL)
                )
            assert unloaded.unloaded_from and not unloaded.failed
            assert not [w for w in unloaded.unloaded_from if w.startswith("LAB-B/")]
            console = Console(record=True, width=200)
            render_status(status, console)
            shown = console.export_text()
            assert f"Hive cluster {name_a}" in shown and f"hive (Hive cluster {name_b})" in shown
            rest = (await http.get("/api/distributed/cluster/status")).json()
            assert rest["cluster_name"] == name_a
            (peer,) = [n for n in rest["nodes"] if n["name"] == "LAB-B"]
            assert [e["hive_cluster"] for e in peer["endpoints"]] == [name_b]

            # A model only B has (pulled onto one of B's hosts) is served to A's users
            # through LAB-B; a request that came from B for it finds no way but back.
            only_b = "gemma2:9b"
            pulled = await ollama.AsyncClient(host=b.emulators["ACACIA/gpu0"].url).pull(only_b)
            assert pulled.status == "success"

            def has(cluster: DevCluster, node: str) -> bool:
                assert cluster.coordinator is not None
                endpoints = cluster.coordinator.registry.get(node).info.endpoints
                return any(m.name == only_b for e in endpoints for m in e.models)

            await eventually(lambda: has(a, "LAB-B"), timeout=20, what="A learns B's model")
            before_a, before_b = served(a), served(b)
            r = await http.post("/api/generate", json={"model": only_b, "prompt": "hi"})
            assert r.status_code == 200, r.text
            assert served(b) == before_b + 1 and served(a) == before_a
            r = await http.post(
                "/api/generate",
                json={"model": only_b, "prompt": "hi"},
                headers={VIA_HEADER: name_b},
            )
            assert r.status_code == 409, r.text
            assert r.json()["error"] == (
                f"every endpoint with model '{only_b}' leads to a Hive cluster this request "
                f"has already passed through (via {name_b} -> {name_a}); sending it there "
                "would loop"
            )

            # With A's own nodes drained, A's request runs on B's nodes through LAB-B.
            await drain_all(a)
            before_a, before_b = served(a), served(b)
            body = {"model": MODEL, "prompt": "hello", "stream": False}
            r = await http.post("/api/generate", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["done"] and r.json()["eval_count"] > 0
            assert served(b) == before_b + 1 and served(a) == before_a
            task = list(b.coordinator.dispatcher.tasks.values())[-1]
            assert task.placements[-1].node != "LAB-A"  # B did not send it back to A
            assert task.via == (name_a, name_b)
            async with grpc.aio.insecure_channel(b.coordinator_address) as channel:
                explained = await cluster_pb2_grpc.ClusterServiceStub(channel).ExplainTask(
                    cluster_pb2.ExplainTaskRequest(task_id=task.task_id)
                )
            console = Console(record=True, width=200)
            render_decision(explained, console)
            shown = console.export_text()
            assert f"came from another Hive cluster: via {name_a} -> {name_b}" in shown
            assert f"LAB-A/hive: routing_loop (leads to Hive cluster '{name_a}'" in shown

            # A workflow's stages leave A with A in their route too.
            def from_a() -> int:
                assert b.coordinator is not None
                tasks = b.coordinator.dispatcher.tasks.values()
                return sum(t.via == (name_a, name_b) for t in tasks)

            before = from_a()
            async with grpc.aio.insecure_channel(a.coordinator_address) as channel:
                submitted = await workflow_pb2_grpc.WorkflowServiceStub(channel).SubmitWorkflow(
                    workflow_pb2.SubmitWorkflowRequest(
                        name="federated", requirements="Add two numbers", pipeline="quick"
                    )
                )
            assert submitted.workflow.id
            await eventually(lambda: from_a() > before, timeout=20, what="A's stage on B")

            async def workflow_done() -> bool:
                async with grpc.aio.insecure_channel(a.coordinator_address) as channel:
                    got = await workflow_pb2_grpc.WorkflowServiceStub(channel).GetWorkflow(
                        workflow_pb2.GetWorkflowRequest(id=submitted.workflow.id)
                    )
                return got.workflow.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED

            await eventually(workflow_done, timeout=30, what="the workflow, run on B, succeeds")

            # B's nodes drained too: the only way left from B is back to A, and B says so
            # instead of sending the request round again.
            await drain_all(b)
            before_a, before_b = served(a), served(b)
            r = await http.post("/api/generate", json=body)
            # B answers LAB-B 503, and so does A (an Ollama's 503, "queue full", is a 429).
            assert r.status_code == 503, r.text
            assert (
                "leads to a Hive cluster this request has already passed through"
                in (r.json()["error"])
            )
            assert served(a) == before_a and served(b) == before_b

            # One that has been through A already is a loop, refused before routing.
            r = await http.post(
                "/api/chat",
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                headers={VIA_HEADER: f"{name_b}, {name_a}"},
            )
            assert r.status_code == 409, r.text
            assert r.json()["error"].startswith(
                f"routing loop: this request has already passed through Hive cluster '{name_a}'"
            )
            r = await http.post(
                "/api/embed",
                json={"model": "nomic-embed-text", "input": "x"},
                headers={VIA_HEADER: "not a name!"},
            )
            assert r.status_code == 400 and "not a cluster name" in r.json()["error"], r.text


def test_a_cluster_is_named_in_its_file_or_by_its_host_and_port() -> None:
    def named(name: object) -> str:
        cluster = parse_cluster_config({"coordinator": {"name": name}}, "cluster.yaml")
        return cluster.coordinator.name

    assert named("lab-a") == "lab-a" and named("gpu1.lab:50051") == "gpu1.lab:50051"
    assert parse_cluster_config({}, "cluster.yaml").coordinator.name == ""  # host:port
    for bad in ("two words", "a,b", "", "-lead"):
        with pytest.raises(ConfigError, match=r"coordinator\.name"):
            named(bad)


@pytest.mark.asyncio
async def test_a_peer_with_api_tokens_is_reached_with_a_token_file(tmp_path: Path) -> None:
    guarded = dataclasses.replace(
        fast_cluster(), coordinator=dataclasses.replace(FAST, auth=AuthSettings(api_tokens=True))
    )
    async with (
        running_dev(gateway_port=0, state_path=str(tmp_path / "a.sqlite")) as a,
        running_dev(cluster=guarded, gateway_port=0, state_path=str(tmp_path / "b.sqlite")) as b,
    ):
        assert a.gateway is not None and b.coordinator is not None
        async with peer_node(a, "LAB-B", b) as tokenless:
            endpoint = tokenless.endpoints["hive"]
            assert not endpoint.healthy and "API token" in endpoint.error, endpoint.error
        _, secret = await b.coordinator.access.create_api_token("lab a", "submit")
        token_file = tmp_path / "lab-b.token"
        token_file.write_text(secret + "\n")
        async with peer_node(a, "LAB-B", b, token_file) as agent:
            assert agent.endpoints["hive"].healthy
            await runs_on_peer(a, b)
        token_file.write_text("")
        with pytest.raises(ConfigError, match="the file is empty"):
            Agent(dataclasses.replace(agent.config))


def test_the_default_name_is_one_peers_accept() -> None:
    for host in ("gpu1.lab", "Mac Studio (2)", "-x-", "", "ü" * 300):
        name = default_cluster_name(host, 50051)
        assert CLUSTER_NAME.match(name) and name.endswith(":50051"), name
    assert default_cluster_name("gpu1.lab", 50051) == "gpu1.lab:50051"


@pytest.mark.asyncio
async def test_a_peer_gateway_over_https_is_checked_against_the_ca_file(tmp_path: Path) -> None:
    """`hive gateway --https-cert/--https-key` with a certificate of the peer's cluster CA;
    the agent's endpoint trusts that CA (ca_file), and nothing else."""
    tls = tmp_path / "tls"
    pki.init_dir(tls)
    cert = pki.issue_in_dir(tls, "gateway", ips=("127.0.0.1",))
    https = (str(cert.cert), str(cert.key))
    async with (
        running_dev(gateway_port=0, state_path=str(tmp_path / "a.sqlite")) as a,
        running_dev(
            gateway_port=0, gateway_https=https, state_path=str(tmp_path / "b.sqlite")
        ) as b,
    ):
        assert a.gateway is not None and b.gateway is not None
        assert b.gateway.url.startswith("https://127.0.0.1:")
        async with peer_node(a, "LAB-B", b) as unverified:
            endpoint = unverified.endpoints["hive"]
            assert not endpoint.healthy and "CERTIFICATE_VERIFY_FAILED" in endpoint.error
        async with peer_node(a, "LAB-B", b, ca_file=cert.ca) as agent:
            assert agent.endpoints["hive"].healthy
            await runs_on_peer(a, b)
        (tmp_path / "junk.pem").write_text("not a certificate")
        with pytest.raises(ConfigError, match="cannot load the CA"):
            peer = dataclasses.replace(
                agent.config.node.endpoints[0], ca_file=str(tmp_path / "junk.pem")
            )
            Agent(
                dataclasses.replace(
                    agent.config, node=dataclasses.replace(agent.config.node, endpoints=(peer,))
                )
            )


def test_the_gateway_wants_both_https_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["gateway", "--insecure", "--https-cert", "gw.pem"]) == 2
    assert "--https-cert and --https-key go together" in capsys.readouterr().err
    missing = str(tmp_path / "nope.pem")
    assert cli_main(["gateway", "--insecure", "--https-cert", missing, "--https-key", missing]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_a_client_leaving_cancels_the_request_on_the_peer(tmp_path: Path) -> None:
    """Ctrl-C at cluster A's gateway reaches the node of cluster B that runs the request:
    A cancels LAB-B's task, its agent closes the stream to B's gateway, and B cancels at
    its node's Ollama, freeing the slot."""
    async with (
        running_dev(gateway_port=0, state_path=str(tmp_path / "a.sqlite")) as a,
        running_dev(gateway_port=0, time_scale=0.2, state_path=str(tmp_path / "b.sqlite")) as b,
        peer_node(a, "LAB-B", b),
    ):
        assert a.gateway is not None
        await drain_all(a)
        emulators = list(b.emulators.values())
        body = {
            "model": "llama3.1:8b",
            "prompt": "tell a story",
            "options": {"num_predict": 4000, "ignore_eos": True},
        }
        async with httpx.AsyncClient(base_url=a.gateway.url, timeout=60) as http:
            async with http.stream("POST", "/api/generate", json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if '"response":"' in line and '"response":""' not in line:
                        break  # the first words of the answer: now go away
        await eventually(
            lambda: sum(e.stats.cancelled_total for e in emulators) == 1,
            timeout=10,
            what="the request cancelled at B's node",
        )
        await eventually(
            lambda: all(e.stats.active == 0 for e in emulators), timeout=10, what="slot freed"
        )


@pytest.mark.asyncio
async def test_a_503_is_busy_from_an_ollama_and_unavailable_from_a_peer() -> None:
    class Context:
        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise grpc.aio.AbortError(f"{code.name} {details}")

    spec = EndpointSpec(id="gpu0", gpus=(0,), url="http://127.0.0.1:9")
    ollama_endpoint = LocalEndpoint(spec, OllamaClient("http://127.0.0.1:9"))
    peer = LocalEndpoint(spec, OllamaClient("http://127.0.0.1:9"), hive_cluster="lab-b")
    busy = OllamaError(503, "server busy")
    context: Any = Context()
    with pytest.raises(grpc.aio.AbortError, match=r"^RESOURCE_EXHAUSTED ollama gpu0 \(503\)"):
        await _abort_for(context, ollama_endpoint, busy, grpc.StatusCode.INTERNAL)
    with pytest.raises(grpc.aio.AbortError, match=r"^UNAVAILABLE ollama gpu0 \(503\)"):
        await _abort_for(context, peer, busy, grpc.StatusCode.INTERNAL)
