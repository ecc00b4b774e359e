"""Three coordinators on one PostgreSQL, as separate processes with mTLS: the leader
SIGKILLed three times under 200 workflows and a steady chat stream (issue 18's
acceptance run). Every workflow succeeds, no stage completes twice, every agent follows
the new leader, and only the chats in flight on a killed leader fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive import pgtemp
from hive.v1 import workflow_pb2
from tests.faults.conftest import Record
from tests.faults.harness import NodeSpec, ProcessCluster, poll, process_cluster
from tests.faults.test_coordinator_faults import (
    MODELS,
    ChatStream,
    all_succeeded,
    all_workflows,
    rejoin_times,
)
from tests.test_workflow_crash import finished_tasks, submit_quick

WORKFLOWS = 200
KILLS = 3
LEASE = (2.5, 0.5)
NODES = [NodeSpec(f"NODE{c}", models=MODELS) for c in "ABCDE"]


@pytest.fixture
async def cluster(tmp_path: Path, postgres_db: str) -> AsyncIterator[ProcessCluster]:
    async with process_cluster(
        tmp_path / "cluster",
        NODES,
        time_scale=0.05,
        reconnect=(0.2, 2.0),
        coordinators=3,
        store=postgres_db,
        lease=LEASE,
    ) as c:
        yield c


@pytest.mark.timeout(600)
async def test_leader_sigkilled_three_times_loses_nothing(
    cluster: ProcessCluster, figures: Record
) -> None:
    chats = ChatStream(cluster)
    chats.start()
    async with cluster.channel() as channel:
        ids = await submit_quick(channel, WORKFLOWS, "ha")
    assert len(ids) == WORKFLOWS
    takeovers: list[float] = []
    rejoins: list[float] = []
    before: dict[tuple[str, str], set[str]] = {}
    kill_windows: list[tuple[float, float]] = []
    for kill in range(KILLS):
        leader = await _leader(cluster)
        snapshot = finished_tasks(await all_workflows(cluster))
        for key, tasks in snapshot.items():
            before.setdefault(key, tasks)
        killed = time.monotonic()
        await cluster.coordinator_procs[leader].kill()
        new = await _leader(cluster, not_index=leader, timeout=30)
        takeovers.append(time.monotonic() - killed)
        rejoins.append(max(await rejoin_times(cluster, len(NODES), killed, 30)))
        kill_windows.append((killed, time.monotonic()))
        assert new != leader
        # The killed one comes back as a standby, as systemd or Swarm would restart it.
        await cluster.coordinator_procs[leader].start()
        if kill < KILLS - 1:
            await asyncio.sleep(3)
    await poll(lambda: all_succeeded(cluster), 300, "every workflow succeeded", cluster, 1.0)
    await chats.stop()
    workflows = await all_workflows(cluster)
    assert sorted(w.id for w in workflows) == sorted(ids)  # none lost, none duplicated
    after = finished_tasks(workflows)
    for key, tasks in before.items():
        assert after[key] == tasks, f"stage {key} ran again after it had finished"
    failed = [(t, code) for t, code in chats.results if code != 200]
    # The longest a chat in flight at a kill waited for its answer (the gateway asks the
    # new leader again): what a client sees of a failover.
    waits = [
        max((w for sent, w in chats.waits if sent <= start <= sent + w), default=0.0)
        for start, _ in kill_windows
    ]
    outside = [
        (t, code)
        for t, code in failed
        if not any(start - 1.0 <= t <= end + 5.0 for start, end in kill_windows)
    ]
    assert not outside, f"chats failed away from any kill: {outside[:5]}"
    # Stages running at a kill went on on their agents and the new leader adopted them.
    agent_logs = [p.read_text() for p in cluster.root.glob("agent-*.log")]
    adopted = sum(text.count("adopted by the coordinator") for text in agent_logs)
    expired = sum(text.count("was not adopted within") for text in agent_logs)
    assert adopted >= 1, "no running task was adopted by a new leader"
    figures(
        fault=f"3 coordinators on PostgreSQL, the leader SIGKILLed {KILLS} times under "
        f"{WORKFLOWS} workflows and 2 chat clients (lease {LEASE[0]} s, renew {LEASE[1]} s)",
        outcome=f"0 of {WORKFLOWS} workflows lost, 0 stages run twice; "
        f"{len(failed)} of {len(chats.results)} chats refused or cut, all during a takeover",
        takeover_s=" / ".join(f"{t:.1f}" for t in takeovers),
        longest_chat_over_a_kill_s=" / ".join(f"{t:.1f}" for t in waits),
        agents_back_s=" / ".join(f"{t:.1f}" for t in rejoins),
        running_tasks_adopted=adopted,
        orphans_stopped_unadopted=expired,
    )


async def _leader(
    cluster: ProcessCluster, not_index: int | None = None, timeout: float = 30.0
) -> int:
    found: list[int] = []

    async def elected() -> bool:
        index = await cluster.leader_index(timeout=1.0)
        if index is None or index == not_index:
            return False
        found.append(index)
        return True

    await poll(elected, timeout, "a leader", cluster, 0.1)
    return found[-1]


@pytest.fixture
async def partitioned(tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    """Three coordinators, the first (the leader) in a network namespace of its own; a
    PostgreSQL of the test's own that listens on that namespace's link too."""
    cluster = ProcessCluster(
        tmp_path / "cluster",
        NODES[:3],
        time_scale=0.05,
        reconnect=(0.2, 2.0),
        coordinators=3,
        lease=LEASE,
        coordinator_in_netns=True,
    )
    subnet = cluster.coordinator_subnet
    server = pgtemp.TempPostgres(extra_listen=(f"{subnet}.1",), allow_networks=(f"{subnet}.0/30",))
    try:
        await asyncio.to_thread(server.start)
        cluster.store = server.url
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()
        await asyncio.to_thread(server.stop)


@pytest.mark.timeout(300)
async def test_leader_cut_off_steps_down_and_a_standby_takes_over(
    partitioned: ProcessCluster, figures: Record
) -> None:
    cluster = partitioned
    assert await cluster.leader_index() == 0
    async with cluster.channel() as channel:
        ids = await submit_quick(channel, 60, "cut", timeout=30)

    async def some_done() -> bool:
        return len(finished_tasks(await all_workflows(cluster))) >= 10

    await poll(some_done, 60, "some stages finished", cluster, 0.2)
    before = finished_tasks(await all_workflows(cluster))
    cut = time.monotonic()
    cluster.cut("coordinator")
    new = await _leader(cluster, not_index=0, timeout=30)
    takeover = time.monotonic() - cut
    await poll(lambda: all_succeeded(cluster), 180, "every workflow succeeded", cluster, 1.0)
    await asyncio.sleep(1.0)
    cluster.heal("coordinator")
    healed = time.monotonic()

    async def standby_again() -> bool:
        log = (cluster.root / "coordinator.log").read_text()
        return "starting again as a standby" in log and await cluster.leader_index() == new

    rejoined = await poll(standby_again, 60, "the old leader back as a standby", cluster, 0.5)
    log = (cluster.root / "coordinator.log").read_text()
    stepped = [line for line in log.splitlines() if "steps down" in line or "stops leading" in line]
    assert stepped, "the cut-off leader never stepped down"
    assert "leader (epoch 1)" in log and "leader (epoch 2)" not in log
    workflows = await all_workflows(cluster)
    assert {w.id for w in workflows} == ids
    assert all(w.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED for w in workflows)
    after = finished_tasks(workflows)
    for key, tasks in before.items():
        assert after[key] == tasks, f"stage {key} ran again after it had finished"
    figures(
        fault=f"the leader cut off (its veth link down: PostgreSQL, agents and clients) "
        f"under 60 workflows; healed after they finished (lease {LEASE[0]} s)",
        outcome="it stepped down within its lease, a standby took over and finished every "
        "workflow once; healed, the old leader came back as a standby",
        takeover_s=round(takeover, 2),
        back_as_standby_s=round(rejoined, 2),
        healed_after_s=round(healed - cut, 1),
    )
