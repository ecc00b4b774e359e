"""The coordinator SIGKILLed under 200 workflows and a steady chat stream, down for a
while, then restarted from its state: nothing accepted is lost, no stage runs twice, and
every agent is back within its ``reconnect_max_seconds`` + 1 s of the coordinator
listening again (issue 17 defect 5: gRPC's own channel backoff used to add up to 15 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from hive.v1 import common_pb2, workflow_pb2
from tests.faults.conftest import Record
from tests.faults.harness import NodeSpec, ProcessCluster, poll, process_cluster
from tests.test_workflow_crash import finished_tasks, submit_quick, workflows_on

WORKFLOWS = 200
OUTAGE_SECONDS = 20.0
RECONNECT_MAX = 2.0
# The quick pipeline's stages ask for qwen2.5-coder:7b; the chats for llama3.2:3b.
MODELS = ("llama3.2:3b", "qwen2.5-coder:7b")
NODES = [NodeSpec(name, models=MODELS) for name in ("NODEA", "NODEB", "NODEC")]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    async with process_cluster(
        tmp_path / "cluster", NODES, time_scale=0.05, reconnect=(0.2, RECONNECT_MAX)
    ) as c:
        yield c


async def all_workflows(c: ProcessCluster) -> list[workflow_pb2.Workflow]:
    async with c.channel() as channel:
        return await workflows_on(channel)


async def all_succeeded(c: ProcessCluster) -> bool:
    """Every workflow the coordinator knows has succeeded (False while it is down)."""
    try:
        workflows = await all_workflows(c)
    except grpc.aio.AioRpcError:
        return False
    return all(w.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED for w in workflows)


async def rejoin_times(c: ProcessCluster, nodes: int, since: float, timeout: float) -> list[float]:
    """Seconds from ``since`` until each node was healthy again, polled every 50 ms."""
    rejoin: dict[str, float] = {}

    async def all_rejoined() -> bool:
        try:
            states = await c.node_states()
        except grpc.aio.AioRpcError:
            return False
        for name, state in states.items():
            if state == common_pb2.NODE_STATE_HEALTHY and name not in rejoin:
                rejoin[name] = time.monotonic() - since
        return len(rejoin) == nodes

    await poll(all_rejoined, timeout, "every agent rejoined", c, 0.05)
    return sorted(rejoin.values())


class ChatStream:
    """Two clients chatting through the gateway without pause; each answer's status and
    time kept."""

    def __init__(self, c: ProcessCluster) -> None:
        self.c = c
        self.results: list[tuple[float, int]] = []  # (answered at, status)
        self.waits: list[tuple[float, float]] = []  # (sent at, seconds to the answer)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _client(self, n: int) -> None:
        async with self.c.http(timeout=30) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                sent = time.monotonic()
                try:
                    r = await http.post(
                        "/api/chat",
                        json={
                            "model": "llama3.2:3b",
                            "messages": [{"role": "user", "content": f"client {n} message {i}"}],
                            "stream": False,
                            "options": {"num_predict": 16},
                        },
                    )
                    code = r.status_code
                except httpx.HTTPError:
                    code = 0
                self.results.append((time.monotonic(), code))
                self.waits.append((sent, time.monotonic() - sent))
                if code != 200:
                    await asyncio.sleep(0.1)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(n)) for n in range(2)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.mark.timeout(400)
async def test_coordinator_sigkill_under_load_loses_nothing_and_agents_rejoin_fast(
    cluster: ProcessCluster, figures: Record
) -> None:
    chats = ChatStream(cluster)
    chats.start()
    async with cluster.channel() as channel:
        ids = await submit_quick(channel, WORKFLOWS, "fault")
    assert len(ids) == WORKFLOWS

    async def some_stages_done() -> bool:
        return len(finished_tasks(await all_workflows(cluster))) >= 20

    await poll(some_stages_done, 120, "some stages finished", cluster, 0.2)
    before = finished_tasks(await all_workflows(cluster))
    assert cluster.coordinator is not None
    killed = time.monotonic()
    await cluster.coordinator.kill()
    assert len(before) < 2 * WORKFLOWS, "the kill came after every stage had finished"
    await asyncio.sleep(OUTAGE_SECONDS)
    await cluster.coordinator.start()
    listening = await cluster.wait_coordinator(timeout=30)
    back_at = time.monotonic()

    # Each agent's time from the coordinator listening to its node healthy again.
    rejoin = await rejoin_times(cluster, len(NODES), back_at, 30)
    await poll(
        lambda: all_succeeded(cluster),
        180,
        "every workflow succeeded after the restart",
        cluster,
        0.5,
    )
    workflows_done = time.monotonic() - killed
    # Chats succeed again once the agents are back.
    await poll(lambda: _recent_ok(chats, back_at), 30, "chats answered again", cluster, 0.1)
    await chats.stop()
    ok_again = min(t for t, code in chats.results if code == 200 and t > back_at) - back_at

    workflows = await all_workflows(cluster)
    assert sorted(w.id for w in workflows) == sorted(ids)  # none lost, none duplicated
    after = finished_tasks(workflows)
    for key, tasks in before.items():
        assert after[key] == tasks, f"stage {key} ran again after it had finished"
    assert len(after) == sum(len(w.stages) for w in workflows)
    bound = RECONNECT_MAX + 1.0
    late = [round(t, 2) for t in rejoin if t > bound]
    assert not late, f"agents rejoined later than reconnect_max_seconds + 1 s ({bound} s): {late}"

    during = [code for t, code in chats.results if killed <= t <= back_at]
    cut = sum(1 for code in during if code != 200)
    figures(
        fault=f"coordinator SIGKILL under {WORKFLOWS} workflows and 2 chat clients, "
        f"down {OUTAGE_SECONDS:.0f} s, restarted",
        outcome=f"0 of {WORKFLOWS} workflows lost, 0 stages run twice; "
        f"{cut} chat requests refused or cut while it was down (one coordinator: issue 18)",
        restart_listening_s=round(listening, 2),
        rejoin_max_s=round(max(rejoin), 2),
        rejoin_bound_s=bound,
        chats_ok_again_s=round(ok_again, 2),
        workflows_done_s=round(workflows_done, 1),
    )


async def _recent_ok(chats: ChatStream, since: float) -> bool:
    return any(code == 200 and t > since for t, code in chats.results)


@pytest.mark.slow_fault
@pytest.mark.timeout(300)
async def test_agents_rejoin_within_their_bound_after_a_30s_outage_with_default_backoff(
    tmp_path: Path, figures: Record
) -> None:
    """The issue's own measurement: a 30 s outage, agents at the default
    reconnect_max_seconds (10 s); each must be back within 11 s of the coordinator
    listening (it was 6.5, 8.3 and 15.4 s)."""
    nodes = [NodeSpec(name) for name in ("NODEA", "NODEB", "NODEC")]
    async with process_cluster(tmp_path / "cluster", nodes, reconnect=(0.2, 10.0)) as c:
        assert c.coordinator is not None
        await c.coordinator.kill()
        await asyncio.sleep(30)
        await c.coordinator.start()
        await c.wait_coordinator(timeout=30)
        back_at = time.monotonic()
        rejoin = await rejoin_times(c, len(nodes), back_at, 60)
    assert max(rejoin) <= 11.0, rejoin
    figures(
        fault="coordinator down 30 s, agents at reconnect_max_seconds 10 (slow case)",
        outcome="every agent back within reconnect_max_seconds + 1 s",
        rejoin_s=" / ".join(f"{t:.1f}" for t in rejoin),
        rejoin_bound_s=11.0,
    )


@pytest.mark.timeout(240)
async def test_an_agent_rejoins_as_fast_after_the_fifth_sigkill_as_after_the_first(
    tmp_path: Path, figures: Record
) -> None:
    """A session that was welcomed and then broke (the coordinator SIGKILLed: "Stream
    removed") starts the agent's reconnect backoff afresh. It used to count on from the
    failures before the last session, so after a few kills agents waited out a backoff of
    up to reconnect_max_seconds (bench_failover: 5.7 s p50 from a leader's SIGKILL to the
    first answer, 2.3 s once fixed)."""
    nodes = [NodeSpec(name) for name in ("NODEA", "NODEB")]
    rejoins: list[float] = []
    async with process_cluster(tmp_path / "cluster", nodes, reconnect=(0.2, 10.0)) as c:
        assert c.coordinator is not None
        for _ in range(5):
            await c.coordinator.kill()
            await asyncio.sleep(0.5)
            await c.coordinator.start()
            await c.wait_coordinator(timeout=30)
            back_at = time.monotonic()
            rejoins.append(max(await rejoin_times(c, len(nodes), back_at, 30)))
    # Each outage (the kill, 0.5 s, the coordinator's own start) costs the agent four or
    # five tries from 0.2 s doubling: back within 3.2 s of the coordinator listening.
    assert max(rejoins) < 4.0, rejoins
    figures(
        fault="coordinator SIGKILLed 5 times, 0.5 s apart plus its start; agents at "
        "reconnect_max_seconds 10",
        outcome="the backoff starts afresh after every session: as fast the fifth time",
        rejoin_s=" / ".join(f"{t:.1f}" for t in rejoins),
        rejoin_bound_s=4.0,
    )
