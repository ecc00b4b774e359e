"""`hive dev --coordinators 3`: a throwaway PostgreSQL and three coordinators on it, one
leading; the agents and the gateway know all three and follow the leader when it goes
(issue 18, item 5). Real PostgreSQL (hive.pgtemp), real coordinators, agents, emulators
and gateway in-process; without PostgreSQL `hive dev` says how to install it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hive import cli, pgtemp
from hive.cli.dev import DevCluster
from tests.conftest import FAST, eventually, fast_cluster

# As tests/test_ha.py: short for a quick test, long enough for a loaded 2-core machine.
LEASE, RENEW = 2.0, 0.4
API = "/api/distributed"
WORKFLOW = {
    "name": "Todo CLI",
    "requirements": "a command-line todo list with tests",
    "language": "python",
    "priority": "normal",
    "pipeline": "quick",
}


@contextlib.asynccontextmanager
async def three_coordinators(time_scale: float) -> AsyncIterator[DevCluster]:
    """The seed cluster with three coordinators on a throwaway PostgreSQL, registered."""
    reason = pgtemp.missing_reason()
    if reason:
        pytest.skip(reason)
    settings = dataclasses.replace(FAST, lease_seconds=LEASE, renew_seconds=RENEW)
    dev = DevCluster(
        dataclasses.replace(fast_cluster(), coordinator=settings),
        coordinator_listen="127.0.0.1:0",
        gateway_port=0,
        time_scale=time_scale,
        coordinators=3,
        store=None,  # not HIVE_DEV_STORE: this cluster starts its own PostgreSQL
    )
    try:
        await dev.start()
        await dev.wait_registered(timeout=20)
        yield dev
    finally:
        await dev.stop()


@pytest.fixture
async def trio() -> AsyncIterator[DevCluster]:
    async with three_coordinators(0.0) as dev:
        yield dev
    assert dev.postgres is None


async def test_three_coordinators_one_leads_and_another_takes_over(trio: DevCluster) -> None:
    assert trio.postgres is not None
    directory = trio.postgres.directory
    assert directory is not None and await asyncio.to_thread(directory.exists)
    assert len(trio.supervisors) == 3
    leader = trio.leader()
    assert leader is not None
    assert [c.advertise for c in (s.current for s in trio.supervisors.values())] == list(
        trio.supervisors
    )
    assert sum(s.current.is_leader for s in trio.supervisors.values()) == 1
    # The agents registered with the leader only.
    assert {r.info.name for r in leader.registry} == {n.name for n in trio.cluster.nodes}
    for supervisor in trio.supervisors.values():
        if supervisor.current is not leader:
            assert not list(supervisor.current.registry)
    described = trio.describe()
    for address in trio.supervisors:
        assert address in described
    assert f"{leader.advertise}  (leader)" in described
    assert described.count("(standby)") == 2

    assert trio.gateway is not None
    async with httpx.AsyncClient(base_url=trio.gateway.url, timeout=30) as http:
        await _generate(http)
        r = await http.post(f"{API}/workflows", json=WORKFLOW)
        assert r.status_code == 201, r.text
        workflow = r.json()["id"]

        async def succeeded() -> bool:
            got = await http.get(f"{API}/workflows/{workflow}")
            return bool(got.json()["state"] == "succeeded")

        await eventually(succeeded, timeout=30, what="the workflow succeeded")

        # The leader goes without handing over: its lease expires, another takes over.
        gone_at = time.monotonic()
        await trio.stop_coordinator(leader.advertise, hand_over=False)

        async def new_leader() -> bool:
            return trio.leader() is not None

        await eventually(new_leader, timeout=LEASE * 3, what="another coordinator leads")
        successor = trio.leader()
        assert successor is not None and successor.advertise != leader.advertise
        assert successor.election is not None and successor.election.epoch >= 2

        async def generates() -> bool:
            try:
                await _generate(http)
            except AssertionError:
                return False
            return True

        await eventually(generates, timeout=LEASE * 3, what="the gateway answers again")
        recovered = time.monotonic() - gone_at
        print(f"leader stopped to a generate answered through the new leader: {recovered:.2f}s")
        assert recovered < LEASE * 3 + 2
        # Its state came along: the earlier workflow is there, and a new one runs.
        got = await http.get(f"{API}/workflows/{workflow}")
        assert got.status_code == 200 and got.json()["state"] == "succeeded"
        r = await http.post(f"{API}/workflows", json={**WORKFLOW, "name": "after failover"})
        assert r.status_code == 201, r.text
        again = r.json()["id"]

        async def also_succeeded() -> bool:
            got = await http.get(f"{API}/workflows/{again}")
            return bool(got.json()["state"] == "succeeded")

        await eventually(also_succeeded, timeout=30, what="a workflow after the failover")

    async def every_agent_moved() -> bool:
        return {r.info.name for r in successor.registry} == {n.name for n in trio.cluster.nodes}

    # Each agent comes back at its own reconnect backoff (at most 10 s in hive dev).
    await eventually(every_agent_moved, timeout=15, what="every agent registered again")


async def _generate(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/api/generate", json={"model": "llama3.1:8b", "prompt": "hello", "stream": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True


async def test_the_temporary_postgres_is_removed_at_stop() -> None:
    """What Ctrl-C does (cmd_dev's finally: DevCluster.stop): the server stops and its
    directory goes."""
    if reason := pgtemp.missing_reason():
        pytest.skip(reason)
    dev = DevCluster(
        fast_cluster(),
        coordinator_listen="127.0.0.1:0",
        gateway_port=None,
        time_scale=0.0,
        coordinators=2,
        store=None,
    )
    dev.cluster = dataclasses.replace(dev.cluster, nodes=())
    try:
        await dev.start()
        assert dev.postgres is not None and dev.postgres.directory is not None
        directory: Path = dev.postgres.directory
        process = dev.postgres.process
        assert process is not None and process.poll() is None
    finally:
        await dev.stop()
    assert process.poll() is not None
    assert not await asyncio.to_thread(directory.exists)
    assert not dev.supervisors


def test_without_postgresql_dev_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pgtemp, "missing_reason", lambda: pgtemp.INSTALL_HINT)
    assert cli.main(["dev", "--coordinators", "3"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "hive dev --coordinators 3: needs PostgreSQL" in err
    assert "apt-get install postgresql" in err


def test_the_coordinator_count_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "many"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["dev", "--coordinators", bad])
        assert exited.value.code == 2
    assert "--coordinators" in capsys.readouterr().err


async def test_a_whole_answer_cut_by_a_failover_is_asked_again_of_the_new_leader() -> None:
    """A non-streamed generate has sent its client nothing when the leader running it
    dies: the gateway asks the new leader, and the client gets its 200."""
    async with three_coordinators(1.0) as dev:
        leader = dev.leader()
        assert leader is not None and dev.gateway is not None
        async with httpx.AsyncClient(base_url=dev.gateway.url, timeout=60) as http:
            # llama3.1:8b is loaded on no node yet: its load alone takes seconds.
            answer = asyncio.create_task(
                http.post(
                    "/api/generate",
                    json={
                        "model": "llama3.1:8b",
                        "prompt": "a long answer",
                        "stream": False,
                        "options": {"num_predict": 64},
                    },
                )
            )

            async def running() -> bool:
                return sum(leader.registry.running.values()) > 0

            await eventually(running, timeout=20, what="the generate running on the leader")
            await dev.stop_coordinator(leader.advertise, hand_over=False)
            r = await asyncio.wait_for(answer, 60)
        assert r.status_code == 200, r.text
        assert r.json()["done"] is True and r.json()["response"]
        successor = dev.leader()
        assert successor is not None and successor.advertise != leader.advertise
