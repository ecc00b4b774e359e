"""Durable coordinator state: the ``StateStore`` interface, its group commit, and the
embedded implementation (SQLite in WAL mode, one writer with group commit).

``StateStore`` is what the engine and the access book use; two stores satisfy it: this
module's ``WorkflowStore`` (one coordinator, a file) and ``store_pg.PostgresStore`` (several
coordinators on one PostgreSQL). ``stores.create_store`` picks one from the coordinator's
settings. Both share ``GroupCommitStore``: the queue, the writer loop, and the
hold-and-retry path while the state cannot be written.

Every change is a small idempotent upsert queued to a single writer task. The writer
takes everything queued while the previous commit was on disk and commits it as one
transaction (group commit): under load many state changes share one fsync, idle a change
commits at once. The fsync runs in a worker thread so the event loop never waits on
disk. Callers that need durability before they go on (a Submit answered, a
stage finished before its dependents start) await the commit; others just enqueue, and
``flush()`` waits for everything enqueued so far.

Reads use their own connection on the event loop's thread; WAL lets them run while the
writer writes. The schema is versioned: ``MIGRATIONS`` is an ordered list applied once
each and recorded in ``schema_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from coordinator.workflows.model import (
    WF_TERMINAL,
    Artifact,
    StageRec,
    TaskRec,
    WorkflowRec,
)
from hive.serving import Unavailable

if TYPE_CHECKING:
    pass

log = logging.getLogger("hive.coordinator.workflows.store")

# (version, description, SQL). Append only; never edit a released entry.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "workflows, stages, tasks, artifacts",
        """
        CREATE TABLE workflows (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            request_id TEXT,
            name TEXT NOT NULL,
            requirements TEXT NOT NULL,
            language TEXT NOT NULL,
            priority INTEGER NOT NULL,
            pipeline TEXT NOT NULL,
            pipeline_spec TEXT NOT NULL,
            labels TEXT NOT NULL,
            state INTEGER NOT NULL,
            error TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL
        );
        CREATE UNIQUE INDEX workflows_request_id ON workflows(request_id)
            WHERE request_id IS NOT NULL;
        CREATE TABLE stages (
            workflow_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            type INTEGER NOT NULL,
            model TEXT NOT NULL,
            depends_on TEXT NOT NULL,
            state INTEGER NOT NULL,
            iteration INTEGER NOT NULL,
            output TEXT NOT NULL,
            error TEXT NOT NULL,
            verdict TEXT NOT NULL,
            feedback TEXT NOT NULL,
            started_at REAL,
            finished_at REAL,
            PRIMARY KEY (workflow_id, name)
        );
        CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY,
            workflow_id TEXT NOT NULL,
            stage TEXT NOT NULL,
            role TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            model TEXT NOT NULL,
            state INTEGER NOT NULL,
            node TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            queued_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            stats TEXT NOT NULL,
            output TEXT NOT NULL,
            error TEXT NOT NULL
        );
        CREATE INDEX tasks_workflow ON tasks(workflow_id);
        CREATE TABLE artifacts (
            workflow_id TEXT NOT NULL,
            path TEXT NOT NULL,
            kind TEXT NOT NULL,
            stage TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (workflow_id, path)
        );
        """,
    ),
    (
        2,
        "index workflows by state for filtered listing and resume",
        "CREATE INDEX workflows_state ON workflows(state, seq);",
    ),
    (
        3,
        "access: hashed API and join tokens, revoked nodes",
        """
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            scope TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL
        );
        CREATE TABLE join_tokens (
            id TEXT PRIMARY KEY,
            node_name TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL,
            uses_left INTEGER NOT NULL,
            enrolled TEXT NOT NULL
        );
        CREATE TABLE revoked_nodes (
            name TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            revoked_at REAL NOT NULL
        );
        """,
    ),
    (
        4,
        "optimizer: what it applied (placement, limits, weights), for the next start",
        """
        CREATE TABLE optimizer_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        5,
        "workflows: wait_for_models (a stage waits for a node with its model)",
        "ALTER TABLE workflows ADD COLUMN wait_for_models INTEGER NOT NULL DEFAULT 0;",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Largest number of operations committed in one transaction.
MAX_BATCH = 2000

Op = Callable[[sqlite3.Connection], None]
OpT = TypeVar("OpT", bound=Hashable)

# The small keyed tables besides the workflows: access (coordinator.access owns their
# meaning) and the optimizer's applied state (coordinator.optimizer.live): name → primary
# key, columns. Read whole, written a row at a time (``put_access``).
ACCESS_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "api_tokens": (
        "id",
        ("id", "name", "scope", "hash", "created_at", "expires_at", "revoked_at"),
    ),
    "join_tokens": (
        "id",
        (
            "id",
            "node_name",
            "hash",
            "created_at",
            "expires_at",
            "revoked_at",
            "uses_left",
            "enrolled",
        ),
    ),
    "revoked_nodes": ("name", ("name", "reason", "revoked_at")),
    "optimizer_state": ("key", ("key", "value", "updated_at")),
}


def access_upsert(table: str, row: Mapping[str, Any], mark: str) -> tuple[str, tuple[Any, ...]]:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` of a whole access row, the same SQL in
    SQLite and PostgreSQL but for the parameter ``mark`` (``?`` or ``%s``)."""
    key, columns = access_table(table)
    if set(row) != set(columns):
        raise ValueError(f"{table} rows have exactly the columns {', '.join(columns)}")
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )
    return sql, tuple(row[c] for c in columns)


def access_table(table: str) -> tuple[str, tuple[str, ...]]:
    if table not in ACCESS_TABLES:
        raise ValueError(f"not an access table: {table}")
    return ACCESS_TABLES[table]


class StateUnwritable(Unavailable):
    """The state cannot be written now: its disk is full, read-only or failing, or the
    PostgreSQL server holding it cannot be reached.

    What was accepted stays queued in memory and is written once the state takes it
    again; new work that must be durable before its client is told is refused."""


class Fenced(Unavailable):
    """A newer leader holds the lease: this coordinator's epoch is not the one in
    ``coordinator_lease``. Nothing of the refused transaction was written and the store
    writes nothing more; the coordinator steps down (see store_pg.PostgresStore)."""


# SQLite's result codes for a disk that will not take a write (extended codes share the
# prefix, e.g. SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED).
DISK_ERRORS = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")
# While the disk refuses writes, the writer retries this often, backing off to the max.
RETRY_INITIAL_SECONDS = 0.25
RETRY_MAX_SECONDS = 2.0


def disk_refused(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and str(getattr(exc, "sqlite_errorname", "")).startswith(
        DISK_ERRORS
    )


class StateFileError(RuntimeError):
    """The state cannot be used (e.g. written by a newer coordinator, or its PostgreSQL
    cannot be reached at start)."""


@dataclass
class StoreStats:
    """What the writer has done; the benchmark reports writes per commit from these."""

    operations: int = 0
    commits: int = 0
    largest_batch: int = 0


class StateStore(Protocol):
    """Everything a coordinator must not lose, behind one interface.

    Writes (``save_*``) enqueue an idempotent upsert and return its handle at once; a
    writer commits what is queued in groups. ``flush()`` waits for what was enqueued
    before it; ``commit_or_withdraw(handles)`` waits for those or, when the state cannot
    be written, withdraws them and raises StateUnwritable. Reads see committed state
    only. ``open()`` before use (migrates the schema), ``close()`` after.
    """

    stats: StoreStats
    migrations_applied: list[int]
    # Why the state refuses writes now ("" while it takes them).
    unwritable: str

    def describe(self) -> str:
        """Where the state lives, for logs (never with a password)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def kill(self) -> None: ...

    async def flush(self, fail_fast: bool = False) -> None: ...

    def check_writable(self) -> None: ...

    async def commit_or_withdraw(self, ops: Sequence[Any]) -> None: ...

    def save_workflow(self, wf: WorkflowRec) -> Any: ...

    def save_stage(self, workflow_id: str, position: int, stage: StageRec) -> Any: ...

    def save_task(self, workflow_id: str, task: TaskRec) -> Any: ...

    def save_artifacts(self, workflow_id: str, artifacts: Sequence[Artifact]) -> Any: ...

    def save_all(self, wf: WorkflowRec) -> list[Any]: ...

    async def put_access(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert or replace one access row (by its key), committed before this returns:
        a revocation or a new token must survive a restart the moment the admin is told."""
        ...

    async def delete_access(self, table: str, key: Any) -> None: ...

    async def read_access(self, table: str) -> list[Mapping[str, Any]]: ...

    async def get(self, workflow_id: str) -> WorkflowRec | None: ...

    async def find_request(self, request_id: str) -> WorkflowRec | None: ...

    async def list_page(
        self, state: int | None, limit: int, before_seq: int | None
    ) -> list[WorkflowRec]: ...

    async def unfinished(self) -> list[WorkflowRec]: ...

    async def schema_versions(self) -> list[tuple[int, str]]: ...

    async def count_tasks(self, workflow_id: str) -> dict[str, int]: ...


# The rows both stores write, column for column (the tables are the same in both).


def workflow_row(wf: WorkflowRec) -> tuple[Any, ...]:
    return (
        wf.id,
        wf.request_id or None,
        wf.name,
        wf.requirements,
        wf.language,
        wf.priority,
        wf.pipeline,
        wf.pipeline_spec,
        json.dumps(wf.labels, sort_keys=True),
        wf.state,
        wf.error,
        wf.created_at,
        wf.started_at,
        wf.finished_at,
        wf.wait_for_models,
    )


def stage_row(workflow_id: str, position: int, stage: StageRec) -> tuple[Any, ...]:
    return (
        workflow_id,
        position,
        stage.name,
        stage.type,
        stage.model,
        json.dumps(list(stage.depends_on)),
        stage.state,
        stage.iteration,
        stage.output,
        stage.error,
        stage.verdict,
        stage.feedback,
        stage.started_at,
        stage.finished_at,
    )


def task_row(workflow_id: str, task: TaskRec) -> tuple[Any, ...]:
    return (
        task.task_id,
        workflow_id,
        task.stage,
        task.role,
        task.iteration,
        task.model,
        task.state,
        task.node,
        task.endpoint_id,
        task.attempt,
        task.queued_at,
        task.started_at,
        task.finished_at,
        json.dumps(task.stats),
        task.output,
        task.error,
    )


def migrate(conn: sqlite3.Connection, clock: Callable[[], float] = time.time) -> list[int]:
    """Apply the migrations ``conn`` lacks, in order, each in its own transaction.

    Returns the versions applied. Refuses a database from a newer schema.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    conn.commit()
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise StateFileError(
            f"the state file has schema version {current}; this coordinator knows up to "
            f"{SCHEMA_VERSION}: upgrade the coordinator"
        )
    applied = []
    for version, description, sql in MIGRATIONS:
        if version <= current:
            continue
        # executescript commits first; run the migration and its record as one transaction.
        script = (
            "BEGIN;\n" + sql + "\nINSERT INTO schema_version VALUES "
            f"({version}, '{description.replace(chr(39), chr(39) * 2)}', {clock()!r});\nCOMMIT;"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


class GroupCommitStore(Generic[OpT]):
    """The queue and the writer shared by both stores.

    Operations (``OpT``, opaque handles compared by identity) are queued by ``_enqueue``;
    one writer task takes everything queued while the previous commit was under way and
    hands it to ``_commit`` as one transaction. When ``_refused(error)`` says the state
    cannot be written now, the batch is held at the head of the queue and retried with
    backoff (see StateUnwritable); a Fenced commit stops the writer for good.

    Subclasses implement ``_commit`` (return the error or None), ``_refused``,
    ``_error_name``, ``_after_kill`` and ``describe``.
    """

    def __init__(self) -> None:
        self.stats = StoreStats()
        self._pending: list[OpT] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._killed = False
        self._committing = False
        self.migrations_applied: list[int] = []
        # Why the state refuses writes now ("" while it takes them): see StateUnwritable.
        self.unwritable = ""
        self.unwritable_since: float | None = None
        # Set once a commit found a newer leader's epoch: nothing is written after it.
        self.fenced: Fenced | None = None
        # Called (on the loop) when the store is fenced: the coordinator steps down.
        self.on_fenced: Callable[[Fenced], None] | None = None
        self._fail_fast: set[asyncio.Future[None]] = set()
        self._held: list[OpT] | None = None

    # --- what a store provides ------------------------------------------------------

    def describe(self) -> str:
        raise NotImplementedError

    async def _commit(self, ops: Sequence[OpT]) -> BaseException | None:
        raise NotImplementedError

    def _refused(self, exc: BaseException) -> bool:
        """Whether ``exc`` means "the state cannot be written now, try again later"."""
        raise NotImplementedError

    def _error_name(self, exc: BaseException) -> str:
        return type(exc).__name__

    def _after_kill(self) -> None:
        """Release what the killed writer held (called once no commit is in flight)."""

    # --- lifecycle --------------------------------------------------------------------

    def _start_writer(self) -> None:
        self._killed = False
        self._writer = asyncio.create_task(self._write_loop(), name="hive-state-writer")

    async def _stop_writer(self) -> None:
        if self._writer is not None:
            if self.fenced is None:
                await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    def kill(self) -> None:
        """Stop writing at once, dropping whatever is queued: a crash, for tests."""
        self._killed = True
        self._pending.clear()
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        for future in self._waiters:
            future.cancel()
        self._waiters.clear()
        # A commit in flight in its worker thread finishes there; the connection is
        # closed once it has (see _write_loop), never under it.
        if not self._committing:
            self._after_kill()

    # --- the writer -------------------------------------------------------------------

    async def _write_loop(self) -> None:
        """Group commit: hand every operation queued since the last commit to
        ``_commit`` as one transaction; what queues meanwhile goes into the next one."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            waiters, self._waiters = self._waiters, []
            if self._pending:
                self._wake.set()
                # Barriers wait for the operations queued before them, still pending.
                self._waiters, waiters = waiters, []
            if ops:
                self._committing = True
                try:
                    error = await self._commit(ops)
                finally:
                    self._committing = False
            else:
                error = None
            if self._killed:
                self._after_kill()
                return
            if isinstance(error, Fenced):
                self._fence(error, waiters)
                return
            if error is not None and self._refused(error):
                held, self._held = self._held, None
                await self._hold(ops if held is None else held, waiters, error)
                continue
            if self.unwritable and ops:
                log.warning(
                    "state %s takes writes again after %.1fs: %d queued operations written",
                    self.describe(),
                    time.monotonic() - (self.unwritable_since or time.monotonic()),
                    len(ops),
                )
                self.unwritable, self.unwritable_since = "", None
            self.stats.operations += len(ops)
            self.stats.commits += 1 if ops else 0
            self.stats.largest_batch = max(self.stats.largest_batch, len(ops))
            for future in waiters:
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _fence(self, error: Fenced, waiters: list[asyncio.Future[None]]) -> None:
        """A newer leader exists: refuse every waiter, drop the queue, write no more."""
        self.fenced = error
        log.error("state store fenced, writing stops: %s", error)
        self._pending.clear()
        for future in [*waiters, *self._waiters]:
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()
        self._writer = None
        if self.on_fenced is not None:
            self.on_fenced(error)

    async def _hold(
        self, ops: list[OpT], waiters: list[asyncio.Future[None]], error: BaseException
    ) -> None:
        """The state refused the batch: keep it (and its waiters) at the head of the queue
        and try again after a pause, backing off, until the state takes it."""
        if not self.unwritable:
            self.unwritable_since = time.monotonic()
            log.error(
                "state %s refuses writes (%s): %s; new workflows and access changes are "
                "refused, %d accepted operations are held in memory until it takes them",
                self.describe(),
                self._error_name(error),
                self._error_text(error),
                len(ops),
            )
        self.unwritable = f"{self.describe()}: {self._error_text(error)}"
        self._pending[:0] = ops
        refused = StateUnwritable(self._refusal())
        # A waiter that must answer its client now (a new workflow, a new token), in this
        # batch or queued behind it, is refused and withdraws its writes; the others
        # wait for the state.
        kept = []
        for future in [*waiters, *self._waiters]:
            if future in self._fail_fast:
                if not future.done():
                    future.set_exception(refused)
            else:
                kept.append(future)
        self._waiters = kept
        since = time.monotonic() - (self.unwritable_since or time.monotonic())
        await asyncio.sleep(min(RETRY_MAX_SECONDS, RETRY_INITIAL_SECONDS * (1 + since)))
        self._wake.set()

    def _error_text(self, error: BaseException) -> str:
        return str(error)

    def _refusal(self) -> str:
        return (
            f"the coordinator's state store refuses writes ({self.unwritable}); nothing new "
            "is accepted until it takes them again, and nothing accepted is lost"
        )

    def check_writable(self) -> None:
        """Raise StateUnwritable while the state refuses writes (Fenced once fenced)."""
        if self.fenced is not None:
            raise self.fenced
        if self.unwritable:
            raise StateUnwritable(self._refusal())

    async def commit_or_withdraw(self, ops: Sequence[OpT]) -> None:
        """Wait until ``ops`` (just enqueued) are committed; if the state refuses them,
        take them out of the queue and raise StateUnwritable: the caller's client is told
        "not accepted", and they will never be written behind its back."""
        self.check_writable()
        try:
            await self.flush(fail_fast=True)
        except StateUnwritable:
            withdrawn = set(ops)
            self._pending = [op for op in self._pending if op not in withdrawn]
            raise

    def _enqueue(self, op: OpT) -> OpT:
        if self._killed or self._writer is None:
            return op
        self._pending.append(op)
        self._wake.set()
        return op

    async def flush(self, fail_fast: bool = False) -> None:
        """Wait until everything enqueued so far is committed. While the state refuses
        writes this waits until it takes them again, or with ``fail_fast`` raises
        StateUnwritable (what was enqueued stays queued: see commit_or_withdraw)."""
        if self.fenced is not None:
            raise self.fenced
        if self._writer is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if fail_fast:
            self._fail_fast.add(future)
        self._wake.set()
        try:
            await future
        finally:
            self._fail_fast.discard(future)


class WorkflowStore(GroupCommitStore[Op]):
    """SQLite persistence of the coordinator's state. ``open()`` before use, ``close()``
    after.

    Rows are written on the loop (each is microseconds) and the COMMIT (the fsync) runs
    in a worker thread: a thread that needs the GIL once per statement, against a busy
    loop, waits up to the switch interval (5 ms) each time: hundreds of milliseconds
    per batch.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        # FULL: every commit is fsynced, so a workflow a client was told about survives a
        # power loss too, not only a crash; group commit keeps that affordable.
        super().__init__()
        self.path = Path(path)
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    def describe(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def open(self) -> None:
        """Create or migrate the database and start the writer (call on the event loop)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self.migrations_applied = migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._reader = self._connect()
        self._reader.row_factory = sqlite3.Row
        self._start_writer()

    async def close(self) -> None:
        """Commit everything queued, stop the writer, close the connections."""
        await self._stop_writer()
        self._close_connections()

    def _close_connections(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                conn.close()
        self._conn = self._reader = None

    def _after_kill(self) -> None:
        self._close_connections()

    def _refused(self, exc: BaseException) -> bool:
        return disk_refused(exc)

    def _error_name(self, exc: BaseException) -> str:
        return str(getattr(exc, "sqlite_errorname", "")) or type(exc).__name__

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    async def _commit(self, ops: Sequence[Op]) -> BaseException | None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN")
            for op in ops:
                op(conn)
        except sqlite3.Error as exc:
            self._rollback(conn)
            if disk_refused(exc):
                return exc
            log.error("state batch of %d failed (%s); retrying one by one", len(ops), exc)
            return self._one_by_one(conn, ops)
        try:
            await asyncio.shield(asyncio.to_thread(conn.execute, "COMMIT"))
        except sqlite3.Error as exc:
            self._rollback(conn)
            if not disk_refused(exc):
                log.error("state commit failed: %s", exc)
            return exc
        return None

    def _one_by_one(self, conn: sqlite3.Connection, ops: Sequence[Op]) -> BaseException | None:
        """One bad operation must not take the others down with it. When the disk refuses
        one, the ones left (it included) are what ``_held`` says: held, not dropped."""
        last: BaseException | None = None
        for i, op in enumerate(ops):
            try:
                conn.execute("BEGIN")
                op(conn)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                if disk_refused(exc):
                    self._held = list(ops[i:])
                    return exc
                log.error("state write failed: %s", exc)
                last = exc
        return last

    # --- writes (enqueue; values are copied now, not when the writer runs) --------------

    def save_workflow(self, wf: WorkflowRec) -> Op:
        row = workflow_row(wf)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workflows (id, request_id, name, requirements, language, priority,"
                " pipeline, pipeline_spec, labels, state, error, created_at, started_at,"
                " finished_at, wait_for_models) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET state=excluded.state, error=excluded.error,"
                " started_at=excluded.started_at, finished_at=excluded.finished_at",
                row,
            )

        return self._enqueue(op)

    def save_stage(self, workflow_id: str, position: int, stage: StageRec) -> Op:
        row = stage_row(workflow_id, position, stage)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO stages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

        return self._enqueue(op)

    def save_task(self, workflow_id: str, task: TaskRec) -> Op:
        row = task_row(workflow_id, task)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row
            )

        return self._enqueue(op)

    def save_artifacts(self, workflow_id: str, artifacts: Sequence[Artifact]) -> Op:
        rows = [(workflow_id, a.path, a.kind, a.stage, a.content) for a in artifacts]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM artifacts WHERE workflow_id = ?", (workflow_id,))
            conn.executemany("INSERT INTO artifacts VALUES (?,?,?,?,?)", rows)

        return self._enqueue(op)

    def save_all(self, wf: WorkflowRec) -> list[Op]:
        """The workflow with all its stages and tasks (the operations enqueued)."""
        ops = [self.save_workflow(wf)]
        for position, stage in enumerate(wf.stages.values()):
            ops.append(self.save_stage(wf.id, position, stage))
            ops += [self.save_task(wf.id, task) for task in stage.tasks]
        if wf.artifacts:
            ops.append(self.save_artifacts(wf.id, wf.artifacts))
        return ops

    # --- access tables (coordinator.access owns their meaning) ----------------------------

    async def put_access(self, table: str, row: Mapping[str, Any]) -> None:
        self.check_writable()
        sql, values = access_upsert(table, row, "?")

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(sql, values)

        await self.commit_or_withdraw([self._enqueue(op)])

    async def delete_access(self, table: str, key: Any) -> None:
        self.check_writable()
        column = access_table(table)[0]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))

        await self.commit_or_withdraw([self._enqueue(op)])

    async def read_access(self, table: str) -> list[Mapping[str, Any]]:
        access_table(table)
        return list(self._db.execute(f"SELECT * FROM {table}").fetchall())

    # --- reads --------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the workflow store is not open")
        return self._reader

    def _workflows(self, rows: list[sqlite3.Row], *, full: bool) -> list[WorkflowRec]:
        if not rows:
            return []
        out = {r["id"]: workflow_from_row(r) for r in rows}
        ids = list(out)
        marks = ",".join("?" * len(ids))
        output_col = "output" if full else "'' AS output"
        feedback_col = "feedback" if full else "'' AS feedback"
        for r in self._db.execute(
            f"SELECT workflow_id, position, name, type, model, depends_on, state, iteration,"
            f" {output_col}, error, verdict, {feedback_col},"
            f" started_at, finished_at FROM stages WHERE workflow_id IN ({marks})"
            " ORDER BY workflow_id, position",
            ids,
        ):
            out[r["workflow_id"]].stages[r["name"]] = stage_from_row(r)
        for r in self._db.execute(
            f"SELECT task_id, workflow_id, stage, role, iteration, model, state, node,"
            f" endpoint_id, attempt, queued_at, started_at, finished_at, stats, {output_col},"
            f" error FROM tasks WHERE workflow_id IN ({marks}) ORDER BY queued_at, rowid",
            ids,
        ):
            stage = out[r["workflow_id"]].stages.get(r["stage"])
            if stage is None:
                continue
            stage.tasks.append(task_from_row(r))
        content_col = "content" if full else "'' AS content"
        for r in self._db.execute(
            f"SELECT workflow_id, path, kind, stage, {content_col} FROM artifacts"
            f" WHERE workflow_id IN ({marks}) ORDER BY rowid",
            ids,
        ):
            out[r["workflow_id"]].artifacts.append(
                Artifact(r["path"], r["content"], r["kind"], r["stage"])
            )
        return [out[i] for i in ids]

    async def get(self, workflow_id: str) -> WorkflowRec | None:
        rows = self._db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchall()
        found = self._workflows(rows, full=True)
        return found[0] if found else None

    async def find_request(self, request_id: str) -> WorkflowRec | None:
        rows = self._db.execute(
            "SELECT * FROM workflows WHERE request_id = ?", (request_id,)
        ).fetchall()
        found = self._workflows(rows, full=True)
        return found[0] if found else None

    async def list_page(
        self, state: int | None, limit: int, before_seq: int | None
    ) -> list[WorkflowRec]:
        """Newest first; summaries (no outputs, no artifact contents)."""
        sql, args = list_page_query(state, limit, before_seq, "?")
        rows = self._db.execute(sql, args).fetchall()
        return self._workflows(rows, full=False)

    async def unfinished(self) -> list[WorkflowRec]:
        """Every workflow accepted and not finished, oldest first, with full records."""
        terminal = ",".join(str(s) for s in sorted(WF_TERMINAL))
        rows = self._db.execute(
            f"SELECT * FROM workflows WHERE state NOT IN ({terminal}) ORDER BY seq"
        ).fetchall()
        return self._workflows(rows, full=True)

    async def schema_versions(self) -> list[tuple[int, str]]:
        return [
            (r[0], r[1])
            for r in self._db.execute(
                "SELECT version, description FROM schema_version ORDER BY version"
            )
        ]

    async def count_tasks(self, workflow_id: str) -> dict[str, int]:
        return {
            r[0]: r[1]
            for r in self._db.execute(
                "SELECT stage, COUNT(*) FROM tasks WHERE workflow_id = ? GROUP BY stage",
                (workflow_id,),
            )
        }


def list_page_query(
    state: int | None, limit: int, before_seq: int | None, placeholder: str
) -> tuple[str, list[Any]]:
    """A page of workflows, newest first, in either store's placeholder style."""
    where, args = [], []
    if state:
        where.append(f"state = {placeholder}")
        args.append(state)
    if before_seq is not None:
        where.append(f"seq < {placeholder}")
        args.append(before_seq)
    sql = "SELECT * FROM workflows"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return f"{sql} ORDER BY seq DESC LIMIT {placeholder}", [*args, limit]


def workflow_from_row(r: Any) -> WorkflowRec:
    return WorkflowRec(
        id=r["id"],
        name=r["name"],
        requirements=r["requirements"],
        language=r["language"],
        priority=r["priority"],
        pipeline=r["pipeline"],
        pipeline_spec=r["pipeline_spec"],
        created_at=r["created_at"],
        request_id=r["request_id"] or "",
        labels=json.loads(r["labels"]),
        state=r["state"],
        error=r["error"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        seq=r["seq"],
        wait_for_models=bool(r["wait_for_models"]),
    )


def stage_from_row(r: Any) -> StageRec:
    return StageRec(
        name=r["name"],
        type=r["type"],
        model=r["model"],
        depends_on=tuple(json.loads(r["depends_on"])),
        state=r["state"],
        iteration=r["iteration"],
        output=r["output"],
        error=r["error"],
        verdict=r["verdict"],
        feedback=r["feedback"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
    )


def task_from_row(r: Any) -> TaskRec:
    return TaskRec(
        task_id=r["task_id"],
        stage=r["stage"],
        role=r["role"],
        iteration=r["iteration"],
        model=r["model"],
        queued_at=r["queued_at"],
        state=r["state"],
        node=r["node"],
        endpoint_id=r["endpoint_id"],
        attempt=r["attempt"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        stats=json.loads(r["stats"]),
        output=r["output"],
        error=r["error"],
    )
