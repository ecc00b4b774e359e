"""Failover of the leader election alone: seconds from SIGKILL of the leader's process
until a standby holds the lease (coordinator/leader.py, issue 18).

A throwaway PostgreSQL (hive.pgtemp) holds the lease. Each round starts a leader in a
child process (this script with ``--serve``), which prints one JSON line once elected;
a standby in this process waits until it has read that leader's lease, then, at a
seeded random phase of the renew interval, the child is SIGKILLed and the time until
the standby is elected is taken. The standby then hands the lease back (``release()``)
so the next round's child leads at once. Only the election is measured: no coordinator,
no dispatch. Prints one JSON object.

    python benchmarks/bench_failover.py [--kills 12] [--lease 5] [--renew 1] [--seed 18]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from typing import TYPE_CHECKING

from harness import summary

if TYPE_CHECKING:
    from coordinator.leader import LeaderElection


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--renew", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.lease, args.renew))
        return 0
    from hive import pgtemp

    logging.basicConfig(level=logging.ERROR)  # each round's standby logs its release
    with pgtemp.temp_postgres() as server:
        result = asyncio.run(measure(server.url, args.kills, args.lease, args.renew, args.seed))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
