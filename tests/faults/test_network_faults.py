"""Network faults between an agent and the coordinator, on a real link.

NODEB's agent and its Ollama run in their own network namespace, joined to this
machine's by a veth pair (RFC 2544 addresses that lead nowhere else). Cutting the link
drops every packet both ways without a reset, as a switch or a cable would; a token
bucket on both ends makes it slow and lossy.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive.v1 import common_pb2
from tests.faults.conftest import Record, root_tools_missing
from tests.faults.harness import NodeSpec, ProcessCluster, poll, process_cluster
from tests.faults.test_agent_faults import LONG, generate, running_on

# NODEB sends its output every 20 ms (a chat UI that wants every token): the stream of
# small messages a slow, lossy link between agent and coordinator has to carry.
NODES = [
    NodeSpec("NODEA"),
    NodeSpec("NODEB", netns=True, chunk_max_seconds=0.02),
    NodeSpec("NODEC"),
]

missing = root_tools_missing()
pytestmark = pytest.mark.skipif(
    bool(missing) and not os.environ.get("CI"), reason=missing or "runs as root"
)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    async with process_cluster(tmp_path / "cluster", NODES) as c:
        yield c


@pytest.fixture
async def default_liveness_cluster(tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    """The same cluster with the coordinator's default liveness (heartbeat 1 s, suspect
    3 s, lost 6 s), as operators run it. The suite's fast settings (lost after 2 s) are for
    measuring detection; on a 64 kbit/s link that drops packets, TCP's retransmission
    backoff alone can hold every byte of a node for 2 s while it is alive and serving."""
    async with process_cluster(tmp_path / "cluster", NODES, liveness=(1.0, 3.0, 6.0)) as c:
        yield c


async def test_partition_moves_the_nodes_tasks_and_it_rejoins_when_healed(
    cluster: ProcessCluster, figures: Record
) -> None:
    # Enough requests to fill every node's four slots: NODEB gets some.
    requests = [
        asyncio.create_task(generate(cluster, f"partition case {i}", LONG)) for i in range(14)
    ]

    async def b_busy() -> bool:
        return await running_on(cluster, "NODEB") >= 1

    await poll(b_busy, 30, "tasks running on NODEB", cluster)
    on_b = await running_on(cluster, "NODEB")
    cut = time.monotonic()
    cluster.cut("NODEB")
    suspect = await cluster.wait_state("NODEB", common_pb2.NODE_STATE_SUSPECT, timeout=10)
    lost = await cluster.wait_state("NODEB", common_pb2.NODE_STATE_LOST, timeout=10)
    results = await asyncio.wait_for(asyncio.gather(*requests), 120)
    answered = time.monotonic() - cut
    failed = [r for r in results if r[0] != 200 or not r[1]]
    assert not failed, f"{len(failed)} of {len(results)} failed: {failed[:3]}"
    # The others keep serving while NODEB is cut off.
    during = await asyncio.gather(
        *(generate(cluster, f"during {i}", {"num_predict": 8}) for i in range(6))
    )
    assert all(code == 200 for code, _ in during), during
    await asyncio.sleep(4.0)  # a partition of a few seconds more
    healed = time.monotonic()
    cluster.heal("NODEB")
    rejoin = await cluster.wait_healthy({"NODEB"}, timeout=60)
    # The agent noticed the silence itself (a health check on the session's connection)
    # and redials with a short connect timeout, instead of waiting for TCP to resend on
    # its own backoff (6.7 s after an 8 s partition before; minutes after a long one).
    bound = cluster.reconnect[1] + 2.0
    assert rejoin <= bound, f"NODEB rejoined {rejoin:.1f} s after the heal (bound {bound} s)"
    partition_s = healed - cut
    figures(
        fault=f"network partition agent <-> coordinator ({partition_s:.0f} s), then healed",
        outcome=f"{on_b} running tasks re-run elsewhere; 0 of 14 requests failed; "
        "the others kept serving; it rejoins",
        detect_suspect_s=round(suspect, 2),
        detect_lost_s=round(suspect + lost, 2),
        all_answered_s=round(answered, 2),
        rejoin_after_heal_s=round(rejoin, 2),
    )


async def stream_generate(
    c: ProcessCluster, prompt: str, options: dict[str, int]
) -> tuple[int, str]:
    """A streamed /api/generate through the gateway: its status and the text of its lines."""
    text: list[str] = []
    async with c.http(timeout=120) as http:
        body = {"model": "llama3.2:3b", "prompt": prompt, "stream": True, "options": options}
        async with http.stream("POST", "/api/generate", json=body) as r:
            async for line in r.aiter_lines():
                if line:
                    item = json.loads(line)
                    text.append(item.get("response") or item.get("error", ""))
    return r.status_code, "".join(text)


async def test_slow_lossy_link_still_serves_and_the_node_stays_in(
    default_liveness_cluster: ProcessCluster, figures: Record
) -> None:
    cluster = default_liveness_cluster
    results: list[float] = []

    async def one(i: int) -> None:
        # Streamed: a whole answer is one message now, too little traffic for the link to
        # drop anything; a stream's chunks are what a slow link between agent and
        # coordinator carries most of.
        t0 = time.monotonic()
        code, text = await stream_generate(cluster, f"slow link {i}", {"num_predict": 256})
        assert code == 200 and text, (code, text)
        results.append(time.monotonic() - t0)

    await asyncio.gather(*(one(i) for i in range(24)))  # loads the model everywhere
    results.clear()
    await asyncio.gather(*(one(i) for i in range(24)))  # the same load, link unthrottled
    baseline = statistics.median(results)
    results.clear()
    cluster.slow("NODEB")
    try:
        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(24)))
        elapsed = time.monotonic() - started
        states = await cluster.node_states()
        # Heartbeats still arrive through the slow link: the node was never lost.
        assert states["NODEB"] in (
            common_pb2.NODE_STATE_HEALTHY,
            common_pb2.NODE_STATE_SUSPECT,
        ), f"{states}\n{cluster.logs()}"
        reply = await cluster.status()
        b = next(n for n in reply.nodes if n.info.name == "NODEB")
        assert b.reconnects == 0, f"the slow link broke NODEB's session\n{cluster.logs()}"
        sent, dropped = cluster.link_stats("NODEB")
        assert dropped > 0, "the link dropped nothing: it was not lossy"
    finally:
        cluster.unslow("NODEB")
    latencies = sorted(results)
    figures(
        fault="slow, lossy link agent <-> coordinator (tbf 64 kbit/s, 2 KB bucket, 100 ms queue)",
        outcome="24 of 24 requests answered (TCP resent what the link dropped); NODEB kept "
        "its session",
        packets=sent,
        dropped=dropped,
        p50_unthrottled_s=round(baseline, 2),
        p50_s=round(statistics.median(latencies), 2),
        max_s=round(latencies[-1], 2),
        elapsed_s=round(elapsed, 2),
    )
