"""Leader election with a fencing epoch (coordinator/leader.py) against a real PostgreSQL.

Each test gets a fresh database (``postgres_db``) and short leases (1 s, renewed every
0.2 s). Crashes are real where they can be: a leader in a child process (this module run
as ``python -m tests.test_leader``) is SIGKILLed or SIGSTOPped; the database is paused
with SIGSTOP on its process group to cut a leader off without closing its socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coordinator.leader import (
    Fenced,
    LeaderElection,
    NotLeader,
    check_epoch,
    display_url,
    members,
    session_options,
)

LEASE, RENEW = 1.0, 0.2
# Slack for a loaded two-core machine on top of what the protocol promises.
SLACK = 1.0
ROOT = Path(__file__).resolve().parent.parent


def election(url: str, name: str, **options: Any) -> LeaderElection:
    settings: dict[str, Any] = {"lease_seconds": LEASE, "renew_seconds": RENEW, **options}
    return LeaderElection(url, name, f"{name}.example:50051", **settings)


@contextlib.asynccontextmanager
async def running(*elections: LeaderElection) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run each election's loop in a task group; cancel them all on the way out."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(e.run(), name=e.holder) for e in elections]
        try:
            yield tasks
        finally:
            for task in tasks:
                task.cancel()


async def crash(task: asyncio.Task[None]) -> None:
    """Cancel an election's loop without releasing its lease (a crash, as the database
    sees it) and wait until it has stopped."""
    task.cancel()
    await asyncio.wait([task])


def now() -> float:
    return asyncio.get_running_loop().time()


async def eventually(predicate: Any, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took; fail after ``timeout``."""
    start = now()
    while not predicate():
        if now() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return now() - start


# -- in-process elections ------------------------------------------------------------


async def test_exactly_one_leader_among_three(postgres_db: str) -> None:
    """Three coordinators start together on an empty database (they create the tables
    under the advisory lock): one leads, checked repeatedly; leadership intervals never
    overlap; standbys point at the leader; members() lists all three."""
    elections = [election(postgres_db, f"c{i}") for i in range(3)]
    events: list[tuple[str, bool, float]] = []

    def recorder(name: str) -> Any:
        return lambda leader, _epoch: events.append((name, leader, now()))

    for e in elections:
        e.on_change(recorder(e.holder))
    async with running(*elections):
        await eventually(lambda: any(e.is_leader for e in elections), 5, "a leader")
        for _ in range(150):  # 3 s: fifteen renewals
            leaders = [e.holder for e in elections if e.is_leader]
            assert len(leaders) <= 1, leaders
            await asyncio.sleep(0.02)
        leader = next(e for e in elections if e.is_leader)
        standbys = [e for e in elections if e is not leader]
        await eventually(
            lambda: all(s.leader_address == leader.address for s in standbys),
            2,
            "standbys to know the leader's address",
        )
        assert all(s.epoch == leader.epoch for s in standbys)
        with pytest.raises(NotLeader) as refused:
            standbys[0].fence()
        assert refused.value.leader_address == leader.address
        assert leader.fence() == leader.epoch >= 1
        assert leader.renewals >= 10 and leader.last_renew_latency is not None

        listed = await members(postgres_db)
        assert sorted(m.holder for m in listed) == ["c0", "c1", "c2"]
        assert listed[0].holder == leader.holder and listed[0].role == "leader"
        assert listed[0].address == leader.address and listed[0].epoch == leader.epoch
        assert listed[0].lease_age is not None and 0 <= listed[0].lease_age < LEASE
        assert listed[0].expires_in is not None and 0 < listed[0].expires_in <= LEASE
        assert [m.role for m in listed[1:]] == ["standby", "standby"]
        assert all(m.lease_age is None and m.seen_age < 1.0 for m in listed[1:])

    # Leadership as each instance saw it: intervals [elected, demoted) never overlap.
    intervals: list[tuple[float, float, str]] = []
    opened: dict[str, float] = {}
    for name, leader_now, at in events:
        if leader_now:
            opened[name] = at
        else:
            intervals.append((opened.pop(name), at, name))
    intervals.sort()
    assert intervals, events
    for (_, end, a), (start, _, b) in itertools.pairwise(intervals):
        assert end <= start, f"{a} and {b} led at the same time: {intervals}"


async def test_takeover_after_a_crash_without_release(postgres_db: str) -> None:
    """The leader's loop is cancelled without releasing (a crash as the database sees
    it): it answers not-leader at once; a standby takes over once the lease expired —
    not before — and within lease + renew; the epoch grew by one."""
    first, second = election(postgres_db, "first"), election(postgres_db, "second")
    async with running(first) as (first_task,):
        epoch = await asyncio.wait_for(first.wait_elected(), 5)
        async with running(second):
            await eventually(lambda: second.leader_address == first.address, 2, "standby")
            age = first.lease_age
            assert age is not None
            await crash(first_task)
            crashed = now()
            assert not first.is_leader
            with pytest.raises(NotLeader):
                first.fence()
            new_epoch = await asyncio.wait_for(second.wait_elected(), LEASE + RENEW + SLACK)
            took = now() - crashed
            assert new_epoch == epoch + 1
            # The lease ran from the start of first's last renew: nobody may win it
            # earlier than LEASE after that (less a little for clock reads).
            assert took + age >= LEASE - 0.05, (took, age)
            assert second.failovers == 1 and second.takeovers == 1


async def test_epoch_grows_at_every_takeover_and_check_epoch_fences(postgres_db: str) -> None:
    """Successive leaders get epochs 1, 2, 3, 4 (crash or release, another holder or
    the same one again); check_epoch accepts only the current epoch, in a transaction."""
    async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as conn:
        epochs: list[int] = []
        for round_, name in enumerate(["a", "b", "a", "c"]):
            e = election(postgres_db, name)
            async with running(e) as (task,):
                epochs.append(await asyncio.wait_for(e.wait_elected(), LEASE + RENEW + SLACK))
                async with conn.transaction():
                    await check_epoch(conn, epochs[-1])
                if epochs[:-1]:
                    with pytest.raises(Fenced) as fenced:
                        async with conn.transaction():
                            await check_epoch(conn, epochs[-2])
                    assert (fenced.value.epoch, fenced.value.current) == (epochs[-2], epochs[-1])
                await crash(task)
                if round_ % 2:
                    await e.release()
        assert epochs == [1, 2, 3, 4]
        await conn.execute("DELETE FROM coordinator_lease")
        with pytest.raises(Fenced) as fenced:
            async with conn.transaction():
                await check_epoch(conn, 4)
        assert fenced.value.current is None


async def test_release_hands_over_within_one_renew(postgres_db: str) -> None:
    """A graceful stop (cancel, then release()) lets a standby lead at its next
    attempt, well before the lease would have expired, and leaves the members list."""
    first, second = (
        election(postgres_db, "first", lease_seconds=5.0),
        election(postgres_db, "second", lease_seconds=5.0),
    )
    async with running(first) as (first_task,):
        await asyncio.wait_for(first.wait_elected(), 5)
        async with running(second):
            await eventually(lambda: second.leader_address == first.address, 2, "standby")
            await crash(first_task)
            await first.release()
            released = now()
            await asyncio.wait_for(second.wait_elected(), RENEW + SLACK)
            assert now() - released < 5.0 / 2
            assert [m.holder for m in await members(postgres_db)] == ["second"]


async def test_local_deadline_steps_down_without_the_database(postgres_db: str) -> None:
    """The local lease is measured on the injected monotonic clock: once it jumps past
    the deadline, is_leader and fence() say not-leader and on_change fires, with no
    database round trip in between."""
    skew = [0.0]
    e = election(postgres_db, "solo", clock=lambda: time.monotonic() + skew[0])
    changes: list[tuple[bool, int]] = []
    e.on_change(lambda leader, epoch: changes.append((leader, epoch)))
    async with running(e):
        epoch = await asyncio.wait_for(e.wait_elected(), 5)
        assert e.fence() == epoch and e.expires_in is not None and e.expires_in > 0
        skew[0] = LEASE
        assert not e.is_leader
        with pytest.raises(NotLeader):
            e.fence()
        assert changes == [(True, epoch), (False, epoch)]
        await asyncio.wait_for(e.wait_demoted(), 0.1)


async def test_lost_connection_steps_down_then_reacquires(postgres_db: str) -> None:
    """The server closes the leader's connection: it steps down at its next renew, not
    at the end of its lease; it reconnects and, once its old lease expired, takes the
    lease again under a new epoch."""
    e = election(postgres_db, "leader")
    async with running(e):
        epoch = await asyncio.wait_for(e.wait_elected(), 5)
        async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'hive-coordinator leader'"
            )
            assert (await cursor.fetchone()) == (1,)
        cut = now()
        await asyncio.wait_for(e.wait_demoted(), RENEW + SLACK)
        assert now() - cut < LEASE
        assert e.step_downs == 1 and e.renew_failures == 1
        # Its own lease, not yet expired, is nobody to send clients to.
        await eventually(lambda: e.epoch == epoch and e.expires_in is not None, 1, "a read")
        assert e.leader_address is None and not e.is_leader
        assert await asyncio.wait_for(e.wait_elected(), LEASE + RENEW + SLACK) == epoch + 1


async def test_unreachable_database_leader_steps_down_within_its_lease() -> None:
    """PostgreSQL stops answering (its processes paused: the socket stays open, as in a
    partition): the leader's renew hangs, and it steps down within its lease. When the
    server answers again it reconnects and leads under a new epoch."""
    from hive import pgtemp

    reason = pgtemp.missing_reason()
    if reason:
        pytest.skip(reason)
    with pgtemp.temp_postgres() as server:
        assert server.process is not None
        e = election(server.url, "leader")
        async with running(e):
            epoch = await asyncio.wait_for(e.wait_elected(), 10)
            await asyncio.sleep(2 * RENEW)
            # The postmaster first (it forks no more), then its children: each backend
            # is a session leader of its own, out of reach of killpg.
            paused_pids = [server.process.pid, *children_of(server.process.pid)]
            for pid in paused_pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                paused = now()
                await asyncio.wait_for(e.wait_demoted(), LEASE + SLACK)
                assert now() - paused <= LEASE, now() - paused
                with pytest.raises(NotLeader):
                    e.fence()
                await asyncio.sleep(LEASE)
            finally:
                for pid in reversed(paused_pids):
                    os.kill(pid, signal.SIGCONT)
            # psycopg may wait up to 10 s to cancel the hung query before reconnecting.
            assert await asyncio.wait_for(e.wait_elected(), 15) == epoch + 1


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


async def test_logs_name_the_holder_but_never_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Against a dead port: no leader, retries with backoff, and the log lines name the
    holder and the server without its password."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://hive:s3cret-pw@127.0.0.1:{port}/hive"
    e = election(url, "lonely")
    caplog.set_level(logging.DEBUG, logger="hive.coordinator.leader")
    async with running(e):
        await asyncio.sleep(0.5)
        assert not e.is_leader and e.leader_address is None
    assert "lonely" in caplog.text and f"127.0.0.1:{port}" in caplog.text
    assert "s3cret-pw" not in caplog.text
    assert display_url(url) == f"postgresql://hive:***@127.0.0.1:{port}/hive"
    assert display_url("host=db password='a b' user=x") == "host=db password=*** user=x"
    assert display_url("postgresql://db/hive") == "postgresql://db/hive"
    assert display_url("postgresql://db/hive?user=u&password=pw&x=1") == (
        "postgresql://db/hive?user=u&password=***&x=1"
    )
    assert display_url("postgres://u:p%40ss@h1:5432,h2:5433/hive") == (
        "postgres://u:***@h1:5432,h2:5433/hive"
    )


# -- a leader in a child process -----------------------------------------------------


class Child:
    """One election in a child process (``python -m tests.test_leader``): JSON lines out
    (``elected``/``demoted``, and the answer to each command), commands in."""

    def __init__(self, process: asyncio.subprocess.Process, holder: str) -> None:
        self.process, self.holder = process, holder
        self.address = f"{holder}.example:50051"
        self.seen: list[dict[str, Any]] = []  # every message read so far

    @classmethod
    async def start(cls, url: str, holder: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "tests.test_leader", holder, str(LEASE), str(RENEW)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "HIVE_LEADER_URL": url},  # not on the command line
        )
        return cls(process, holder)

    async def until(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stdout.readline()
                assert line, f"child {self.holder} exited ({await self.process.wait()})"
                message: dict[str, Any] = json.loads(line)
                self.seen.append(message)
                if message["event"] == event:
                    return message

    async def command(self, command: str, timeout: float = 5.0) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        return await self.until(command, timeout)

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        await self.process.wait()


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        await child.stop()


async def test_sigkill_of_the_leader_process(postgres_db: str, children: list[Child]) -> None:
    """SIGKILL the leader's process: a standby takes over within lease + renew (plus
    slack) and its epoch is the next one."""
    child = await Child.start(postgres_db, "doomed")
    children.append(child)
    elected = await child.until("elected", 10)
    standby = election(postgres_db, "standby")
    async with running(standby):
        await eventually(lambda: standby.leader_address == child.address, 2, "standby")
        child.signal(signal.SIGKILL)
        killed = now()
        epoch = await asyncio.wait_for(standby.wait_elected(), LEASE + RENEW + SLACK)
        assert now() - killed <= LEASE + RENEW + SLACK
        assert epoch == elected["epoch"] + 1
        assert (await child.process.wait()) == -signal.SIGKILL


async def test_sigstopped_leader_is_fenced_after_resume(
    postgres_db: str, children: list[Child]
) -> None:
    """A leader paused (SIGSTOP) past its lease loses it to a standby; resumed (SIGCONT)
    it reports not-leader, and a write carrying its old epoch is refused by check_epoch:
    no row from it lands after the takeover."""
    async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as conn:
        await conn.execute("CREATE TABLE writes (holder text NOT NULL, epoch bigint NOT NULL)")
        child = await Child.start(postgres_db, "paused")
        children.append(child)
        elected = await child.until("elected", 10)
        before = await child.command("write")
        assert (before["fence"], before["write"]) == ("ok", "ok")

        standby = election(postgres_db, "standby")
        async with running(standby):
            await eventually(lambda: standby.leader_address == child.address, 2, "standby")
            child.signal(signal.SIGSTOP)
            stopped = now()
            epoch = await asyncio.wait_for(standby.wait_elected(), LEASE + RENEW + SLACK)
            assert epoch == elected["epoch"] + 1
            assert now() - stopped <= LEASE + RENEW + SLACK
            await asyncio.sleep(RENEW)
            child.signal(signal.SIGCONT)

            after = await child.command("write")
            assert after["fence"] == "not-leader"
            assert after["write"] == "fenced" and after["current"] == epoch
            assert {"event": "demoted", "epoch": elected["epoch"]} in child.seen
            await asyncio.sleep(2 * RENEW)
            state = await child.command("state")
            assert not state["is_leader"] and state["leader_address"] == standby.address
            assert standby.is_leader and standby.epoch == epoch

        cursor = await conn.execute("SELECT holder, epoch FROM writes")
        assert await cursor.fetchall() == [("paused", elected["epoch"])]


async def test_leader_paused_inside_a_write_transaction_is_cut_off(
    postgres_db: str, children: list[Child]
) -> None:
    """The leader is paused while its write transaction holds the lease row FOR SHARE:
    with session_options the server ends that transaction after half a lease, so the
    standby still takes over within lease + renew; resumed, the old leader's commit
    fails and its row never lands."""
    async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as conn:
        await conn.execute("CREATE TABLE writes (holder text NOT NULL, epoch bigint NOT NULL)")
        child = await Child.start(postgres_db, "paused")
        children.append(child)
        elected = await child.until("elected", 10)
        assert (await child.command("begin"))["write"] == "ok"

        standby = election(postgres_db, "standby")
        async with running(standby):
            await eventually(lambda: standby.leader_address == child.address, 2, "standby")
            child.signal(signal.SIGSTOP)
            stopped = now()
            epoch = await asyncio.wait_for(standby.wait_elected(), LEASE + RENEW + SLACK)
            assert epoch == elected["epoch"] + 1
            assert now() - stopped <= LEASE + RENEW + SLACK
            child.signal(signal.SIGCONT)
            assert (await child.command("commit"))["outcome"] == "lost"

        cursor = await conn.execute("SELECT count(*) FROM writes")
        assert await cursor.fetchone() == (0,)


async def child_main(holder: str, lease: float, renew: float) -> None:
    """The child's side: run one election; print ``elected``/``demoted`` as they happen;
    on stdin, ``write`` asks fence() and then writes a row with the epoch it last led
    under, through check_epoch (as the store will, minus the fence() gate, so that the
    database's refusal is what is tested); ``begin`` does the same write in a
    transaction it leaves open (on a connection with session_options) until ``commit``;
    ``state`` prints the election's state."""
    url = os.environ["HIVE_LEADER_URL"]
    e = LeaderElection(
        url, holder, f"{holder}.example:50051", lease_seconds=lease, renew_seconds=renew
    )
    led = [0]

    def emit(event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, **fields}), flush=True)

    def changed(leader: bool, epoch: int) -> None:
        if leader:
            led[0] = epoch
        emit("elected" if leader else "demoted", epoch=epoch)

    e.on_change(changed)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(url, options=session_options(lease)) as open_tx,
        asyncio.TaskGroup() as group,
    ):
        task = group.create_task(e.run())
        while line := (await reader.readline()).decode().strip():
            if line == "state":
                emit("state", **e.state())
            elif line == "write":
                try:
                    e.fence()
                    fence = "ok"
                except NotLeader:
                    fence = "not-leader"
                try:
                    async with conn.transaction():
                        await check_epoch(conn, led[0])
                        await conn.execute("INSERT INTO writes VALUES (%s, %s)", (holder, led[0]))
                    emit("write", fence=fence, write="ok", current=led[0])
                except Fenced as fenced:
                    emit("write", fence=fence, write="fenced", current=fenced.current)
            elif line == "begin":
                await check_epoch(open_tx, led[0])
                await open_tx.execute("INSERT INTO writes VALUES (%s, %s)", (holder, led[0]))
                emit("begin", write="ok")
            elif line == "commit":
                try:
                    await open_tx.commit()
                    emit("commit", outcome="committed")
                except psycopg.Error as error:
                    emit("commit", outcome="lost", error=str(error))
        task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("holder")
    parser.add_argument("lease", type=float)
    parser.add_argument("renew", type=float)
    arguments = parser.parse_args()
    asyncio.run(child_main(arguments.holder, arguments.lease, arguments.renew))
