"""Clients that follow the leader among several coordinators (issue 18, item 3).

Standbys here are fakes: real gRPC servers on 127.0.0.1 port 0 that answer every call
UNAVAILABLE with ``hive-leader`` naming the leader, as a standby coordinator does; the
leader is the in-process DevCluster's real coordinator. A "dead" address is a port
that was bound and released, so nothing listens there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from coordinator.server import Coordinator
from gateway.app import create_app
from hive import cli
from hive.asgi import AsgiServer
from hive.cli.dev import DevCluster
from hive.config import AgentConfig
from hive.coordinators import (
    FAILOVER_POLL_SECONDS,
    LEADER_TRAILER,
    CoordinatorChannel,
    Entry,
    leader_named,
    parse_target,
    resolve,
)
from hive.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2, inference_pb2
from node_agent.agent import Agent
from tests.conftest import eventually, fast_cluster, running_dev

# --- parsing and resolving ------------------------------------------------------------


def test_a_target_is_a_list_of_host_ports() -> None:
    assert parse_target("a:50051, b.lan:1 ,[::1]:7,10.0.0.1:65535") == (
        Entry("a", 50051),
        Entry("b.lan", 1),
        Entry("::1", 7),
        Entry("10.0.0.1", 65535),
    )
    assert str(Entry("::1", 7)) == "[::1]:7"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("", "no coordinator given"),
        ("a:1,,b:2", "coordinator 2 of 'a:1,,b:2' is empty"),
        ("a:1,", "coordinator 2"),
        ("a", "has no port"),
        (":50051", "has no port"),
        ("a:http", "port 'http' is not a number"),
        ("a:0", "port '0'"),
        ("a:65536", "port '65536'"),
        ("::1:50051", "in brackets"),
        ("[nope]:1", "not an IPv6 address"),
        ("a b:1", "not a host name"),
    ],
)
def test_a_bad_target_is_refused_naming_the_entry(target: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("[", r"\[").replace("(", r"\(")):
        parse_target(target)


async def test_a_name_gives_all_its_addresses_and_is_resolved_again_each_round() -> None:
    """As Swarm's tasks.NAME: every A/AAAA record is a coordinator; a name that does not
    resolve (no replica yet) is skipped; a rescheduled replica's new address is found."""
    records = {"tasks.coordinator": ["10.0.0.5", "fd00::7"]}
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in records[host]]

    entries = parse_target("tasks.coordinator:50051,gone:50051,10.0.0.5:50051")
    assert await resolve(entries, resolver) == ["10.0.0.5:50051", "[fd00::7]:50051"]
    with pytest.raises(OSError, match=r"gone: .*not known"):
        await resolve(parse_target("gone:1"), resolver)

    # Through a CoordinatorChannel: each round asks the resolver again.
    async with CoordinatorChannel("tasks.coordinator:50051", resolver=resolver) as channel:
        await channel.current()
        assert channel.address == "10.0.0.5:50051"
        records["tasks.coordinator"] = ["10.0.0.9"]  # the replica moved
        assert not await channel.move(None)  # the round goes on as it was resolved
        assert channel.address == "[fd00::7]:50051"
        assert await channel.move(None)  # a round done: back off, then resolve again
        assert channel.address == "10.0.0.9:50051"
    assert asked.count("tasks.coordinator") == 3


async def test_localhost_resolves_through_getaddrinfo() -> None:
    addresses = await resolve(parse_target("localhost:50051"))
    assert "127.0.0.1:50051" in addresses or "[::1]:50051" in addresses


# --- fake standbys ----------------------------------------------------------------------


class FakeCoordinator:
    """A gRPC server answering every method by ``behaviour(method, context)`` (a bidi
    handler: on the wire every call shape is the same HTTP/2 stream); counts calls."""

    def __init__(self, behaviour: Callable[[str, Any], Any]) -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []
        # For a standby: the leader it names (None: no trailer; "": an empty one).
        self.leader: str | None = None
        self.server = grpc.aio.server()
        self.address = ""

    async def __aenter__(self) -> FakeCoordinator:
        outer = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                method = details.method

                async def handle(requests: Any, context: Any) -> AsyncIterator[bytes]:
                    outer.calls.append(method)
                    async for reply in outer.behaviour(method, context):
                        yield reply

                return grpc.stream_stream_rpc_method_handler(handle)

        self.server.add_generic_rpc_handlers((Handler(),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(0)


def standby(leader: str | None) -> FakeCoordinator:
    """A standby naming ``leader`` (None: the trailer absent; "": present and empty);
    ``.leader`` may change, as after a failover."""

    async def refuse(method: str, context: Any) -> AsyncIterator[bytes]:
        named = fake.leader
        trailer = () if named is None else ((LEADER_TRAILER, named),)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "standby", trailing_metadata=trailer)
        yield b""  # pragma: no cover - abort raises

    fake = FakeCoordinator(refuse)
    fake.leader = leader
    return fake


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def status(channel: grpc.aio.Channel) -> cluster_pb2.GetClusterStatusResponse:
    stub = cluster_pb2_grpc.ClusterServiceStub(channel)
    return await stub.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=10)


@contextlib.asynccontextmanager
async def leader_and_standby() -> AsyncIterator[tuple[DevCluster, FakeCoordinator]]:
    async with running_dev() as dev, standby(dev.coordinator_address) as fake:
        yield dev, fake


# --- which errors move a client -----------------------------------------------------------


async def test_only_a_standby_or_a_transport_failure_sends_a_client_elsewhere() -> None:
    async def own_refusal(method: str, context: Any) -> AsyncIterator[bytes]:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "no endpoint can take it now")
        yield b""  # pragma: no cover

    async with standby("10.1.2.3:50051") as named, standby("") as unknowing:
        async with FakeCoordinator(own_refusal) as leader:
            errors = {}
            for label, address in [
                ("named", named.address),
                ("unknowing", unknowing.address),
                ("refusing leader", leader.address),
                ("dead", dead_address()),
            ]:
                async with grpc.aio.insecure_channel(address) as plain:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await status(plain)
                    errors[label] = leader_named(caught.value, plain)
    assert errors == {
        "named": "10.1.2.3:50051",
        "unknowing": "",
        "refusing leader": None,
        "dead": "",
    }


async def test_the_coordinators_own_standby_gate_is_followed() -> None:
    """coordinator/ha.py's LeaderGate, as a standby runs it: naming the leader, a client
    goes there; with no leader elected yet, it tries the next coordinator (never treating
    the standby's answer as the leader's refusal)."""
    from coordinator.ha import LeaderGate

    class Leadership:
        is_leader = False
        leader_address: str | None = None

    leadership = Leadership()
    gate = LeaderGate(leadership)

    async def gated(method: str, context: Any) -> AsyncIterator[bytes]:
        await gate(method, context)
        yield b""  # pragma: no cover - a standby's gate aborts

    async with running_dev() as dev, FakeCoordinator(gated) as real_standby:
        async with grpc.aio.insecure_channel(real_standby.address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await status(plain)
            assert leader_named(caught.value, plain) == ""  # no leader yet: try another
        leadership.leader_address = dev.coordinator_address
        async with CoordinatorChannel(real_standby.address) as channel:
            assert (await status(channel)).summary.nodes_total == 5
        leadership.leader_address = None
        target = f"{real_standby.address},{dev.coordinator_address}"
        async with CoordinatorChannel(target) as channel:
            assert (await status(channel)).summary.nodes_total == 5
            assert channel.address == dev.coordinator_address


# --- unary calls ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["standby,leader", "standby", "dead,standby", "dead,leader"])
async def test_a_client_reaches_the_leader(order: str) -> None:
    async with leader_and_standby() as (dev, fake):
        names = {"standby": fake.address, "leader": dev.coordinator_address}
        dead = dead_address()
        target = ",".join(names.get(part, dead) for part in order.split(","))
        async with CoordinatorChannel(target) as channel:
            reply = await status(channel)
            assert reply.summary.nodes_total == 5
            assert channel.address == dev.coordinator_address
            # The next call goes straight to the leader.
            before = len(fake.calls)
            await status(channel)
            assert len(fake.calls) == before
        assert len(fake.calls) == (1 if "standby" in order else 0)


async def test_the_leaders_own_unavailable_is_the_callers_and_not_retried() -> None:
    async def own_refusal(method: str, context: Any) -> AsyncIterator[bytes]:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "state disk refuses writes")
        yield b""  # pragma: no cover

    async with FakeCoordinator(own_refusal) as leader, standby(None) as other:
        async with CoordinatorChannel(f"{leader.address},{other.address}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await status(channel)
    assert caught.value.details() == "state disk refuses writes"
    assert len(leader.calls) == 1 and not other.calls


async def test_every_coordinator_down_retries_with_backoff_until_patience() -> None:
    target = f"{dead_address()},{dead_address()}"
    loop = asyncio.get_running_loop()
    async with CoordinatorChannel(target, patience=1.0, backoff_max=0.2) as channel:
        started = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await status(channel)
        took = loop.time() - started
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert 0.5 < took < 3.0, took
        assert channel.rounds >= 3  # backed off several times


async def test_two_standbys_naming_each_other_do_not_make_a_client_spin() -> None:
    async with standby(None) as a, standby(None) as b:
        a.leader, b.leader = b.address, a.address
        async with CoordinatorChannel(a.address, patience=0.5, backoff_max=0.1) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await status(channel)
    # Hops bounded by MAX_HOPS per miss and misses by backoff: tens, not thousands.
    assert 2 < len(a.calls) + len(b.calls) < 60


async def test_during_a_failover_a_client_polls_instead_of_backing_off() -> None:
    """A standby names a leader that is gone (its lease is running out): the client tries
    again every FAILOVER_POLL_SECONDS at most, however long its backoff has grown, and so
    reaches the new leader within that of its election."""

    async def answer(method: str, context: Any) -> AsyncIterator[bytes]:
        yield cluster_pb2.GetClusterStatusResponse().SerializeToString()

    loop = asyncio.get_running_loop()
    async with standby(dead_address()) as fake, FakeCoordinator(answer) as leader:
        target = f"{fake.address},{dead_address()}"
        async with CoordinatorChannel(
            target, patience=10.0, backoff_initial=0.4, backoff_max=5.0
        ) as channel:
            call = asyncio.ensure_future(status(channel))
            await asyncio.sleep(2.0)  # the failover under way: backoff would be at 1.6-3.2 s
            assert not call.done()
            elected = loop.time()
            fake.leader = leader.address
            await asyncio.wait_for(call, 5)
            reached = loop.time() - elected
    assert channel.failing_over is False  # answered: the failover is over
    assert reached < FAILOVER_POLL_SECONDS + 0.2, reached


# --- server streams -------------------------------------------------------------------------


async def test_a_stream_that_received_nothing_is_made_again_on_the_leader() -> None:
    async with leader_and_standby() as (dev, fake):
        async with CoordinatorChannel(f"{dead_address()},{fake.address}") as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            call = stub.WatchCluster(cluster_pb2.WatchClusterRequest())
            await call.wait_for_connection()
            first = await call.read()
            assert isinstance(first, cluster_pb2.WatchClusterResponse)
            call.cancel()
            assert channel.address == dev.coordinator_address
        assert fake.calls == ["/hive.v1.ClusterService/WatchCluster"]


async def test_a_stream_cut_after_its_first_message_is_not_retried() -> None:
    async with running_dev() as dev:

        async def one_then_standby(method: str, context: Any) -> AsyncIterator[bytes]:
            yield b""
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "lost the lease",
                trailing_metadata=((LEADER_TRAILER, dev.coordinator_address),),
            )

        async with FakeCoordinator(one_then_standby) as old_leader:
            async with CoordinatorChannel(old_leader.address) as channel:
                stub = cluster_pb2_grpc.ClusterServiceStub(channel)
                received = []
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    async for event in stub.WatchCluster(cluster_pb2.WatchClusterRequest()):
                        received.append(event)
        assert len(received) == 1
        assert caught.value.details() == "lost the lease"
        assert len(old_leader.calls) == 1


# --- the hive commands ----------------------------------------------------------------------


async def test_hive_status_works_through_a_standby(capsys: pytest.CaptureFixture[str]) -> None:
    async with leader_and_standby() as (_dev, fake):
        rc = await asyncio.to_thread(
            cli.main, ["status", "--json", "--coordinator", f"{dead_address()},{fake.address}"]
        )
        assert rc == 0
        assert capsys.readouterr().out.count('"agent_address"') == 5
        assert fake.calls == ["/hive.v1.ClusterService/GetClusterStatus"]


def test_hive_refuses_a_bad_coordinator_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["status", "--coordinator", "a:1,,b:2"])
    assert exit_.value.code == 2
    assert "coordinator 2 of 'a:1,,b:2' is empty" in capsys.readouterr().err


# --- agents -----------------------------------------------------------------------------------


def follower(dev: DevCluster, target: str) -> Agent:
    """A sixth node, FOLLOWER, with one of the dev cluster's emulated Ollamas."""
    node = dev.cluster.nodes[0]
    endpoint = dataclasses.replace(
        node.endpoints[0], url=dev.emulators[f"{node.name}/{node.endpoints[0].id}"].url
    )
    return Agent(
        AgentConfig(
            source="test",
            coordinator=target,
            node=dataclasses.replace(node, name="FOLLOWER", endpoints=(endpoint,)),
            listen="127.0.0.1:0",
            telemetry="simulated",
            heartbeat_interval_seconds=0.1,
            reconnect_initial_seconds=0.05,
            reconnect_max_seconds=0.5,
        )
    )


async def test_an_agent_moves_to_the_new_leader_under_its_name(tmp_path: Path) -> None:
    """Given dead,standby the agent registers with the leader the standby names; when that
    leader dies and the standby names another, the session moves there, same node."""
    async with leader_and_standby() as (dev, fake):
        agent = follower(dev, f"{dead_address()},{fake.address}")
        await agent.start()
        try:
            async with asyncio.timeout(5):
                await agent.connected.wait()
            old = dev.coordinator
            assert old is not None and "FOLLOWER" in {r.name for r in old.registry}
            assert "/hive.v1.AgentSessionService/Connect" in fake.calls

            settings = dataclasses.replace(
                dev.cluster.coordinator, state_path=str(tmp_path / "new-leader.sqlite")
            )
            new = Coordinator(dataclasses.replace(dev.cluster, coordinator=settings, nodes=()))
            await new.start("127.0.0.1:0")
            fake.leader = f"127.0.0.1:{new.port}"
            loop = asyncio.get_running_loop()
            killed = loop.time()
            await old.stop(grace=0)
            dev.coordinator = new  # the fixture stops it
            await eventually(
                lambda: "FOLLOWER" in {r.name for r in new.registry} and agent.connected.is_set(),
                timeout=5,
                what="FOLLOWER registered with the new leader",
            )
            moved_in = loop.time() - killed
            assert agent.sessions == 2
            assert agent.coordinator_address == fake.leader
            assert moved_in < 2.0, moved_in
        finally:
            await agent.stop(grace=0)


def test_an_agent_refuses_a_bad_coordinator_list() -> None:
    from hive.config import ConfigError

    dev = DevCluster(fast_cluster())
    with pytest.raises(ConfigError, match="coordinator 2 of 'a:1,,b:2' is empty"):
        follower_config = AgentConfig(
            source="node.yaml", coordinator="a:1,,b:2", node=dev.cluster.nodes[0]
        )
        Agent(follower_config)


# --- the gateway ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway(target: str) -> AsyncIterator[httpx.AsyncClient]:
    server = AsgiServer(create_app(target), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield http
    finally:
        await server.stop()


@pytest.mark.parametrize("order", ["dead,leader", "standby"])
async def test_a_gateway_serves_through_any_coordinator(order: str) -> None:
    async with leader_and_standby() as (dev, fake):
        names = {"standby": fake.address, "leader": dev.coordinator_address}
        target = ",".join(names.get(part) or dead_address() for part in order.split(","))
        async with gateway(target) as http:
            r = await http.get("/api/distributed/cluster/status")
            assert r.status_code == 200, r.text
            assert len(r.json()["nodes"]) == 5
            chat = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}]}
            r = await http.post("/api/chat", json={**chat, "stream": False})
            assert r.status_code == 200, r.text
            assert r.json()["done"] is True
            r = await http.post("/v1/chat/completions", json={**chat, "stream": True})
            assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]"), r.text
            assert '"error"' not in r.text


async def test_a_gateway_answer_cut_mid_stream_is_asked_again_only_if_nothing_was_sent() -> None:
    """The old leader sends the first chunk, then loses the lease. A whole answer has sent
    its client nothing: the gateway asks the leader the standby named, and the client gets
    its 200. A stream whose first chunk went out ends with an error event in the API's
    shape instead (the client has part of an answer)."""
    async with running_dev() as dev:
        chunk = inference_pb2.ChatResponse(chunk=common_pb2.OutputChunk(text="Hel"))

        async def one_chunk_then_standby(method: str, context: Any) -> AsyncIterator[bytes]:
            yield chunk.SerializeToString()
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "no longer the leader",
                trailing_metadata=((LEADER_TRAILER, dev.coordinator_address),),
            )

        async with FakeCoordinator(one_chunk_then_standby) as old, gateway(old.address) as http:
            chat = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}]}
            r = await http.post("/v1/chat/completions", json=chat)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["finish_reason"], r.text
            r = await http.post("/api/chat", json={**chat, "stream": False})
            assert r.status_code == 200, r.text
            assert r.json()["done"] is True
            # Each asked of the old leader once; asked again, of the leader it named.
            assert len([c for c in old.calls if c.endswith("/Chat")]) == 2
            # The gateway now talks to the leader; a new one-chunk-then-gone coordinator
            # for the streamed case.
        async with FakeCoordinator(one_chunk_then_standby) as old, gateway(old.address) as http:
            r = await http.post("/api/chat", json={**chat, "stream": True})
            assert r.status_code == 200
            lines = [json.loads(line) for line in r.text.splitlines()]
            assert lines[0]["message"]["content"] == "Hel"
            assert lines[-1] == {"error": "no longer the leader"}
            chats = [c for c in old.calls if c.endswith("/Chat")]
            assert len(chats) == 1  # the streamed answer was not made again
