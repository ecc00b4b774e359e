"""What an operator sees of several coordinators (issue 18, item 4): the leader's
``GetClusterStatus`` lists every coordinator with its role, epoch and lease age, and
``hive status``, the gateway's REST status and a single SQLite coordinator show it.
Real PostgreSQL (``postgres_db``), real coordinators and gateway in-process; the roster's
own rules (one line per address, gone, a slow store) on fakes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from coordinator.leader import Member
from coordinator.roster import Roster, roster
from coordinator.server import Coordinator, CoordinatorSupervisor
from gateway.app import create_app
from hive import cli
from hive.asgi import AsgiServer
from tests.conftest import FAST, eventually, fast_cluster
from tests.test_ha import LEASE, free_port, ha_config, status_via

API = "/api/distributed"


class Pair:
    """Two coordinators on one PostgreSQL store, no agents."""

    def __init__(self, store: str) -> None:
        self.ports = [free_port(), free_port()]
        self.supervisors = [CoordinatorSupervisor(ha_config(store, p), None) for p in self.ports]

    @property
    def target(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def coordinators(self) -> list[Coordinator]:
        return [s.current for s in self.supervisors]

    def leader(self) -> Coordinator | None:
        return next((c for c in self.coordinators if c.is_leader), None)

    def standby(self) -> Coordinator:
        return next(c for c in self.coordinators if not c.is_leader)


@pytest.fixture
async def pair(postgres_db: str) -> AsyncIterator[Pair]:
    p = Pair(postgres_db)
    try:
        for supervisor in p.supervisors:
            await supervisor.start()
        await eventually(lambda: p.leader() is not None, timeout=10, what="a leader")
        # Both rows are in the store, the leader's roster sees them (it caches ~1 s).
        await eventually(lambda: _both_listed(p), timeout=10, what="both listed")
        yield p
    finally:
        for supervisor in p.supervisors:
            await supervisor.stop()


async def _both_listed(p: Pair) -> bool:
    leader = p.leader()
    if leader is None:
        return False
    status = await status_via(f"127.0.0.1:{leader.port}")
    return [c.role for c in status.coordinators] == ["leader", "standby"]


async def test_the_leader_lists_itself_first_and_the_standby(pair: Pair) -> None:
    leader = pair.leader()
    assert leader is not None and leader.election is not None
    standby = pair.standby()
    status = await status_via(f"127.0.0.1:{leader.port}")
    first, second = status.coordinators
    assert (first.address, first.role) == (leader.advertise, "leader")
    assert first.epoch == leader.election.epoch >= 1
    assert 0.0 <= first.lease_age_seconds < LEASE
    assert first.seen_age_seconds < LEASE
    assert (second.address, second.role, second.lease_age_seconds) == (
        standby.advertise,
        "standby",
        0.0,
    )
    assert second.epoch == first.epoch  # the standby read the leader's lease


async def test_hive_status_shows_the_coordinators(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    leader = pair.leader()
    assert leader is not None
    standby = pair.standby()
    capsys.readouterr()
    rc = await asyncio.to_thread(cli.main, ["status", "--json", "--coordinator", pair.target])
    assert rc == 0
    shown = json.loads(capsys.readouterr().out)["coordinators"]
    assert [(c["address"], c["role"]) for c in shown] == [
        (leader.advertise, "leader"),
        (standby.advertise, "standby"),
    ]
    assert int(shown[0]["epoch"]) >= 1

    rc = await asyncio.to_thread(cli.main, ["status", "--coordinator", pair.target])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Coordinators" in out
    leader_line = next(line for line in out.splitlines() if leader.advertise in line)
    standby_line = next(line for line in out.splitlines() if standby.advertise in line)
    assert "leader" in leader_line and "standby" in standby_line


async def test_the_gateway_status_shows_the_leader_and_the_standby(pair: Pair) -> None:
    leader = pair.leader()
    assert leader is not None and leader.election is not None
    standby = pair.standby()
    server = AsgiServer(create_app(pair.target))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            r = await http.get(f"{API}/cluster/status")
    finally:
        await server.stop()
    assert r.status_code == 200, r.text
    coordinators = r.json()["coordinators"]
    assert [(c["address"], c["role"]) for c in coordinators] == [
        (leader.advertise, "leader"),
        (standby.advertise, "standby"),
    ]
    assert coordinators[0]["epoch"] == leader.election.epoch


async def test_a_single_sqlite_coordinator_lists_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dataclasses.replace(
        FAST, store=str(tmp_path / "hive-state.sqlite"), metrics_listen="off"
    )
    coordinator = Coordinator(dataclasses.replace(fast_cluster(), coordinator=settings))
    await coordinator.start()
    try:
        status = await status_via(f"127.0.0.1:{coordinator.port}")
        assert [(c.address, c.role, c.epoch) for c in status.coordinators] == [
            (coordinator.advertise, "leader", 0)
        ]
        capsys.readouterr()
        rc = await asyncio.to_thread(
            cli.main, ["status", "--coordinator", f"127.0.0.1:{coordinator.port}"]
        )
        assert rc == 0
        assert f"coordinator: {coordinator.advertise} (leader, epoch 0)" in capsys.readouterr().out
    finally:
        await coordinator.stop()


# --- the roster's rules, on fakes ---------------------------------------------------------


def member(holder: str, address: str, role: str, seen_age: float, epoch: int = 3) -> Member:
    leads = role == "leader"
    return Member(
        holder=holder,
        address=address,
        role=role,
        epoch=epoch,
        seen_age=seen_age,
        lease_age=0.2 if leads else None,
        expires_in=2.0 if leads else None,
    )


def test_one_line_per_address_the_leader_first_and_the_silent_ones_gone() -> None:
    views = roster(
        [
            member("c:1/old", "c:1", "standby", 900.0, epoch=1),  # c:1 before a restart
            member("c:1/new", "c:1", "standby", 0.3),
            member("a:1/x", "a:1", "standby", 7.0),  # SIGKILLed: its row stays
            member("b:1/y", "b:1", "leader", 0.4),
            member("d:1/z", "d:1", "standby", 7200.0),  # long gone: forgotten
        ],
        stale_after=5.0,
    )
    assert [(v.address, v.role, v.epoch) for v in views] == [
        ("b:1", "leader", 3),
        ("a:1", "gone", 3),
        ("c:1", "standby", 3),
    ]
    assert views[0].lease_age == 0.2 and views[1].lease_age == 0.0


async def test_a_slow_store_gives_an_empty_list_once_a_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    calls = []
    stuck = asyncio.Event()

    async def slow(url: str) -> list[Member]:
        calls.append(url)
        await stuck.wait()
        return []

    r = Roster(
        "postgresql://hive:secret@db/hive",
        lambda: "me:1",
        lambda: now[0],
        stale_after=5.0,
        ttl=1.0,
        timeout=0.05,
        fetch=slow,
    )
    with caplog.at_level(logging.WARNING, "hive.coordinator.roster"):
        assert await r.current() == []
        assert await r.current() == []  # cached: no second wait
    assert len(calls) == 1
    assert "could not list the coordinators" in caplog.text and "secret" not in caplog.text
    now[0] = 1.5
    assert await r.current() == []
    assert len(calls) == 2


async def test_the_store_is_read_once_a_ttl() -> None:
    now = [0.0]
    calls = 0

    async def fetch(url: str) -> list[Member]:
        nonlocal calls
        calls += 1
        return [member("a/x", "a:1", "leader", 0.1)]

    r = Roster("postgresql://db/hive", lambda: "a:1", lambda: now[0], stale_after=5, fetch=fetch)
    assert [v.role for v in await r.current()] == ["leader"]
    now[0] = 0.5
    await r.current()
    assert calls == 1
    now[0] = 1.2
    await r.current()
    assert calls == 2
