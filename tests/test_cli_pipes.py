"""``hive`` as a tool in scripts (issue 21): output into a pipe that closed early ends the
command quietly, as git does, instead of with a BrokenPipeError traceback; a count that
cannot be one is refused before anything is asked of the coordinator."""

from __future__ import annotations

import asyncio
import itertools
import json
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


def hive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hive.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


async def test_hive_tokens_list_json_and_revoke_by_a_unique_prefix() -> None:
    """``hive tokens list --json`` in the REST API's conventions (states as words, times as
    ISO strings, absent ones null); ``hive tokens revoke`` takes any prefix of an id that only
    that token has, as a table cut to a terminal's width shows them."""
    async with running_dev() as dev:
        assert dev.coordinator is not None
        access = dev.coordinator.access
        one, _ = await access.create_api_token("ci reader", "read")
        two, _ = await access.create_api_token("ci submitter", "submit")
        target = ("--coordinator", dev.coordinator_address)
        listed = await asyncio.to_thread(hive, "tokens", "list", "--json", *target)
        assert listed.returncode == 0, listed.stderr
        tokens = {t["id"]: t for t in json.loads(listed.stdout)["tokens"]}
        assert tokens[one.id]["state"] == "live" and tokens[one.id]["scope"] == "read"
        assert tokens[one.id]["created_at"].endswith("Z")
        assert tokens[one.id]["revoked_at"] is None and "expires_at" in tokens[one.id]
        shared = "".join(
            a
            for a, _ in itertools.takewhile(
                lambda p: p[0] == p[1], zip(one.id, two.id, strict=False)
            )
        )
        ambiguous = await asyncio.to_thread(hive, "tokens", "revoke", shared, *target)
        assert ambiguous.returncode == 2, ambiguous.stderr
        assert one.id in ambiguous.stderr and two.id in ambiguous.stderr
        unique = one.id[: len(shared) + 1]
        revoked = await asyncio.to_thread(hive, "tokens", "revoke", unique, *target)
        assert revoked.returncode == 0 and f"token {one.id} revoked" in revoked.stdout
        after = json.loads(
            (await asyncio.to_thread(hive, "tokens", "list", "--json", *target)).stdout
        )
        states = {t["id"]: t["state"] for t in after["tokens"]}
        assert states[one.id] == "revoked" and states[two.id] == "live"
