"""Durable workflow state: SQLite in WAL mode, one writer thread with group commit.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.workflows.model import (
    WF_TERMINAL,
    Artifact,
    StageRec,
    TaskRec,
    WorkflowRec,
)
from hive.serving import Unavailable

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
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Largest number of operations committed in one transaction.
MAX_BATCH = 2000

Op = Callable[[sqlite3.Connection], None]


class StateUnwritable(Unavailable):
    """The state file cannot be written now: its disk is full, read-only or failing.

    What was accepted stays queued in memory and is written once the disk takes it
    again; new work that must be durable before its client is told is refused."""


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
    """The state file cannot be used (e.g. written by a newer coordinator)."""


@dataclass
class StoreStats:
    """What the writer has done; the benchmark reports writes per commit from these."""

    operations: int = 0
    commits: int = 0
    largest_batch: int = 0


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


class WorkflowStore:
    """SQLite persistence of workflows. ``open()`` before use, ``close()`` after."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        # FULL: every commit is fsynced, so a workflow a client was told about survives a
        # power loss too, not only a crash; group commit keeps that affordable.
        self.path = Path(path)
        self.synchronous = synchronous
        self.stats = StoreStats()
        self._pending: list[Op] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._killed = False
        self.migrations_applied: list[int] = []
        # Why the disk refuses writes now ("" while it takes them): see StateUnwritable.
        self.unwritable = ""
        self.unwritable_since: float | None = None
        self._fail_fast: set[asyncio.Future[None]] = set()
        self._held: list[Op] | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def open(self) -> None:
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
        self._killed = False
        self._writer = asyncio.create_task(self._write_loop(), name="hive-state-writer")

    async def close(self) -> None:
        """Commit everything queued, stop the writer, close the connections."""
        if self._writer is not None:
            await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self._close_connections()

    def _close_connections(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                conn.close()
        self._conn = self._reader = None

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
        if self._conn is not None and not self._committing:
            self._close_connections()

    # --- the writer -------------------------------------------------------------------

    _committing = False

    async def _write_loop(self) -> None:
        """Group commit: run every operation queued since the last commit on the loop
        (each is microseconds), then COMMIT in a worker thread (the fsync); what queues
        meanwhile goes into the next transaction.

        Rows are written on the loop rather than by a writer thread because a thread
        that needs the GIL once per statement, against a busy loop, waits up to the
        switch interval (5 ms) each time: hundreds of milliseconds per batch.
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            waiters, self._waiters = self._waiters, []
            if self._pending:
                self._wake.set()
                # Barriers wait for the operations queued before them, still pending.
                self._waiters, waiters = waiters, []
            error = await self._commit(ops) if ops else None
            if self._killed:
                self._close_connections()
                return
            if error is not None and disk_refused(error):
                held, self._held = self._held, None
                await self._hold(ops if held is None else held, waiters, error)
                continue
            if self.unwritable and ops:
                log.warning(
                    "state disk takes writes again after %.1fs: %d queued operations written",
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

    async def _hold(
        self, ops: list[Op], waiters: list[asyncio.Future[None]], error: BaseException
    ) -> None:
        """The disk refused the batch: keep it (and its waiters) at the head of the queue
        and try again after a pause, backing off, until the disk takes it."""
        if not self.unwritable:
            self.unwritable_since = time.monotonic()
            log.error(
                "state disk refuses writes (%s): %s; new workflows and access changes are "
                "refused, %d accepted operations are held in memory until it takes them",
                getattr(error, "sqlite_errorname", ""),
                error,
                len(ops),
            )
        self.unwritable = f"{self.path}: {error}"
        self._pending[:0] = ops
        refused = StateUnwritable(self._refusal())
        for future in waiters:
            # A waiter that must answer its client now (a new workflow, a new token) is
            # refused and withdraws its writes; the others wait for the disk.
            if future in self._fail_fast:
                if not future.done():
                    future.set_exception(refused)
            else:
                self._waiters.insert(0, future)
        since = time.monotonic() - (self.unwritable_since or time.monotonic())
        await asyncio.sleep(min(RETRY_MAX_SECONDS, RETRY_INITIAL_SECONDS * (1 + since)))
        self._wake.set()

    def _refusal(self) -> str:
        return (
            f"the coordinator's state disk refuses writes ({self.unwritable}); nothing new "
            "is accepted until it takes them again, and nothing accepted is lost"
        )

    def check_writable(self) -> None:
        """Raise StateUnwritable while the disk refuses writes."""
        if self.unwritable:
            raise StateUnwritable(self._refusal())

    async def commit_or_withdraw(self, ops: Sequence[Op]) -> None:
        """Wait until ``ops`` (just enqueued) are committed; if the disk refuses them,
        take them out of the queue and raise StateUnwritable: the caller's client is told
        "not accepted", and they will never be written behind its back."""
        self.check_writable()
        try:
            await self.flush(fail_fast=True)
        except StateUnwritable:
            withdrawn = set(ops)
            self._pending = [op for op in self._pending if op not in withdrawn]
            raise

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
        self._committing = True
        try:
            await asyncio.shield(asyncio.to_thread(conn.execute, "COMMIT"))
        except sqlite3.Error as exc:
            self._rollback(conn)
            if not disk_refused(exc):
                log.error("state commit failed: %s", exc)
            return exc
        finally:
            self._committing = False
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

    def _enqueue(self, op: Op) -> Op:
        if self._killed or self._writer is None:
            return op
        self._pending.append(op)
        self._wake.set()
        return op

    async def flush(self, fail_fast: bool = False) -> None:
        """Wait until everything enqueued so far is committed. While the disk refuses
        writes this waits until it takes them again, or with ``fail_fast`` raises
        StateUnwritable (what was enqueued stays queued: see commit_or_withdraw)."""
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

    # --- writes (enqueue; values are copied now, not when the writer runs) --------------

    def save_workflow(self, wf: WorkflowRec) -> Op:
        row = (
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
        )

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workflows (id, request_id, name, requirements, language, priority,"
                " pipeline, pipeline_spec, labels, state, error, created_at, started_at,"
                " finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET state=excluded.state, error=excluded.error,"
                " started_at=excluded.started_at, finished_at=excluded.finished_at",
                row,
            )

        return self._enqueue(op)

    def save_stage(self, workflow_id: str, position: int, stage: StageRec) -> Op:
        row = (
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

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO stages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

        return self._enqueue(op)

    def save_task(self, workflow_id: str, task: TaskRec) -> Op:
        row = (
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

    async def write_access(self, sql: str, params: Sequence[Any]) -> None:
        """One access-table statement, committed before this returns (a revocation or
        a new token must survive a restart the moment the admin is told it happened)."""
        self.check_writable()
        row = tuple(params)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(sql, row)

        await self.commit_or_withdraw([self._enqueue(op)])

    def read_access(self, table: str) -> list[sqlite3.Row]:
        if table not in ("api_tokens", "join_tokens", "revoked_nodes"):
            raise ValueError(f"not an access table: {table}")
        return self._db.execute(f"SELECT * FROM {table}").fetchall()

    # --- reads --------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("the workflow store is not open")
        return self._reader

    def _workflows(self, rows: list[sqlite3.Row], *, full: bool) -> list[WorkflowRec]:
        if not rows:
            return []
        out = {r["id"]: _workflow_from_row(r) for r in rows}
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
            out[r["workflow_id"]].stages[r["name"]] = StageRec(
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
        for r in self._db.execute(
            f"SELECT task_id, workflow_id, stage, role, iteration, model, state, node,"
            f" endpoint_id, attempt, queued_at, started_at, finished_at, stats, {output_col},"
            f" error FROM tasks WHERE workflow_id IN ({marks}) ORDER BY queued_at, rowid",
            ids,
        ):
            stage = out[r["workflow_id"]].stages.get(r["stage"])
            if stage is None:
                continue
            stage.tasks.append(
                TaskRec(
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
            )
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

    def get(self, workflow_id: str) -> WorkflowRec | None:
        rows = self._db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchall()
        found = self._workflows(rows, full=True)
        return found[0] if found else None

    def find_request(self, request_id: str) -> WorkflowRec | None:
        rows = self._db.execute(
            "SELECT * FROM workflows WHERE request_id = ?", (request_id,)
        ).fetchall()
        found = self._workflows(rows, full=True)
        return found[0] if found else None

    def list_page(self, state: int | None, limit: int, before_seq: int | None) -> list[WorkflowRec]:
        """Newest first; summaries (no outputs, no artifact contents)."""
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = "SELECT * FROM workflows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self._db.execute(sql, [*args, limit]).fetchall()
        return self._workflows(rows, full=False)

    def unfinished(self) -> list[WorkflowRec]:
        """Every workflow accepted and not finished, oldest first, with full records."""
        terminal = ",".join(str(s) for s in sorted(WF_TERMINAL))
        rows = self._db.execute(
            f"SELECT * FROM workflows WHERE state NOT IN ({terminal}) ORDER BY seq"
        ).fetchall()
        return self._workflows(rows, full=True)

    def schema_versions(self) -> list[tuple[int, str]]:
        return [
            (r[0], r[1])
            for r in self._db.execute(
                "SELECT version, description FROM schema_version ORDER BY version"
            )
        ]

    def count_tasks(self, workflow_id: str) -> dict[str, int]:
        return {
            r[0]: r[1]
            for r in self._db.execute(
                "SELECT stage, COUNT(*) FROM tasks WHERE workflow_id = ? GROUP BY stage",
                (workflow_id,),
            )
        }


def _workflow_from_row(r: Any) -> WorkflowRec:
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
    )
