"""Leader failover, two ways (issue 18). Prints one JSON object.

**End to end** (the default): the real processes as an operator runs them (tests/faults'
``ProcessCluster``: three ``hive coordinator`` on a throwaway PostgreSQL, agents with
instant emulators, mutual TLS and API tokens), a steady stream of one-token generate
requests from several clients that try every coordinator in turn, and the leader
SIGKILLed ``--kills`` times (each time restarted as a standby, as systemd would). Taken:
seconds from the SIGKILL to the first request answered through the new leader: an upper
bound of "the first task the new leader dispatched" (an answer costs milliseconds here).

**``--election-only``**: seconds from SIGKILL of the leader's process until a standby
holds the lease (coordinator/leader.py):

A throwaway PostgreSQL (hive.pgtemp) holds the lease. Each round starts a leader in a
child process (this script with ``--serve``), which prints one JSON line once elected;
a standby in this process waits until it has read that leader's lease, then, at a
seeded random phase of the renew interval, the child is SIGKILLed and the time until
the standby is elected is taken. The standby then hands the lease back (``release()``)
so the next round's child leads at once. Only the election is measured: no coordinator,
no dispatch. Prints one JSON object.

    python benchmarks/bench_failover.py [--kills 10] [--lease 2.5] [--renew 0.5] [--seed 18]
    python benchmarks/bench_failover.py --election-only [--kills 12] ...
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import os
import random
import signal
import sys
import time
from typing import TYPE_CHECKING

import grpc
from harness import summary

if TYPE_CHECKING:
    from coordinator.leader import LeaderElection
    from tests.faults.harness import ProcessCluster


async def serve(holder: str, lease: float, renew: float) -> None:
    """The child: lead (or wait to), print ``{"epoch": N}`` once elected, run on."""
    from coordinator.leader import LeaderElection

    election = LeaderElection(
        os.environ["HIVE_LEADER_URL"],
        holder,
        f"{holder}:50051",
        lease_seconds=lease,
        renew_seconds=renew,
    )
    election.on_change(
        lambda leader, epoch: leader and print(json.dumps({"epoch": epoch}), flush=True)
    )
    await election.run()


async def sees(standby: LeaderElection, holder: str, timeout: float) -> None:
    """Until ``standby`` has read ``holder``'s lease (polled every 10 ms)."""
    async with asyncio.timeout(timeout):
        while True:
            if standby.leader_holder == holder:
                return
            await asyncio.sleep(0.01)


async def measure(url: str, kills: int, lease: float, renew: float, seed: int) -> dict[str, object]:
    from coordinator.leader import LeaderElection

    rng = random.Random(seed)
    takeovers: list[float] = []
    epochs: list[int] = []
    for round_ in range(kills):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            *("--serve", f"leader-{round_}", "--lease", str(lease), "--renew", str(renew)),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "HIVE_LEADER_URL": url},
        )
        try:
            assert child.stdout is not None
            elected = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
            standby = LeaderElection(
                url, f"standby-{round_}", "standby:50051", lease_seconds=lease, renew_seconds=renew
            )
            async with asyncio.TaskGroup() as group:
                task = group.create_task(standby.run())
                await sees(standby, f"leader-{round_}", lease + 10)
                await asyncio.sleep(rng.uniform(0, renew))
                child.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                epoch = await asyncio.wait_for(standby.wait_elected(), lease + renew + 10)
                takeovers.append(time.perf_counter() - killed)
                assert epoch == elected["epoch"] + 1, (epoch, elected)
                epochs.append(epoch)
                task.cancel()
            await standby.release()
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
    return {
        "benchmark": "failover (election only): SIGKILL of the leader -> standby elected",
        "lease_seconds": lease,
        "renew_seconds": renew,
        "kills": kills,
        "seed": seed,
        **summary(takeovers),
        "max_ms": round(max(takeovers) * 1000, 3),
        "min_ms": round(min(takeovers) * 1000, 3),
        "takeovers_s": [round(t, 3) for t in takeovers],
        "epochs": epochs,
    }


class Clients:
    """``workers`` clients, each sending one-token generates to every coordinator in turn
    (a standby refuses at once), recording when each answer came and from which."""

    def __init__(self, cluster: ProcessCluster, workers: int) -> None:
        self.cluster = cluster
        self.workers = workers
        self.answers: list[tuple[float, int]] = []
        self.refused = 0
        self._news = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def first_after(self, since: float, not_index: int) -> float | None:
        start = bisect.bisect_right(self.answers, (since, len(self.cluster.coordinator_ports)))
        for t, i in self.answers[start:]:
            if i != not_index:
                return t
        return None

    async def answered(self, since: float, not_index: int, timeout: float) -> None:
        """Until an answer came after ``since`` from a coordinator other than
        ``not_index``."""
        async with asyncio.timeout(timeout):
            while self.first_after(since, not_index) is None:
                self._news.clear()
                await self._news.wait()

    async def _worker(self, worker: int) -> None:
        from hive.tls import channel, token_interceptors
        from hive.v1 import inference_pb2, inference_pb2_grpc

        cluster = self.cluster
        assert cluster.admin is not None
        channels = [
            channel(
                cluster.coordinator_address_of(i),
                cluster.admin,
                interceptors=token_interceptors(lambda: cluster.admin_token),
            )
            for i in range(len(cluster.coordinator_ports))
        ]
        request = inference_pb2.GenerateRequest(model="llama3.2:3b", prompt=f"hi {worker}")
        request.options.update({"num_predict": 1})
        try:
            i = worker
            while True:
                i = (i + 1) % len(channels)
                if not cluster.coordinator_procs[i].running:
                    continue
                stub = inference_pb2_grpc.InferenceServiceStub(channels[i])
                try:
                    async for _ in stub.Generate(request, timeout=2.0):
                        pass
                except grpc.aio.AioRpcError:
                    self.refused += 1
                    await asyncio.sleep(0.01)
                    continue
                self.answers.append((time.perf_counter(), i))
                self._news.set()
        finally:
            for ch in channels:
                await ch.close()


async def end_to_end(
    url: str, kills: int, lease: float, renew: float, seed: int, workers: int
) -> dict[str, object]:
    import tempfile
    from pathlib import Path

    from tests.faults.harness import NodeSpec, process_cluster

    rng = random.Random(seed)
    failovers: list[float] = []
    root = Path(tempfile.mkdtemp(prefix="hive-bench-failover-"))
    nodes = [NodeSpec(f"NODE{c}") for c in "AB"]
    async with process_cluster(
        root,
        nodes,
        time_scale=0.0,
        reconnect=(0.2, 10.0),
        coordinators=3,
        store=url,
        lease=(lease, renew),
    ) as cluster:
        clients = Clients(cluster, workers)
        clients.start()
        try:
            for _ in range(kills):
                leader = await cluster.leader_index(timeout=2.0)
                assert leader is not None, "no leader"
                # Answers flowing through this leader before it is killed.
                since = time.perf_counter()
                await clients.answered(since, -1, 30)
                await asyncio.sleep(1.0 + rng.uniform(0, renew))
                killed = time.perf_counter()
                await cluster.coordinator_procs[leader].kill()
                await clients.answered(killed, leader, 60)
                first = clients.first_after(killed, leader)
                assert first is not None
                failovers.append(first - killed)
                await cluster.coordinator_procs[leader].start()
                await asyncio.sleep(2.0)  # it is back as a standby
        finally:
            await clients.stop()
    return {
        "benchmark": "failover end to end: SIGKILL of the leader -> first request answered "
        "through the new leader (real processes, mTLS, 3 coordinators, 2 agents)",
        "lease_seconds": lease,
        "renew_seconds": renew,
        "kills": kills,
        "clients": workers,
        "seed": seed,
        **summary(failovers),
        "max_ms": round(max(failovers) * 1000, 3),
        "min_ms": round(min(failovers) * 1000, 3),
        "failovers_s": [round(t, 3) for t in failovers],
        "answers": len(clients.answers),
        "refusals": clients.refused,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--election-only", action="store_true")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=float, default=2.5)
    parser.add_argument("--renew", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.lease, args.renew))
        return 0
    from hive import pgtemp

    logging.basicConfig(level=logging.ERROR)  # each round's standby logs its release
    with pgtemp.temp_postgres() as server:
        if args.election_only:
            run = measure(server.url, args.kills, args.lease, args.renew, args.seed)
        else:
            run = end_to_end(
                server.url, args.kills, args.lease, args.renew, args.seed, args.clients
            )
        result = asyncio.run(run)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
