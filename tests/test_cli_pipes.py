"""``hive`` as a tool in scripts (issue 21): output into a pipe that closed early ends the
command quietly, as git does, instead of with a BrokenPipeError traceback; a count that
cannot be one is refused before anything is asked of the coordinator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import running_dev

ROOT = Path(__file__).resolve().parent.parent


def hive_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``hive ARGS`` with its output going to a pipe nobody reads any more (the reader
    of ``| head -0`` is gone before hive writes a byte)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "hive.cli", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)


async def test_a_pipe_closed_early_ends_hive_status_quietly_with_sigpipes_status() -> None:
    async with running_dev() as dev:
        done = await asyncio.to_thread(
            hive_into_closed_pipe, "status", "--json", "--coordinator", dev.coordinator_address
        )
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert done.returncode == 141  # 128 + SIGPIPE: what a shell shows for git


def test_hive_workflows_refuses_a_limit_below_one() -> None:
    for limit, says in (("-1", "must be at least 1, got -1"), ("0", "got 0"), ("x", "'x'")):
        done = subprocess.run(
            [sys.executable, "-m", "hive.cli", "workflows", "--limit", limit],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "argument --limit: " in done.stderr, done.stderr
        assert says in done.stderr
