"""`ollama pull` and `ollama rm` through the gateway, with the official `ollama` client,
race-free: a pull or a delete answers success only once the coordinator routes by the
new state, so the very next /api/tags and generate see it; a delete of a model that no
node has is Ollama's 404; a pull's progress announces its whole total (every endpoint's
bytes) from its first line, so a client's progress bar never jumps back.

The cluster heartbeats once a second, as `hive dev` does by default: a model list that
reached the coordinator only with the next heartbeat would be missed by the calls that
follow at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import ollama
import pytest
import pytest_asyncio

from coordinator.registry import Registry
from hive.cli.dev import DevCluster
from hive.config import CoordinatorSettings, EndpointSpec, seed_cluster
from hive.hardware import model_kind
from hive.v1 import agent_session_pb2, common_pb2, inference_pb2, inference_pb2_grpc
from node_agent.endpoints import LocalEndpoint
from tests.conftest import eventually, running_dev

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Heartbeats as `hive dev` sends them (once a second), liveness loose enough for it.
SLOW_BEATS = CoordinatorSettings(
    listen="127.0.0.1:0",
    heartbeat_interval_seconds=1.0,
    suspect_after_seconds=10.0,
    lost_after_seconds=15.0,
)
# On no endpoint of the seed cluster, so a pull acts on all of them.
MODEL = "gemma2:9b"
ROUNDS = 4


@pytest_asyncio.fixture(loop_scope="module")
async def cluster(tmp_path: Path) -> AsyncIterator[DevCluster]:
    async with running_dev(
        cluster=dataclasses.replace(seed_cluster(), coordinator=SLOW_BEATS),
        gateway_port=0,
        state_path=str(tmp_path / "hive-state.sqlite"),
    ) as dev:
        yield dev


def _client(dev: DevCluster) -> ollama.AsyncClient:
    assert dev.gateway is not None
    return ollama.AsyncClient(host=dev.gateway.url)


async def _listed(client: ollama.AsyncClient) -> set[str]:
    return {m.model for m in (await client.list()).models if m.model}


async def _where(dev: DevCluster, model: str) -> list[str]:
    """The endpoints ("NODE/endpoint") the coordinator routes ``model`` to."""
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await stub.ListModels(inference_pb2.ListModelsRequest())
    return next((list(m.endpoints) for m in reply.models if m.info.name == model), [])


async def _gone(dev: DevCluster, model: str) -> None:
    """Wait (polling) until no node lists ``model``: a round's clean slate, whatever the
    code under test answers."""

    async def gone() -> bool:
        return not await _where(dev, model)

    await eventually(gone, timeout=15, what=f"{model} gone from every node")


async def test_a_pulled_model_is_listed_and_served_at_once(cluster: DevCluster) -> None:
    """Round after round: pull reports success, and the next call lists the model and the
    one after generates with it, with no wait in between."""
    client = _client(cluster)
    for _ in range(ROUNDS):
        assert MODEL not in await _listed(client)
        assert (await client.pull(MODEL)).status == "success"
        assert MODEL in await _listed(client)
        reply = await client.generate(model=MODEL, prompt="Describe autumn leaves")
        assert reply.done and reply.response
        assert len(await _where(cluster, MODEL)) == len(cluster.emulators)
        # Remove it again for the next round (polling: that is the other test's subject).
        await client.delete(MODEL)
        await _gone(cluster, MODEL)


async def test_a_deleted_model_is_gone_at_once(cluster: DevCluster) -> None:
    """Round after round: once delete has answered, the model is not listed, a generate
    is Ollama's 404, and a second delete is a 404 in Ollama's shape (no node has it)."""
    client = _client(cluster)
    assert cluster.gateway is not None
    for _ in range(ROUNDS):
        await _pulled(cluster, client)
        assert (await client.delete(MODEL)).status == "success"
        assert MODEL not in await _listed(client)
        with pytest.raises(ollama.ResponseError) as generate:
            await client.generate(model=MODEL, prompt="Describe autumn leaves")
        assert generate.value.status_code == 404
        with pytest.raises(ollama.ResponseError) as again:
            await client.delete(MODEL)
        assert again.value.status_code == 404
        assert again.value.error == f"model '{MODEL}' not found"
        assert not await _where(cluster, MODEL)
    # The exact body, as Ollama answers it.
    async with httpx.AsyncClient(base_url=cluster.gateway.url) as http:
        r = await http.request("DELETE", "/api/delete", json={"model": MODEL})
        never = await http.request("DELETE", "/api/delete", json={"model": "nope:1b"})
    assert (r.status_code, r.json()) == (404, {"error": f"model '{MODEL}' not found"})
    assert (never.status_code, never.json()) == (404, {"error": "model 'nope:1b' not found"})


async def _pulled(dev: DevCluster, client: ollama.AsyncClient) -> None:
    """Pull MODEL onto every endpoint and wait (polling: that is the other test's subject)
    until the coordinator routes it there."""
    assert (await client.pull(MODEL)).status == "success"

    async def everywhere() -> bool:
        return len(await _where(dev, MODEL)) == len(dev.emulators) and MODEL in await _listed(
            client
        )

    await eventually(everywhere, timeout=15, what=f"{MODEL} on every endpoint")


async def test_pull_progress_announces_the_whole_total_first(cluster: DevCluster) -> None:
    """Each layer's first progress line already carries the bytes of every endpoint being
    pulled to, and its total stays that to the end: a progress bar never jumps back."""
    client = _client(cluster)
    lacking = len(cluster.emulators) - len(await _where(cluster, MODEL))
    assert lacking > 1
    steps = [p async for p in await client.pull(MODEL, stream=True)]
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    layers = [p for p in steps if p.digest]
    assert layers
    whole = lacking * model_kind(MODEL).size_bytes
    for digest in {p.digest for p in layers}:
        totals = [p.total for p in layers if p.digest == digest]
        assert totals[0] == whole, f"first line's total {totals[0]}, not {whole}"
        assert set(totals) == {whole}, f"the total changed along the stream: {totals}"
        done = [p.completed or 0 for p in layers if p.digest == digest]
        assert done == sorted(done) and done[-1] == whole
    assert MODEL in await _listed(client)


async def test_the_registry_says_when_an_announcement_is_applied() -> None:
    """What the coordinator waits on before answering: the node's heartbeat of the seq its
    agent gave (or a later one) applied; a reconnecting agent counts on, a restarted one
    (a new process: Register.reconnects 0) reads its models afresh when it registers."""
    registry = Registry(time.monotonic, time.time, suspect_after=3, lost_after=6)
    endpoint = common_pb2.OllamaEndpoint(id="gpu0", url="http://127.0.0.1:1", num_parallel=1)
    info = common_pb2.NodeInfo(name="OAK", agent_address="127.0.0.1:1", endpoints=[endpoint])
    record = registry.attach(agent_session_pb2.Register(node=info), "peer")

    waiting = asyncio.create_task(registry.until(lambda: registry.announced("OAK", 5, record), 5))
    registry.heartbeat(record, agent_session_pb2.Heartbeat(seq=4))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    registry.heartbeat(record, agent_session_pb2.Heartbeat(seq=5))
    assert await waiting
    again = registry.attach(agent_session_pb2.Register(node=info, reconnects=1), "peer")
    assert not registry.announced("OAK", 6, record)
    registry.heartbeat(record, agent_session_pb2.Heartbeat(seq=6))  # superseded: ignored
    assert not registry.announced("OAK", 6, record)
    registry.heartbeat(again, agent_session_pb2.Heartbeat(seq=6))
    assert registry.announced("OAK", 6, record)
    registry.attach(agent_session_pb2.Register(node=info, reconnects=0), "peer")
    assert registry.announced("OAK", 9, record) and not registry.announced("ELM", 1, None)
    assert not await registry.until(lambda: False, 0.05)


async def test_a_refresh_that_asked_first_cannot_put_back_an_older_list() -> None:
    """The agent's heartbeat reads an endpoint's models while a removal is under way; the
    removal's own read, after it, must be what stays (and is announced), whichever of the
    two Ollama answers last."""
    gone = asyncio.Event()
    answers = [[{"name": MODEL}], []]

    class Ollama:
        url = "http://127.0.0.1:1"

        async def version(self) -> dict[str, str]:
            return {"version": "0.12.0"}

        async def tags(self) -> list[dict[str, str]]:
            answer = answers.pop(0)
            if answer:  # the heartbeat's read, asked before the removal, answered after it
                await gone.wait()
            return answer

        async def ps(self) -> list[dict[str, str]]:
            return []

        async def capabilities(self, model: str) -> list[str]:
            return ["completion"]

    endpoint = LocalEndpoint(EndpointSpec(id="gpu0", gpus=()), Ollama())  # type: ignore[arg-type]
    heartbeat = asyncio.create_task(endpoint.refresh(full=True))
    await asyncio.sleep(0.01)
    removal = asyncio.create_task(endpoint.refresh(full=True))
    await asyncio.sleep(0.01)
    gone.set()
    await asyncio.gather(heartbeat, removal)
    assert endpoint.models == []
