"""The PostgreSQL state store against a real PostgreSQL (hive.pgtemp): migrations under
the advisory lock, round trips equal to the SQLite store's, group commit, fencing, a
server restarted under load, and refusals at start that never show the password."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coordinator.workflows.model import (
    WF_RUNNING,
    WF_SUCCEEDED,
    Artifact,
    StageRec,
    TaskRec,
    WorkflowRec,
)
from coordinator.workflows.store import (
    Fenced,
    StateFileError,
    StateStore,
    StateUnwritable,
    WorkflowStore,
)
from coordinator.workflows.store_pg import (
    SCHEMA_VERSION,
    PostgresStore,
    StoreUnreachable,
)
from hive import pgtemp
from hive.config import ConfigError, parse_cluster_config, redact_url
from tests.conftest import eventually


@contextlib.asynccontextmanager
async def opened(store: StateStore) -> AsyncIterator[StateStore]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def workflow(i: int, state: int = WF_RUNNING) -> WorkflowRec:
    wf = WorkflowRec(
        f"wf-{i:04d}",
        f"service {i}",
        "a chat server",
        "python",
        2,
        "quick",
        '{"stages": []}',
        1000.0 + i,
        request_id=f"req-{i}" if i % 2 else "",
        labels={"team": "a", "n": str(i)},
        wait_for_models=i == 3,
        state=state,
    )
    gen = StageRec("generate", 1, "llama3.1:8b", (), state=3, output="print('hi')")
    gen.tasks.append(
        TaskRec(
            f"t-{i}-a",
            "generate",
            "generate",
            0,
            "llama3.1:8b",
            1000.5 + i,
            state=3,
            node="WALNUT",
            endpoint_id="gpu0",
            attempt=1,
            started_at=1001.0,
            finished_at=1002.5,
            stats={"eval_count": 12},
            output="print('hi')\n",
        )
    )
    gen.tasks.append(TaskRec(f"t-{i}-b", "generate", "generate", 0, "llama3.1:8b", 1000.5 + i))
    wf.stages["generate"] = gen
    wf.stages["review"] = StageRec("review", 2, "qwen2.5-coder:7b", ("generate",), verdict="x")
    wf.artifacts = [
        Artifact("app/main.py", "print('hi')\n", "code", "generate"),
        Artifact("README.md", "# hi\n", "doc", "generate"),
    ]
    return wf


ACCESS_ROWS: dict[str, list[dict[str, Any]]] = {
    "api_tokens": [
        {
            "id": "tok-1",
            "name": "ci",
            "scope": "admin",
            "hash": "h1",
            "created_at": 1.5,
            "expires_at": None,
            "revoked_at": None,
        }
    ],
    "join_tokens": [
        {
            "id": "join-1",
            "node_name": "WALNUT",
            "hash": "j1",
            "created_at": 2.0,
            "expires_at": 3.0,
            "revoked_at": None,
            "uses_left": 1,
            "enrolled": "[]",
        }
    ],
    "revoked_nodes": [{"name": "ROGUE", "reason": "stolen", "revoked_at": 4.0}],
}


async def fill(store: StateStore) -> None:
    for i in range(6):
        store.save_all(workflow(i, WF_SUCCEEDED if i < 2 else WF_RUNNING))
    done = workflow(1, WF_SUCCEEDED)
    done.finished_at, done.error = 1010.0, ""
    store.save_workflow(done)
    task = done.stages["generate"].tasks[1]
    task.state, task.output = 4, "boom"
    store.save_task(done.id, task)
    await store.flush()
    for table, rows in ACCESS_ROWS.items():
        for row in rows:
            await store.put_access(table, row)
    await store.put_access("api_tokens", {**ACCESS_ROWS["api_tokens"][0], "revoked_at": 9.0})
    await store.put_access("revoked_nodes", {"name": "GONE", "reason": "", "revoked_at": 5.0})
    await store.delete_access("revoked_nodes", "GONE")


async def snapshot(store: StateStore) -> dict[str, Any]:
    page1 = await store.list_page(None, 4, None)
    page2 = await store.list_page(None, 4, page1[-1].seq)
    return {
        "get": [await store.get(f"wf-{i:04d}") for i in range(6)],
        "missing": await store.get("wf-none"),
        "request": await store.find_request("req-3"),
        "pages": [[w.id for w in page1], [w.id for w in page2]],
        "summary": [(w.id, [s.output for s in w.stages.values()]) for w in page1],
        "succeeded": [w.id for w in await store.list_page(WF_SUCCEEDED, 10, None)],
        "unfinished": [w.id for w in await store.unfinished()],
        "counts": await store.count_tasks("wf-0003"),
        "access": {t: [dict(r) for r in await store.read_access(t)] for t in ACCESS_ROWS},
    }


def without_seq(snap: dict[str, Any]) -> dict[str, Any]:
    for wf in snap["get"] + [snap["request"]]:
        if wf is not None:
            wf.seq = 0
    return snap


async def test_round_trips_equal_the_sqlite_stores(postgres_db: str, tmp_path: Path) -> None:
    """Every record, update and access row reads back from PostgreSQL exactly as from
    SQLite: the engine and the access book cannot tell the stores apart."""
    async with (
        opened(PostgresStore(postgres_db)) as pg,
        opened(WorkflowStore(tmp_path / "s.sqlite")) as lite,
    ):
        await fill(pg)
        await fill(lite)
        got, want = without_seq(await snapshot(pg)), without_seq(await snapshot(lite))
    assert got["get"][1].state == WF_SUCCEEDED and got["get"][1].finished_at == 1010.0
    assert got["get"][1].stages["generate"].tasks[1].output == "boom"
    assert got["get"][3].artifacts[0].content == "print('hi')\n"
    assert got["access"]["api_tokens"][0]["revoked_at"] == 9.0
    assert [r["name"] for r in got["access"]["revoked_nodes"]] == ["ROGUE"]
    assert got["unfinished"] == [f"wf-{i:04d}" for i in range(2, 6)]
    assert got == want


async def test_migrations_fresh_idempotent_and_recorded(postgres_db: str) -> None:
    async with opened(PostgresStore(postgres_db)) as store:
        assert store.migrations_applied == list(range(1, SCHEMA_VERSION + 1))
        versions = await store.schema_versions()
        assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 1))
    async with opened(PostgresStore(postgres_db)) as again:
        assert again.migrations_applied == []
    with psycopg.connect(postgres_db) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_name LIKE 'coordinator_%' ORDER BY table_name, ordinal_position"
        ).fetchall()
    assert columns == [
        ("coordinator_lease", "id", "smallint"),
        ("coordinator_lease", "holder", "text"),
        ("coordinator_lease", "address", "text"),
        ("coordinator_lease", "epoch", "bigint"),
        ("coordinator_lease", "expires_at", "timestamp with time zone"),
        ("coordinator_lease", "renewed_at", "timestamp with time zone"),
        ("coordinator_members", "holder", "text"),
        ("coordinator_members", "address", "text"),
        ("coordinator_members", "role", "text"),
        ("coordinator_members", "epoch", "bigint"),
        ("coordinator_members", "seen_at", "timestamp with time zone"),
    ]


async def test_coordinators_starting_together_migrate_once(postgres_db: str) -> None:
    """Under pg_advisory_lock one coordinator applies every migration and the others,
    waiting on the lock, find nothing to do (without it they race on CREATE TABLE)."""
    stores = [PostgresStore(postgres_db) for _ in range(5)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        applied = sorted((s.migrations_applied for s in stores), key=len)
        assert applied == [[]] * 4 + [list(range(1, SCHEMA_VERSION + 1))]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_newer_schema_is_refused_naming_both_versions(postgres_db: str) -> None:
    async with opened(PostgresStore(postgres_db)):
        pass
    with psycopg.connect(postgres_db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', 0)")
    with pytest.raises(StateFileError, match=f"999.*up to {SCHEMA_VERSION}"):
        await PostgresStore(postgres_db).open()


async def test_group_commit_batches_concurrent_writes(postgres_db: str) -> None:
    """Concurrent submissions share transactions: many writes per commit."""
    async with opened(PostgresStore(postgres_db)) as store:

        async def submit(i: int) -> None:
            await store.commit_or_withdraw(store.save_all(workflow(i)))

        await asyncio.gather(*(submit(i) for i in range(200)))
        assert store.stats.operations == 200 * 6
        assert store.stats.operations / store.stats.commits > 5, store.stats
        assert len(await store.unfinished()) == 200


def set_lease(url: str, epoch: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO coordinator_lease VALUES (1, 'a', 'a:50051', %s, now(), now())"
            " ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, holder = 'b'",
            (epoch,),
        )


async def test_a_fenced_store_writes_nothing_more(postgres_db: str) -> None:
    """Another connection takes the lease (epoch 1 → 2): the old leader's next write
    raises Fenced, lands nothing, and the store refuses everything after it."""
    epoch = 1
    told: list[Fenced] = []
    async with opened(
        PostgresStore(postgres_db, fence=lambda: epoch, on_fenced=told.append)
    ) as store:
        set_lease(postgres_db, 1)
        await store.commit_or_withdraw(store.save_all(workflow(1)))
        set_lease(postgres_db, 2)  # a newer leader, from its own connection
        store.save_all(workflow(2))
        with pytest.raises(Fenced, match=r"epoch is 2.*is 1"):
            await store.flush()
        assert [str(e) for e in told] == [str(store.fenced)]
        with pytest.raises(Fenced):
            store.check_writable()
        with pytest.raises(Fenced):
            await store.put_access("revoked_nodes", ACCESS_ROWS["revoked_nodes"][0])
        store.save_all(workflow(3))
        assert await store.get("wf-0001") is not None
        assert await store.get("wf-0002") is None
    with psycopg.connect(postgres_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM workflows ORDER BY id")]
        tokens = conn.execute("SELECT count(*) FROM revoked_nodes").fetchone()
    assert ids == ["wf-0001"] and tokens == (0,)


async def test_a_fence_that_says_not_leader_refuses_the_write(postgres_db: str) -> None:
    def fence() -> int:
        raise RuntimeError("lost the lease 2 s ago")

    set_lease_later = PostgresStore(postgres_db)
    async with opened(set_lease_later):
        pass
    set_lease(postgres_db, 1)
    async with opened(PostgresStore(postgres_db, fence=fence)) as store:
        with pytest.raises(Fenced, match="not the leader: lost the lease"):
            await store.commit_or_withdraw(store.save_all(workflow(1)))
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT count(*) FROM workflows").fetchone() == (0,)


@pytest.fixture
def own_postgres(postgres_url: str) -> Iterator[pgtemp.TempPostgres]:
    """A server of this test's own, to stop and start (its directory survives a stop)."""
    directory = Path(tempfile.mkdtemp(prefix="hive-postgres-"))
    server = pgtemp.TempPostgres(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_postgres_restarted_under_load_loses_nothing_accepted(
    own_postgres: pgtemp.TempPostgres,
) -> None:
    """Submissions and updates keep coming while PostgreSQL stops and starts again: new
    work is refused (StateUnwritable) while it is down; every submission that was
    accepted, and every update made meanwhile, is in the database afterwards."""
    server = own_postgres
    accepted: list[str] = []
    refused = 0
    updated: set[str] = set()
    stop = asyncio.Event()
    async with opened(PostgresStore(server.url)) as store:

        async def load() -> None:
            nonlocal refused
            i = 0
            while not stop.is_set():
                i += 1
                wf = workflow(i)
                try:
                    await store.commit_or_withdraw(store.save_all(wf))
                except StateUnwritable:
                    refused += 1
                    await asyncio.sleep(0.05)
                    continue
                accepted.append(wf.id)
                # An accepted workflow moves on: its update is queued, never awaited.
                wf.state = WF_SUCCEEDED
                store.save_workflow(wf)
                updated.add(wf.id)
                await asyncio.sleep(0.005)

        loader = asyncio.create_task(load())
        try:
            await eventually(lambda: len(accepted) >= 20, what="20 workflows accepted")
            await asyncio.to_thread(server.signal, 2)  # SIGINT: fast shutdown
            await asyncio.to_thread(server.process.wait)  # type: ignore[union-attr]
            await eventually(lambda: bool(store.unwritable), what="the store to notice")
            with pytest.raises(StateUnwritable, match=r"hive:\*\*\*@"):
                store.check_writable()
            before_restart = len(accepted)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start)
            await eventually(
                lambda: not store.unwritable and len(accepted) >= before_restart + 20,
                timeout=30,
                what="writes again after the restart",
            )
        finally:
            stop.set()
            await loader
        await store.flush()
    assert refused > 0
    with psycopg.connect(server.url) as conn:
        rows = dict(conn.execute("SELECT id, state FROM workflows").fetchall())
    assert set(accepted) <= set(rows), sorted(set(accepted) - set(rows))[:5]
    assert all(rows[i] == WF_SUCCEEDED for i in updated)


async def test_unreachable_postgres_at_start_is_a_clear_error_without_password() -> None:
    url = "postgresql://hive:sup3rsecret@127.0.0.1:1/hive"
    with pytest.raises(StoreUnreachable) as info:
        await PostgresStore(url).open()
    message = str(info.value)
    assert "postgresql://hive:***@127.0.0.1:1/hive" in message
    assert "sup3rsecret" not in message


async def test_a_wrong_password_is_refused_clearly(postgres_db: str) -> None:
    password = psycopg.conninfo.conninfo_to_dict(postgres_db)["password"]
    assert password
    wrong = postgres_db.replace(f":{password}@", ":not-the-password@")
    with pytest.raises(StoreUnreachable, match="password authentication failed") as info:
        await PostgresStore(wrong).open()
    assert "not-the-password" not in str(info.value)
    assert password not in str(info.value)


def test_hive_coordinator_exits_with_the_reason_when_postgres_is_down(tmp_path: Path) -> None:
    """`hive coordinator --store` on a server that is not there: one line naming the URL
    without its password, a non-zero exit, no traceback."""
    config = tmp_path / "cluster.yaml"
    config.write_text("coordinator:\n  listen: 127.0.0.1:0\n  metrics_listen: 'off'\n")
    result = subprocess.run(
        [sys.executable, "-m", "hive.cli", "coordinator", "--config", str(config), "--insecure"],
        env={**os.environ, "HIVE_STORE": "postgresql://hive:sup3rsecret@127.0.0.1:1/hive"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert "postgresql://hive:***@127.0.0.1:1/hive" in result.stderr
    assert "sup3rsecret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_the_store_key_takes_sqlite_paths_and_postgres_urls_only() -> None:
    ok = parse_cluster_config({"coordinator": {"store": "postgres://h/db"}}, "/etc/c.yaml")
    assert ok.coordinator.postgres_url == "postgres://h/db"
    assert ok.coordinator.sqlite_path is None
    lite = parse_cluster_config({"coordinator": {"store": "sqlite:///s.db"}}, "/etc/c.yaml")
    assert lite.coordinator.sqlite_path == "/etc/s.db" and not lite.coordinator.postgres_url
    with pytest.raises(ConfigError, match=r"coordinator\.store: 'mysql://u:\*\*\*@h/db'"):
        parse_cluster_config({"coordinator": {"store": "mysql://u:pw@h/db"}}, "/etc/c.yaml")
    assert redact_url("postgresql://u:p%40ss@h:5/d?password=x") == (
        "postgresql://u:***@h:5/d?password=***"
    )
