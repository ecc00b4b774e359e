"""The coordinator's state disk full, then read-only, under a running cluster.

The state directory is a small ext4 filesystem of its own. While its disk refuses writes the
coordinator refuses new workflows with UNAVAILABLE and a message naming the disk, holds
what it had accepted in memory (their stages wait at their durability barriers), keeps
serving chats (no state), and writes everything once the disk takes writes again: a
SIGKILL after that finds every accepted workflow finished in the state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from hive.v1 import workflow_pb2, workflow_pb2_grpc
from tests.faults.conftest import Record, root_tools_missing
from tests.faults.harness import NodeSpec, ProcessCluster, poll, process_cluster, run
from tests.faults.test_agent_faults import generate
from tests.faults.test_coordinator_faults import MODELS, all_succeeded, all_workflows

NODES = [NodeSpec(name, models=MODELS) for name in ("NODEA", "NODEB")]

missing = root_tools_missing()
pytestmark = pytest.mark.skipif(
    bool(missing) and not os.environ.get("CI"), reason=missing or "runs as root"
)


@pytest.fixture
def state_mount(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB ext4 filesystem on a loop device, for the coordinator's state alone."""
    image, mount = tmp_path / "state.img", tmp_path / "state"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(16 << 20)
    run("mkfs.ext4", "-q", "-m", "0", str(image))
    run("mount", "-o", "loop", str(image), str(mount))
    try:
        yield mount
    finally:
        for path in mount.glob("*"):
            subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def immutable(mount: Path, on: bool) -> None:
    """Make the state files refuse every write (EPERM, even to open files and to root), as
    a filesystem the kernel turned read-only does. (A read-only remount is refused while
    the coordinator holds its database open for writing, and this kernel has no
    device-mapper to fail the disk underneath.)"""
    # Not the -shm index: SQLite maps it into memory, and a store into a mapped page of an
    # immutable file is a SIGBUS, not an error a program can answer.
    for name in ("state.sqlite", "state.sqlite-wal"):
        run("chattr", "+i" if on else "-i", str(mount / name))


@pytest.fixture
async def cluster(tmp_path: Path, state_mount: Path) -> AsyncIterator[ProcessCluster]:
    async with process_cluster(
        tmp_path / "cluster", NODES, time_scale=0.05, state_dir=state_mount
    ) as c:
        yield c


def fill(mount: Path) -> Path:
    """Fill the filesystem to the last byte."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


async def submit(stub: workflow_pb2_grpc.WorkflowServiceStub, n: str) -> str:
    reply = await stub.SubmitWorkflow(
        workflow_pb2.SubmitWorkflowRequest(
            name=f"disk {n}", requirements=f"a tool {n}", pipeline="quick", request_id=n
        ),
        timeout=20,
    )
    return str(reply.workflow.id)


async def refused_while(
    stub: workflow_pb2_grpc.WorkflowServiceStub, label: str, accepted: set[str]
) -> tuple[grpc.aio.AioRpcError, float]:
    """Submit until one is refused (the disk may take a few writes into pages it had):
    the refusal and how long it took to come."""
    start = time.monotonic()
    for i in range(200):
        t0 = time.monotonic()
        try:
            accepted.add(await submit(stub, f"{label}-{i}"))
        except grpc.aio.AioRpcError as err:
            return err, time.monotonic() - t0
        if time.monotonic() - start > 30:
            break
    raise AssertionError(f"{label}: no submission was refused with the disk refusing writes")


async def test_state_disk_full_then_read_only(
    cluster: ProcessCluster, state_mount: Path, figures: Record
) -> None:
    accepted: set[str] = set()
    async with cluster.channel() as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        accepted |= set(await asyncio.gather(*(submit(stub, f"before-{i}") for i in range(30))))

        # --- full ----------------------------------------------------------------------
        filler = fill(state_mount)
        refusal, refused_in = await refused_while(stub, "full", accepted)
        assert refusal.code() == grpc.StatusCode.UNAVAILABLE, refusal
        assert "refuses writes" in (refusal.details() or ""), refusal.details()
        assert "disk is full" in (refusal.details() or ""), refusal.details()
        # Chats keep being served: they need no state.
        chats = await asyncio.gather(
            *(generate(cluster, f"chat {i}", {"num_predict": 8}) for i in range(4))
        )
        assert all(code == 200 for code, _ in chats), chats
        # A resubmission of an accepted workflow still finds it.
        again = await stub.SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(
                requirements="a tool before-0", pipeline="quick", request_id="before-0"
            ),
            timeout=10,
        )
        assert again.workflow.id in accepted
        filler.unlink()

        async def accepts_again() -> bool:
            try:
                accepted.add(await submit(stub, f"after-full-{time.monotonic()}"))
            except grpc.aio.AioRpcError:
                return False
            return True

        recovered_full = await poll(accepts_again, 30, "submissions accepted again", cluster, 0.2)

        # --- read-only -----------------------------------------------------------------
        immutable(state_mount, True)
        ro_refusal, ro_refused_in = await refused_while(stub, "ro", accepted)
        assert ro_refusal.code() == grpc.StatusCode.UNAVAILABLE, ro_refusal
        assert "refuses writes" in (ro_refusal.details() or ""), ro_refusal.details()
        immutable(state_mount, False)
        recovered_ro = await poll(accepts_again, 30, "accepted once writable again", cluster, 0.2)

    await poll(
        lambda: all_succeeded(cluster), 120, "every accepted workflow succeeded", cluster, 0.5
    )
    # What was held in memory reached the disk: a SIGKILL now loses none of it.
    assert cluster.coordinator is not None
    await cluster.coordinator.kill()
    await cluster.coordinator.start()
    await cluster.wait_coordinator()
    workflows = await all_workflows(cluster)
    assert {w.id for w in workflows} == accepted
    assert all(w.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED for w in workflows)
    figures(
        fault="coordinator state disk full (ext4 on a loop device), then space freed; "
        "then its files read-only (chattr +i), then writable",
        outcome=f"new workflows refused UNAVAILABLE naming the disk; chats served; "
        f"{len(accepted)} accepted workflows all finished and on disk after a SIGKILL",
        refusal_s=round(refused_in, 3),
        accepts_after_free_s=round(recovered_full, 2),
        ro_refusal_s=round(ro_refused_in, 3),
        accepts_after_rw_s=round(recovered_ro, 2),
    )
