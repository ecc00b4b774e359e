"""The gateway's live protocols against a real cluster: WebSocket events (workflow
stages in order, a node going away, a slow client dropped) and the MCP server through
the SDK's own client, over streamable HTTP and over stdio."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from websockets.asyncio.client import ClientConnection, connect

from coordinator.workflows.templates import parse_pipeline
from gateway.app import create_app
from gateway.events import CLOSE_TOO_SLOW
from hive.cli.dev import DevCluster
from tests.conftest import eventually, running_dev

pytestmark = pytest.mark.asyncio(loop_scope="module")

API = "/api/distributed"
REPO = str(Path(__file__).resolve().parent.parent)
WORKFLOW = {
    "name": "REST API with Microservices",
    "requirements": "Develop a REST API with microservices architecture.",
    "language": "python",
    "priority": "normal",
}
TOOLS = {
    "submit_workflow",
    "get_cluster_status",
    "get_performance_metrics",
    "optimize_cluster",
    "get_workflow",
    "cancel_workflow",
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevCluster]:
    state = tmp_path_factory.mktemp("live") / "hive-state.sqlite"
    async with running_dev(gateway_port=0, state_path=str(state)) as dev:
        yield dev


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def real_time() -> AsyncIterator[DevCluster]:
    """The cluster with emulated GPUs at their modelled speed, so answers take a while."""
    async with running_dev(gateway_port=0, time_scale=1.0) as dev:
        yield dev


def ws_url(dev: DevCluster) -> str:
    assert dev.gateway is not None
    return dev.gateway.url.replace("http://", "ws://") + f"{API}/ws"


async def subscribe(ws: ClientConnection, **subscription: Any) -> None:
    await ws.send(json.dumps({"subscribe": subscription}))
    while True:
        event = json.loads(await ws.recv())
        # The connection's default subscription is acknowledged first; wait for ours.
        if event["type"] == "subscribed" and all(
            event["subscription"][k] == v for k, v in subscription.items()
        ):
            return


async def next_event(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        event: dict[str, Any] = json.loads(await ws.recv())
        return event


# --- WebSocket -------------------------------------------------------------------


async def test_websocket_shows_a_workflows_stages_start_and_finish_in_order(
    gw: DevCluster,
) -> None:
    assert gw.gateway is not None
    async with httpx.AsyncClient(base_url=gw.gateway.url) as http:
        wf = (await http.post(f"{API}/workflows", json=WORKFLOW)).json()
    stages = [s["name"] for s in wf["stages"]]
    async with connect(ws_url(gw)) as ws:
        await subscribe(ws, cluster=False, workflow_id=wf["id"])
        seen: list[tuple[str, str]] = []
        while True:
            event = await next_event(ws)
            assert event.get("workflow_id") == wf["id"], event
            if event["type"] in ("stage_started", "stage_finished"):
                seen.append((event["type"], event["stage"]))
            if event["type"] == "workflow" and event["state"] == "succeeded":
                break
    # full pipeline is a chain: each stage starts after the previous one finished.
    expected = [(kind, s) for s in stages for kind in ("stage_started", "stage_finished")]
    assert seen == expected


async def test_websocket_filters_and_reports_a_node_going_away(gw: DevCluster) -> None:
    async with connect(ws_url(gw)) as ws:
        await subscribe(ws, events=["node_lost"])
        await gw.stop_node("ACACIA")
        try:
            event = await next_event(ws, timeout=5)
            assert event["type"] == "node_lost"
            assert event["node"]["name"] == "ACACIA" and event["node"]["state"] == "lost"
        finally:
            node = next(n for n in gw.cluster.nodes if n.name == "ACACIA")
            agent = await gw.start_node(node)
            await asyncio.wait_for(agent.connected.wait(), 5)
        # Re-subscribing replaces the filter: node_joined snapshots now come through.
        await subscribe(ws, events=["node_joined"])
        names = {(await next_event(ws))["node"]["name"] for _ in range(5)}
        assert names == {"IRONWOOD", "ROSEWOOD", "WALNUT", "ACACIA", "FORSTEINET"}


async def test_websocket_refuses_bad_subscriptions_and_keeps_the_connection(
    gw: DevCluster,
) -> None:
    async with connect(ws_url(gw)) as ws:
        await ws.send("not json")
        assert (await next_event(ws))["type"] in ("error", "node_joined")
        await ws.send(json.dumps({"subscribe": {"events": ["bogus"]}}))
        while (event := await next_event(ws))["type"] != "error" or "events" not in event["detail"]:
            pass
        assert event["status"] == 400
        await subscribe(ws, workflow_id="wf-nope", cluster=False)
        event = await next_event(ws)
        assert (event["type"], event["grpc_status"], event["workflow_id"]) == (
            "error",
            "NOT_FOUND",
            "wf-nope",
        )


async def test_slow_websocket_client_is_dropped_and_others_keep_receiving(
    gw: DevCluster,
) -> None:
    """A client that never reads fills its bounded queue and is closed with 1013, while a
    client on the same gateway keeps getting its telemetry ticks."""
    app = create_app(gw.coordinator_address, event_queue_size=8)
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    subscribe_msg = {"subscribe": {"telemetry": True}}
    await incoming.put({"type": "websocket.receive", "text": json.dumps(subscribe_msg)})
    closed: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    stuck = asyncio.Event()  # never set: the client's socket never drains

    async def receive() -> dict[str, Any]:
        return await incoming.get()

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await stuck.wait()
        elif message["type"] == "websocket.close" and not closed.done():
            closed.set_result(dict(message))

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": f"{API}/ws",
        "raw_path": f"{API}/ws".encode(),
        "query_string": b"",
        "headers": [],
        "subprotocols": [],
        "scheme": "ws",
        "server": ("127.0.0.1", 0),
        "client": ("127.0.0.1", 1),
    }
    async with connect(ws_url(gw)) as healthy:
        await subscribe(healthy, telemetry=True, events=["telemetry"])
        slow = asyncio.create_task(app(scope, receive, send))
        try:
            message = await asyncio.wait_for(closed, 10)
            assert message["code"] == CLOSE_TOO_SLOW
            await asyncio.wait_for(slow, 5)  # the handler ended, its streams cancelled
            ticks = [await next_event(healthy, timeout=5) for _ in range(10)]
            assert {t["type"] for t in ticks} == {"telemetry"}
        finally:
            slow.cancel()


# --- MCP ---------------------------------------------------------------------------


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def test_mcp_over_streamable_http(gw: DevCluster) -> None:
    assert gw.gateway is not None
    async with Client(gw.gateway.url + "/mcp") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) >= TOOLS
        schema = tools["submit_workflow"].input_schema
        assert set(schema["required"]) == {"name", "requirements"}
        assert schema["properties"]["priority"]["enum"] == ["low", "normal", "high"]

        status = await client.call_tool("get_cluster_status", {})
        assert not status.is_error
        assert status.structured_content["summary"]["nodes_total"] == 5
        assert status.structured_content["summary"]["gpus"] == 9

        submitted = await client.call_tool("submit_workflow", WORKFLOW)
        assert not submitted.is_error, submitted.content
        wf_id = submitted.structured_content["id"]
        got = await client.call_tool("get_workflow", {"workflow_id": wf_id})
        assert got.structured_content["name"] == WORKFLOW["name"]

        missing = await client.call_tool("cancel_workflow", {"workflow_id": "wf-nope"})
        assert missing.is_error and "NOT_FOUND" in missing.content[0].text  # type: ignore[union-attr]
        for name, args in (
            ("get_performance_metrics", {}),
            ("optimize_cluster", {"dry_run": True}),
        ):
            result = await client.call_tool(name, args)
            assert not result.is_error or "UNIMPLEMENTED" in result.content[0].text  # type: ignore[union-attr]

        bad = await client.call_tool("submit_workflow", {"name": "x"})
        assert bad.is_error  # requirements missing: refused by the input schema
        # A pipeline whose model is on no node: refused, naming it; or accepted to wait.
        assert schema["properties"]["wait_for_models"]["type"] == "boolean"
        assert gw.coordinator is not None
        gw.coordinator.workflows.pipelines.add(
            parse_pipeline(
                {
                    "name": "needs_phi4",
                    "stages": [
                        {"name": "draft", "type": "code_generation", "model": "phi4:14b"}
                        | {"prompt": "x"}
                    ],
                },
                "test",
            )
        )
        unservable = {**WORKFLOW, "pipeline": "needs_phi4"}
        refused = await client.call_tool("submit_workflow", unservable)
        text = refused.content[0].text  # type: ignore[union-attr]
        assert refused.is_error and "'draft'" in text and "'phi4:14b'" in text, text
        queued = await client.call_tool("submit_workflow", unservable | {"wait_for_models": True})
        assert not queued.is_error and queued.structured_content["wait_for_models"] is True
        await client.call_tool("cancel_workflow", {"workflow_id": queued.structured_content["id"]})

        resource = await client.read_resource("hive://cluster/status")
        assert (
            json.loads(getattr(resource.contents[0], "text", ""))["summary"]["nodes_healthy"] == 5
        )


async def test_mcp_over_stdio(gw: DevCluster) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hive.cli.gateway", "mcp", "--coordinator", gw.coordinator_address],
        cwd=REPO,
    )
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names >= TOOLS
        status = await client.call_tool("get_cluster_status", {})
        assert status.structured_content["summary"]["nodes_total"] == 5


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"prompt": "tell a story", "options": {"num_predict": 4000}}),
        ("/api/chat", {"messages": [{"role": "user", "content": "tell a story"}]}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "tell a story"}], "stream": True},
        ),
        (
            "/v1/messages",
            {
                "messages": [{"role": "user", "content": "tell a story"}],
                "max_tokens": 4000,
                "stream": True,
            },
        ),
        ("/v1/responses", {"input": "tell a story", "stream": True}),
    ],
)
async def test_a_client_that_goes_away_mid_stream_stops_the_node(
    real_time: DevCluster, path: str, body: dict[str, Any]
) -> None:
    """Ctrl-C in `ollama run`, a closed editor, an agent stopped: whatever API the client
    streamed through, the request at the node's Ollama is cancelled and its slot freed."""
    body = {**body, "model": "llama3.1:8b"}
    if "options" in body or path in ("/api/chat",):
        body["options"] = {"num_predict": 4000, "ignore_eos": True}
    assert real_time.gateway is not None
    emulators = list(real_time.emulators.values())

    def cancelled() -> int:
        return sum(e.stats.cancelled_total for e in emulators)

    before = cancelled()
    async with httpx.AsyncClient(base_url=real_time.gateway.url, timeout=30) as http:
        async with http.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if "delta" in line or '"response":"' in line or '"content":"' in line:
                    break  # the first words of the answer: now go away
    await eventually(
        lambda: cancelled() == before + 1, timeout=10, what="the node's request cancelled"
    )
    await eventually(
        lambda: all(e.stats.active == 0 for e in emulators), timeout=10, what="the slot freed"
    )
