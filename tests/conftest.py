"""Shared fixtures: a real cluster in-process, on port 0, with the Ollama emulator."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hive import pgtemp
from hive.cli.dev import DevCluster
from hive.config import ClusterConfig, CoordinatorSettings, seed_cluster

# The smallest valid PNG (1x1), as a vision request would send it.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

# A tool as Ollama and OpenAI take it, for the tool-calling tests.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}

# Short liveness settings so loss is detected within two seconds. Suspicion needs ten
# missed heartbeats: a test process on a loaded two-core machine stalls its event loop for
# 0.4 s now and then (CI saw two healthy nodes turn suspect at 0.35 s).
FAST = CoordinatorSettings(
    listen="127.0.0.1:0",
    heartbeat_interval_seconds=0.1,
    suspect_after_seconds=1.0,
    lost_after_seconds=1.5,
)


def fast_cluster(cluster: ClusterConfig | None = None) -> ClusterConfig:
    return dataclasses.replace(cluster or seed_cluster(), coordinator=FAST)


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> None:
    """Wait until ``predicate`` holds, polling; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def private_dev_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's DevCluster keeps its workflow state in the test's own directory, so no
    workflow of one test is resumed by another's coordinator; the simulator's cache too."""
    monkeypatch.setenv("HIVE_DEV_STATE", str(tmp_path / "dev-state.sqlite"))
    # The simulator's saturation measurements too: none read from or left in ~/.cache.
    monkeypatch.setenv("HIVE_SIM_CACHE", str(tmp_path / "sim-saturation.json"))


@pytest.fixture(autouse=True)
def store_under_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """HIVE_TEST_STORE=postgresql: every DevCluster of the test keeps its state in a fresh
    PostgreSQL database (scripts/test.sh runs the workflow and security suites so too)."""
    store = os.environ.get("HIVE_TEST_STORE", "sqlite")
    if store not in ("sqlite", "postgresql"):
        pytest.fail(f"HIVE_TEST_STORE={store!r}: use sqlite (the default) or postgresql")
    if store == "postgresql":
        monkeypatch.setenv("HIVE_DEV_STORE", request.getfixturevalue("postgres_db"))


@contextlib.asynccontextmanager
async def running_dev(**options: Any) -> AsyncIterator[DevCluster]:
    """The seed's five-node cluster on free ports with instant emulated Ollama and fast
    heartbeats, registered and ready; ``options`` override DevCluster's (e.g. a gateway,
    or ``cluster``: another cluster file than the seed's with FAST liveness)."""
    settings: dict[str, Any] = {
        "coordinator_listen": "127.0.0.1:0",
        "gateway_port": None,
        "time_scale": 0.0,
        **options,
    }
    cluster = DevCluster(settings.pop("cluster", None) or fast_cluster(), **settings)
    try:
        await cluster.start()
        await cluster.wait_registered(timeout=10)
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
async def dev() -> AsyncIterator[DevCluster]:
    """The seed's cluster without a gateway."""
    async with running_dev() as cluster:
        yield cluster


@pytest.fixture
async def full_dev() -> AsyncIterator[DevCluster]:
    """The seed's cluster with the gateway and every /metrics endpoint, on free ports."""
    async with running_dev(gateway_port=0, metrics_listen="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL for the whole test session (hive.pgtemp: initdb in a temporary
    directory). Skipped with the reason only where PostgreSQL is truly absent and this is
    not CI; CI installs it (scripts/install-system-deps.sh) and must run these tests."""
    reason = pgtemp.missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    with pgtemp.temp_postgres() as server:
        yield server.url


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """A fresh, empty database on the session's server, for one test."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + "/" + name
