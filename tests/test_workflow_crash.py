"""A coordinator SIGKILLed mid-run loses nothing: the real process, the real signal."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from hive.v1 import cluster_pb2, workflow_pb2, workflow_pb2_grpc
from tests.conftest import eventually

WORKFLOWS = 200
ROOT = Path(__file__).resolve().parent.parent


class DevProcess:
    """`hive dev` as a child process on free ports, with its state in ``state``."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""

    async def start(self) -> None:
        env = {**os.environ, "HIVE_DEV_STATE": str(self.state)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hive.cli",
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--no-gateway",
            "--time-scale",
            "0.2",
            "--metrics-listen",
            "off",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            while not self.address:
                line = (await self.process.stdout.readline()).decode()
                assert line, "hive dev exited before it was up"
                found = re.search(r"coordinator gRPC\s+(\S+)", line)
                if found:
                    self.address = found.group(1)
        # Keep draining stdout so the child never blocks on a full pipe.
        self._drain = asyncio.create_task(self._read_rest())

    async def _read_rest(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while await self.process.stdout.readline():
            pass

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self._drain.cancel()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(20):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[Path]:
    yield tmp_path / "crash.sqlite"


async def workflows_on(channel: grpc.aio.Channel) -> list[workflow_pb2.Workflow]:
    """Every workflow the coordinator behind ``channel`` knows, whole."""
    stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
    ids = []
    token = ""
    while True:
        page = await stub.ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(page_size=200, page_token=token), timeout=10
        )
        ids += [w.id for w in page.workflows]
        token = page.next_page_token
        if not token:
            break
    return [
        (await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=i), timeout=10)).workflow
        for i in ids
    ]


async def all_workflows(address: str) -> list[workflow_pb2.Workflow]:
    async with grpc.aio.insecure_channel(address) as channel:
        return await workflows_on(channel)


async def submit_quick(
    channel: grpc.aio.Channel, n: int, prefix: str, timeout: float = 60
) -> set[str]:
    """Submit ``n`` workflows of the quick pipeline at once (request ids PREFIX-i, so a
    retried submission finds its first), each within ``timeout`` seconds; their ids."""
    stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
    accepted = await asyncio.gather(
        *(
            stub.SubmitWorkflow(
                workflow_pb2.SubmitWorkflowRequest(
                    name=f"{prefix} {i}",
                    requirements=f"a tiny service number {i}",
                    language="python",
                    pipeline="quick",
                    request_id=f"{prefix}-{i}",
                ),
                timeout=timeout,
            )
            for i in range(n)
        )
    )
    return {r.workflow.id for r in accepted}


def finished_tasks(workflows: list[workflow_pb2.Workflow]) -> dict[tuple[str, str], set[str]]:
    """(workflow, stage) -> ids of the tasks that succeeded there."""
    return {
        (w.id, s.name): {t.task_id for t in s.tasks if t.state == cluster_pb2.TASK_STATE_SUCCEEDED}
        for w in workflows
        for s in w.stages
        if s.state == cluster_pb2.TASK_STATE_SUCCEEDED
    }


async def test_sigkill_mid_run_then_restart_finishes_every_workflow_once(state: Path) -> None:
    dev = DevProcess(state)
    await dev.start()
    try:
        async with grpc.aio.insecure_channel(dev.address) as channel:
            ids = await submit_quick(channel, WORKFLOWS, "crash")
        assert len(ids) == WORKFLOWS

        async def some_stages_done() -> bool:
            return len(finished_tasks(await all_workflows(dev.address))) >= 20

        await eventually(some_stages_done, timeout=60, what="some stages finished")
        before = finished_tasks(await all_workflows(dev.address))
        await dev.kill()
        # The kill came mid-run: stages of the quick pipeline (2 per workflow) were unfinished.
        assert len(before) < 2 * WORKFLOWS

        dev = DevProcess(state)
        await dev.start()

        async def all_done() -> bool:
            workflows = await all_workflows(dev.address)
            return all(w.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED for w in workflows)

        await eventually(all_done, timeout=120, what="every workflow succeeded after restart")
        workflows = await all_workflows(dev.address)
    finally:
        await dev.stop()
    assert sorted(w.id for w in workflows) == sorted(ids)  # none lost, none duplicated
    after = finished_tasks(workflows)
    for key, tasks in before.items():
        # A stage that had finished kept its tasks: it was not run again.
        assert after[key] == tasks, key
    assert len(after) == sum(len(w.stages) for w in workflows)
