"""Workflow throughput, submit latency, state-store group commit, and a real SIGKILL crash.

    python benchmarks/bench_workflows.py --workflows 1000          # in-process dev cluster
    python benchmarks/bench_workflows.py --crash 200               # `hive dev` killed, restarted

The first submits N small workflows ("quick": generate then review) at once to an
in-process dev cluster with instant emulated Ollama and reports workflows/s, submit
latency and the coordinator's memory, plus how many state writes shared each commit.
The second runs `hive dev` as a subprocess, submits N workflows, SIGKILLs it mid-run,
starts it again on the same state file and checks that every workflow finishes, that
no stage that had finished ran again and that none was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import free_port

from hive.cli.dev import DevCluster
from hive.config import CoordinatorSettings, seed_cluster
from hive.v1 import workflow_pb2, workflow_pb2_grpc

DONE = {3, 4, 5}


async def throughput(n: int, pipeline: str, accept_only: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = CoordinatorSettings(listen="127.0.0.1:0", state_path=f"{tmp}/state.sqlite")
        cluster = DevCluster(
            dataclasses.replace(seed_cluster(), coordinator=settings),
            coordinator_listen="127.0.0.1:0",
            gateway_port=None,
            time_scale=0.0,
            state_path=None,
        )
        await cluster.start()
        await cluster.wait_registered()
        assert cluster.coordinator is not None
        store = cluster.coordinator.workflow_store
        if accept_only:
            from coordinator.workflows.engine import PriorityGate

            # No task ever gets a slot: this measures accepting alone.
            cluster.coordinator.workflows.gate = PriorityGate(0)
        try:
            async with grpc.aio.insecure_channel(cluster.coordinator_address) as channel:
                stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
                latencies: list[float] = []

                async def submit(i: int) -> str:
                    t0 = time.perf_counter()
                    r = await stub.SubmitWorkflow(
                        workflow_pb2.SubmitWorkflowRequest(
                            requirements=f"write a small python module number {i}",
                            pipeline=pipeline,
                        )
                    )
                    latencies.append(time.perf_counter() - t0)
                    return r.workflow.id

                start = time.perf_counter()
                await asyncio.gather(*(submit(i) for i in range(n)))
                accepted = time.perf_counter() - start
                ops0, commits0 = store.stats.operations, store.stats.commits
                # Done when nothing is pending or running (cheap: one row per query).
                while not accept_only:
                    busy = 0
                    for state in (
                        workflow_pb2.WORKFLOW_STATE_PENDING,
                        workflow_pb2.WORKFLOW_STATE_RUNNING,
                    ):
                        page = await stub.ListWorkflows(
                            workflow_pb2.ListWorkflowsRequest(state=state, page_size=1)
                        )
                        busy += len(page.workflows)
                    if not busy:
                        break
                    await asyncio.sleep(0.2)
                total = time.perf_counter() - start
            latencies.sort()
            rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{n} workflows ({pipeline} pipeline) on the in-process seed cluster")
            print(f"  all accepted in {accepted:.2f}s ({n / accepted:.0f} submits/s)")
            print(
                f"  submit latency p50 {latencies[n // 2] * 1e3:.1f} ms, "
                f"p99 {latencies[int(n * 0.99) - 1] * 1e3:.1f} ms (commit before answer)"
            )
            print(f"  all finished in {total:.2f}s: {n / total:.1f} workflows/s")
            print(
                f"  state writes {store.stats.operations} in {store.stats.commits} commits "
                f"(largest batch {store.stats.largest_batch}); during the run "
                f"{store.stats.operations - ops0} in {store.stats.commits - commits0}"
            )
            print(
                f"  peak RSS of the process (coordinator + 5 agents + emulators): {rss_mib:.0f} MiB"
            )
        finally:
            await cluster.stop()


def finished_tasks(state: Path) -> dict[tuple[str, str], set[str]]:
    conn = sqlite3.connect(state)
    try:
        out: dict[tuple[str, str], set[str]] = {}
        for wf, stage, task in conn.execute(
            "SELECT t.workflow_id, t.stage, t.task_id FROM tasks t JOIN stages s"
            " ON s.workflow_id = t.workflow_id AND s.name = t.stage"
            " WHERE s.state = 3 AND t.state = 3"
        ):
            out.setdefault((wf, stage), set()).add(task)
        return out
    finally:
        conn.close()


def start_dev(port: int, state: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HIVE_DEV_STATE": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "hive.cli", "dev", "--no-gateway", "--listen",
         f"127.0.0.1:{port}", "--time-scale", "0.01"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)


async def crash(n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.sqlite"
        port = free_port()
        address = f"127.0.0.1:{port}"
        proc = start_dev(port, state)
        await wait_serving(address)
        await asyncio.sleep(2)  # agents register
        async with grpc.aio.insecure_channel(address) as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
            ids = [
                (
                    await stub.SubmitWorkflow(
                        workflow_pb2.SubmitWorkflowRequest(
                            requirements=f"service {i}", pipeline="full", request_id=f"crash-{i}"
                        )
                    )
                ).workflow.id
                for i in range(n)
            ]
        while len({wf for wf, _ in finished_tasks(state)}) < n // 4:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = finished_tasks(state)
        print(f"SIGKILL with {len(before)} stages finished across {n} workflows")
        proc = start_dev(port, state)
        try:
            await wait_serving(address)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
                t0 = time.perf_counter()
                while True:
                    got = [
                        (await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=i))).workflow
                        for i in ids
                    ]
                    if all(w.state in DONE for w in got):
                        break
                    if time.perf_counter() - t0 > 300:
                        print("not all finished within 300 s")
                        return 1
                    await asyncio.sleep(0.5)
                listed = 0
                token = ""
                while True:
                    page = await stub.ListWorkflows(
                        workflow_pb2.ListWorkflowsRequest(page_size=500, page_token=token)
                    )
                    listed += len(page.workflows)
                    token = page.next_page_token
                    if not token:
                        break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        after = finished_tasks(state)
        succeeded = sum(w.state == 3 for w in got)
        rerun = [k for k, v in before.items() if after.get(k) != v]
        print(f"after restart: {succeeded}/{n} succeeded, {listed} listed (expect {n})")
        print(f"finished stages run again: {len(rerun)}")
        return 0 if succeeded == n and listed == n and not rerun else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--pipeline", default="quick")
    parser.add_argument("--crash", type=int, default=0, help="run the SIGKILL test with N")
    parser.add_argument("--accept-only", action="store_true", help="measure submits alone")
    args = parser.parse_args()
    if args.crash:
        return asyncio.run(crash(args.crash))
    asyncio.run(throughput(args.workflows, args.pipeline, args.accept_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
