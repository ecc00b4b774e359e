"""The two state stores side by side: SQLite (WAL, synchronous=FULL) and PostgreSQL.

    python benchmarks/bench_store.py                       # both parts, prints JSON
    python benchmarks/bench_store.py --writes 4000 --workflows 300

``writes``: concurrent submitters, each committing a new workflow (6 rows: workflow,
2 stages, 2 tasks, artifacts) before going on, then queueing an update without waiting,
as the engine does: committed rows/s, rows per commit (group commit at work) and commit
latency. ``workflows``: the in-process seed cluster (instant emulated Ollama) runs N
"quick" workflows on each store: workflows/s to the last one finished and submit latency
(the commit before the answer). ``takeover``: what a new leader reads before it leads,
N unfinished workflows through a store opened afresh.

PostgreSQL is a throwaway server (hive.pgtemp) on this machine, switched to durable
settings (``fsync=on``, ``synchronous_commit=on``) so both stores fsync each commit.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.workflows.model import Artifact, StageRec, TaskRec, WorkflowRec
from coordinator.workflows.store import StateStore, WorkflowStore
from coordinator.workflows.store_pg import PostgresStore
from hive import pgtemp
from hive.cli.dev import DevCluster
from hive.config import CoordinatorSettings, seed_cluster
from hive.v1 import workflow_pb2, workflow_pb2_grpc


def _workflow(i: int) -> WorkflowRec:
    wf = WorkflowRec(f"wf-{i}", "bench", "r" * 200, "python", 2, "quick", "{}", float(i))
    for name in ("generate", "review"):
        stage = StageRec(name, 1, "llama3.1:8b", ())
        stage.tasks.append(TaskRec(f"t-{i}-{name}", name, name, 0, "llama3.1:8b", float(i)))
        wf.stages[name] = stage
    wf.artifacts = [Artifact("app/main.py", "x" * 500, "code", "generate")]
    return wf


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))] * 1e3, 2)


async def writes(store: StateStore, n: int, concurrency: int) -> dict[str, Any]:
    await store.open()
    latencies: list[float] = []
    try:
        start = time.perf_counter()

        async def submitter(k: int) -> None:
            for i in range(k, n, concurrency):
                wf = _workflow(i)
                t0 = time.perf_counter()
                await store.commit_or_withdraw(store.save_all(wf))
                latencies.append(time.perf_counter() - t0)
                wf.state = 3
                store.save_workflow(wf)

        await asyncio.gather(*(submitter(k) for k in range(concurrency)))
        await store.flush()
        elapsed = time.perf_counter() - start
        ops, commits = store.stats.operations, store.stats.commits
    finally:
        await store.close()
    return {
        "rows_committed": ops,
        "rows_per_s": round(ops / elapsed),
        "submits_per_s": round(n / elapsed),
        "commits": commits,
        "rows_per_commit": round(ops / commits, 1),
        "commit_p50_ms": _pct(latencies, 0.5),
        "commit_p99_ms": _pct(latencies, 0.99),
    }


async def takeover(make: Any, n: int) -> dict[str, Any]:
    """What a new leader reads before it leads: ``n`` unfinished workflows (each with two
    stages, two tasks and an artifact), through a store opened afresh."""
    store: StateStore = make()
    await store.open()
    for i in range(n):
        wf = _workflow(1_000_000 + i)
        wf.state = workflow_pb2.WORKFLOW_STATE_RUNNING
        store.save_all(wf)
    await store.flush()
    await store.close()
    fresh: StateStore = make()
    t0 = time.perf_counter()
    await fresh.open()
    t1 = time.perf_counter()
    loaded = await fresh.unfinished()
    t2 = time.perf_counter()
    await fresh.close()
    return {
        "unfinished_workflows": len(loaded),
        "open_ms": round((t1 - t0) * 1e3, 1),
        "load_ms": round((t2 - t1) * 1e3, 1),
    }


async def workflows(settings: CoordinatorSettings, n: int) -> dict[str, Any]:
    cluster = DevCluster(
        dataclasses.replace(seed_cluster(), coordinator=settings),
        coordinator_listen="127.0.0.1:0",
        gateway_port=None,
        time_scale=0.0,
        state_path=None,
        store=None,
    )
    await cluster.start()
    await cluster.wait_registered()
    latencies: list[float] = []
    try:
        async with grpc.aio.insecure_channel(cluster.coordinator_address) as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)

            async def submit(i: int) -> None:
                t0 = time.perf_counter()
                await stub.SubmitWorkflow(
                    workflow_pb2.SubmitWorkflowRequest(
                        requirements=f"write a small python module number {i}", pipeline="quick"
                    )
                )
                latencies.append(time.perf_counter() - t0)

            start = time.perf_counter()
            await asyncio.gather(*(submit(i) for i in range(n)))
            engine = cluster.coordinator.workflows  # type: ignore[union-attr]
            await asyncio.gather(*(run.done.wait() for run in list(engine._runs.values())))
            elapsed = time.perf_counter() - start
            store = cluster.coordinator.workflow_store  # type: ignore[union-attr]
            listed = await stub.ListWorkflows(
                workflow_pb2.ListWorkflowsRequest(
                    state=workflow_pb2.WORKFLOW_STATE_SUCCEEDED, page_size=1000
                )
            )
    finally:
        await cluster.stop()
    return {
        "workflows": n,
        "succeeded": len(listed.workflows),
        "workflows_per_s": round(n / elapsed, 1),
        "submit_p50_ms": _pct(latencies, 0.5),
        "submit_p99_ms": _pct(latencies, 0.99),
        "rows_per_commit": round(store.stats.operations / max(1, store.stats.commits), 1),
        "tasks_per_s": round(n * 3 / elapsed, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine_cores": __import__("os").cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, pgtemp.temp_postgres() as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = on")
            conn.execute("ALTER SYSTEM SET synchronous_commit = on")
            conn.execute("SELECT pg_reload_conf()")
        out["postgres_fsync"] = "on"
        with psycopg.connect(server.url, autocommit=True) as conn:
            for db in ("w", "f", "t"):
                conn.execute(f"CREATE DATABASE {db}")
        base = server.url.rsplit("/", 1)[0]
        out["writes"] = {
            "sqlite": await writes(WorkflowStore(f"{tmp}/w.sqlite"), args.writes, args.concurrency),
            "postgresql": await writes(PostgresStore(f"{base}/w"), args.writes, args.concurrency),
            "concurrency": args.concurrency,
        }
        out["takeover"] = {
            "sqlite": await takeover(lambda: WorkflowStore(f"{tmp}/t.sqlite"), args.unfinished),
            "postgresql": await takeover(lambda: PostgresStore(f"{base}/t"), args.unfinished),
        }
        sqlite = CoordinatorSettings(listen="127.0.0.1:0", state_path=f"{tmp}/f.sqlite")
        out["workflows"] = {
            "sqlite": await workflows(sqlite, args.workflows),
            "postgresql": await workflows(
                dataclasses.replace(sqlite, store=f"{base}/f"), args.workflows
            ),
        }
    w = out["workflows"]
    out["postgresql_vs_sqlite_workflows"] = round(
        w["postgresql"]["workflows_per_s"] / w["sqlite"]["workflows_per_s"], 2
    )
    out["postgresql_vs_sqlite_writes"] = round(
        out["writes"]["postgresql"]["rows_per_s"] / out["writes"]["sqlite"]["rows_per_s"], 2
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=3000, help="submissions in the write test")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument(
        "--unfinished", type=int, default=2000, help="unfinished workflows a new leader loads"
    )
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(json.dumps(result, indent=2))
