"""Durable coordinator state in PostgreSQL, shared by several coordinators.

The same tables as the SQLite store (``store.MIGRATIONS``), in PostgreSQL types, plus the
leader's lease (``coordinator_lease``, ``coordinator_members``: coordinator.leader owns
their meaning). The same group commit: every change is an idempotent upsert queued to
one writer task, which sends everything queued while the previous transaction was in
flight as one pipelined transaction (psycopg's pipeline mode: one round trip for the
batch, not one per row), so durable writes do not become the dispatch bottleneck.

Fencing: with a ``fence`` (the leader's current epoch), every write transaction first
takes ``SELECT epoch FROM coordinator_lease WHERE id = 1 FOR SHARE``. A takeover
updates that row, so it waits for transactions that hold the share lock and every later
one sees the new epoch: when the row's epoch is not ``fence()`` the transaction is rolled
back and the store raises ``Fenced`` and writes nothing more. A paused or partitioned old
leader therefore never lands a write after a newer leader took the lease.

PostgreSQL unreachable, restarting or out of disk (``OperationalError``, SQLSTATE classes
08, 53, 57) is the same "state unwritable" as a full SQLite disk: what was accepted is
held in memory and retried until the server takes it; new work is refused (UNAVAILABLE).
Because every operation is an upsert or a delete by key, a batch whose COMMIT outcome
was lost with the connection is safe to send again.

Schema migrations run at ``open()`` under ``pg_advisory_lock``: coordinators starting
together apply each migration once; a database from a newer coordinator is refused,
naming both versions. URLs in logs and errors never carry the password (``redact_url``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from coordinator.leader import SCHEMA as LEASE_SCHEMA
from coordinator.workflows.model import WF_TERMINAL, Artifact, StageRec, TaskRec, WorkflowRec
from coordinator.workflows.store import (
    Fenced,
    GroupCommitStore,
    StateFileError,
    StateUnwritable,
    access_table,
    access_upsert,
    list_page_query,
    stage_from_row,
    stage_row,
    task_from_row,
    task_row,
    workflow_from_row,
    workflow_row,
)
from hive.config import redact_url

__all__ = ["Fenced", "PostgresStore", "StateUnwritable", "StoreUnreachable"]

log = logging.getLogger("hive.coordinator.workflows.store_pg")

# (version, description, SQL). Versions 1-3 are the SQLite store's, in PostgreSQL types
# (times stay epoch seconds, JSON stays text, so both stores read rows the same way);
# tasks and artifacts get an identity column for the insertion order SQLite's rowid
# gives. Append only; never edit a released entry.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "workflows, stages, tasks, artifacts",
        """
        CREATE TABLE workflows (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            request_id text,
            name text NOT NULL,
            requirements text NOT NULL,
            language text NOT NULL,
            priority integer NOT NULL,
            pipeline text NOT NULL,
            pipeline_spec text NOT NULL,
            labels text NOT NULL,
            state integer NOT NULL,
            error text NOT NULL,
            created_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision
        );
        CREATE UNIQUE INDEX workflows_request_id ON workflows(request_id)
            WHERE request_id IS NOT NULL;
        CREATE TABLE stages (
            workflow_id text NOT NULL,
            position integer NOT NULL,
            name text NOT NULL,
            type integer NOT NULL,
            model text NOT NULL,
            depends_on text NOT NULL,
            state integer NOT NULL,
            iteration integer NOT NULL,
            output text NOT NULL,
            error text NOT NULL,
            verdict text NOT NULL,
            feedback text NOT NULL,
            started_at double precision,
            finished_at double precision,
            PRIMARY KEY (workflow_id, name)
        );
        CREATE TABLE tasks (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            task_id text PRIMARY KEY,
            workflow_id text NOT NULL,
            stage text NOT NULL,
            role text NOT NULL,
            iteration integer NOT NULL,
            model text NOT NULL,
            state integer NOT NULL,
            node text NOT NULL,
            endpoint_id text NOT NULL,
            attempt integer NOT NULL,
            queued_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            stats text NOT NULL,
            output text NOT NULL,
            error text NOT NULL
        );
        CREATE INDEX tasks_workflow ON tasks(workflow_id);
        CREATE TABLE artifacts (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            workflow_id text NOT NULL,
            path text NOT NULL,
            kind text NOT NULL,
            stage text NOT NULL,
            content text NOT NULL,
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
            id text PRIMARY KEY,
            name text NOT NULL,
            scope text NOT NULL,
            hash text NOT NULL UNIQUE,
            created_at double precision NOT NULL,
            expires_at double precision,
            revoked_at double precision
        );
        CREATE TABLE join_tokens (
            id text PRIMARY KEY,
            node_name text NOT NULL,
            hash text NOT NULL UNIQUE,
            created_at double precision NOT NULL,
            expires_at double precision NOT NULL,
            revoked_at double precision,
            uses_left integer NOT NULL,
            enrolled text NOT NULL
        );
        CREATE TABLE revoked_nodes (
            name text PRIMARY KEY,
            reason text NOT NULL,
            revoked_at double precision NOT NULL
        );
        """,
    ),
    (
        4,
        "coordinators: the leader's lease with its fencing epoch, and the members",
        LEASE_SCHEMA,
    ),
    (
        5,
        "optimizer: what it applied (placement, limits, weights), for the next leader",
        """
        CREATE TABLE optimizer_state (
            key text PRIMARY KEY,
            value text NOT NULL,
            updated_at double precision NOT NULL
        );
        """,
    ),
    (
        6,
        "workflows: wait_for_models (a stage waits for a node with its model)",
        "ALTER TABLE workflows ADD COLUMN wait_for_models boolean NOT NULL DEFAULT false;",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# pg_advisory_lock key for migrations: "hive" in ASCII, so other applications sharing the
# database are unlikely to collide with it.
MIGRATION_LOCK = 0x68697665
# How long a connection attempt may take before the server counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 5
# How long the writer waits for a pooled connection before it holds the batch.
CHECKOUT_TIMEOUT_SECONDS = 2.0
# SQLSTATE classes meaning "the server cannot take this now, try later": connection
# exception, insufficient resources (disk full, out of memory), operator intervention
# (shutdown, crash recovery, "cannot connect now").
RETRYABLE_CLASSES = ("08", "53", "57")

FENCE_SQL = "SELECT epoch FROM coordinator_lease WHERE id = 1 FOR SHARE"

WORKFLOW_UPSERT = (
    "INSERT INTO workflows (id, request_id, name, requirements, language, priority,"
    " pipeline, pipeline_spec, labels, state, error, created_at, started_at, finished_at,"
    " wait_for_models) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (id) DO UPDATE SET state = excluded.state, error = excluded.error,"
    " started_at = excluded.started_at, finished_at = excluded.finished_at"
)
STAGE_COLUMNS = (
    "workflow_id, position, name, type, model, depends_on, state, iteration, output, error,"
    " verdict, feedback, started_at, finished_at"
)
STAGE_UPSERT = (
    f"INSERT INTO stages ({STAGE_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (workflow_id, name) DO UPDATE SET position = excluded.position,"
    " type = excluded.type, model = excluded.model, depends_on = excluded.depends_on,"
    " state = excluded.state, iteration = excluded.iteration, output = excluded.output,"
    " error = excluded.error, verdict = excluded.verdict, feedback = excluded.feedback,"
    " started_at = excluded.started_at, finished_at = excluded.finished_at"
)
TASK_COLUMNS = (
    "task_id, workflow_id, stage, role, iteration, model, state, node, endpoint_id, attempt,"
    " queued_at, started_at, finished_at, stats, output, error"
)
TASK_UPSERT = (
    f"INSERT INTO tasks ({TASK_COLUMNS})"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (task_id) DO UPDATE SET workflow_id = excluded.workflow_id,"
    " stage = excluded.stage, role = excluded.role, iteration = excluded.iteration,"
    " model = excluded.model, state = excluded.state, node = excluded.node,"
    " endpoint_id = excluded.endpoint_id, attempt = excluded.attempt,"
    " queued_at = excluded.queued_at, started_at = excluded.started_at,"
    " finished_at = excluded.finished_at, stats = excluded.stats, output = excluded.output,"
    " error = excluded.error"
)


class StoreUnreachable(StateFileError):
    """PostgreSQL cannot be used at start: unreachable, the password refused, no such
    database. The message names the URL without its password."""


class PgOp:
    """One queued operation: statements run in order in the batch's transaction. Compared
    by identity, so withdrawing one never withdraws an equal twin."""

    __slots__ = ("statements",)

    def __init__(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        self.statements = statements


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` means PostgreSQL cannot take writes now but may later."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.Error) and sqlstate[:2] in RETRYABLE_CLASSES


class PostgresStore(GroupCommitStore[PgOp]):
    """PostgreSQL persistence of the coordinator's state (see the module docstring).

    ``fence``: returns this coordinator's leader epoch, or raises when it is not the
    leader; None writes without fencing (one coordinator, or tests). ``on_fenced`` is
    called once, on the loop, when a write found a newer leader (the store has stopped
    writing; the coordinator steps down).
    """

    def __init__(
        self,
        url: str,
        *,
        fence: Callable[[], int] | None = None,
        on_fenced: Callable[[Fenced], None] | None = None,
        pool_size: int = 4,
        session_options: str = "",
    ) -> None:
        super().__init__()
        self.url = url
        # libpq options for the pool's connections (coordinator.leader.session_options:
        # the server ends a write transaction a paused leader left open).
        self.session_options = session_options
        self.fence = fence
        self.on_fenced = on_fenced
        self.pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._password = _password(url)

    def describe(self) -> str:
        return redact_url(self.url)

    def _error_text(self, error: BaseException) -> str:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return text.replace(self._password, "***") if self._password else text

    def _error_name(self, exc: BaseException) -> str:
        return getattr(exc, "sqlstate", None) or type(exc).__name__

    # --- lifecycle ----------------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except psycopg.Error as exc:
            raise StoreUnreachable(
                f"cannot use the state store {self.describe()}: {self._error_text(exc)}"
            ) from None

    async def open(self) -> None:
        """Connect, migrate under the advisory lock, open the pool, start the writer.

        Raises StoreUnreachable (the server down, a wrong password) or StateFileError (a
        newer schema) with the URL's password left out."""
        conn = await self._connect()
        try:
            self.migrations_applied = await migrate(conn)
        except psycopg.Error as exc:
            raise StoreUnreachable(
                f"cannot migrate the state store {self.describe()}: {self._error_text(exc)}"
            ) from None
        finally:
            await conn.close()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.url,
            min_size=2,
            max_size=self.pool_size,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                **({"options": self.session_options} if self.session_options else {}),
            },
            # A connection broken by a server restart is noticed at checkout, not by the
            # read that would have failed with it.
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="hive-state",
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS * 2)
        self._pool = pool
        self._start_writer()
        log.info(
            "state in PostgreSQL %s (schema version %d%s)",
            self.describe(),
            SCHEMA_VERSION,
            f", applied {self.migrations_applied}" if self.migrations_applied else "",
        )

    async def close(self) -> None:
        """Commit everything queued (unless fenced), stop the writer, close the pool."""
        await self._stop_writer()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _after_kill(self) -> None:
        # The pool is closed by close(): kill() is synchronous, closing is not.
        pass

    # --- the writer -----------------------------------------------------------------------

    def _refused(self, exc: BaseException) -> bool:
        return retryable(exc)

    async def _commit(self, ops: Sequence[PgOp]) -> BaseException | None:
        pool = self._pool
        assert pool is not None
        try:
            async with pool.connection(timeout=CHECKOUT_TIMEOUT_SECONDS) as conn:
                async with conn.transaction():
                    await self._check_fence(conn)
                    async with conn.pipeline(), conn.cursor() as cur:
                        for op in ops:
                            for sql, params in op.statements:
                                await cur.execute(sql, params)
        except Fenced as exc:
            return exc
        except psycopg.Error as exc:
            if retryable(exc):
                return exc
            log.error("state batch of %d failed (%s); retrying one by one", len(ops), exc)
            return await self._one_by_one(ops)
        return None

    async def _one_by_one(self, ops: Sequence[PgOp]) -> BaseException | None:
        """One bad operation must not take the others down with it; when the server
        refuses one, it and the ones after it are held (``_held``), not dropped."""
        pool = self._pool
        assert pool is not None
        last: BaseException | None = None
        for i, op in enumerate(ops):
            try:
                async with pool.connection(timeout=CHECKOUT_TIMEOUT_SECONDS) as conn:
                    async with conn.transaction():
                        await self._check_fence(conn)
                        for sql, params in op.statements:
                            await conn.execute(sql, params)
            except Fenced as exc:
                return exc
            except psycopg.Error as exc:
                if retryable(exc):
                    self._held = list(ops[i:])
                    return exc
                log.error("state write failed: %s", exc)
                last = exc
        return last

    async def _check_fence(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Lock the lease row for share and compare its epoch with ours (see module)."""
        if self.fence is None:
            return
        row = await (await conn.execute(FENCE_SQL)).fetchone()
        stored = row[0] if row else None
        try:
            mine: int | None = self.fence()
        except Exception as exc:
            raise Fenced(f"this coordinator is not the leader: {exc}") from None
        if stored != mine:
            raise Fenced(
                f"the lease's epoch is {stored}, this coordinator's is {mine}: a newer leader "
                "holds the lease; this coordinator writes nothing more"
            )

    # --- writes ---------------------------------------------------------------------------

    def save_workflow(self, wf: WorkflowRec) -> PgOp:
        row = workflow_row(wf)
        return self._enqueue(PgOp([(WORKFLOW_UPSERT, row)]))

    def save_stage(self, workflow_id: str, position: int, stage: StageRec) -> PgOp:
        row = stage_row(workflow_id, position, stage)
        return self._enqueue(PgOp([(STAGE_UPSERT, row)]))

    def save_task(self, workflow_id: str, task: TaskRec) -> PgOp:
        row = task_row(workflow_id, task)
        return self._enqueue(PgOp([(TASK_UPSERT, row)]))

    def save_artifacts(self, workflow_id: str, artifacts: Sequence[Artifact]) -> PgOp:
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM artifacts WHERE workflow_id = %s", (workflow_id,))
        ]
        statements += [
            (
                "INSERT INTO artifacts (workflow_id, path, kind, stage, content)"
                " VALUES (%s,%s,%s,%s,%s)",
                (workflow_id, a.path, a.kind, a.stage, a.content),
            )
            for a in artifacts
        ]
        return self._enqueue(PgOp(statements))

    def save_all(self, wf: WorkflowRec) -> list[PgOp]:
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
        await self.commit_or_withdraw([self._enqueue(PgOp([access_upsert(table, row, "%s")]))])

    async def delete_access(self, table: str, key: Any) -> None:
        self.check_writable()
        column = access_table(table)[0]
        sql = f"DELETE FROM {table} WHERE {column} = %s"
        await self.commit_or_withdraw([self._enqueue(PgOp([(sql, (key,))]))])

    async def read_access(self, table: str) -> list[Mapping[str, Any]]:
        access_table(table)
        return [*await self._fetch(f"SELECT * FROM {table}")]

    # --- reads ----------------------------------------------------------------------------

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        try:
            async with self._pool.connection(timeout=CHECKOUT_TIMEOUT_SECONDS) as conn:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(sql, params)
                    return await cur.fetchall()
        except psycopg.Error as exc:
            if retryable(exc):
                raise StateUnwritable(
                    f"the coordinator's state store {self.describe()} cannot be read now: "
                    f"{self._error_text(exc)}"
                ) from None
            raise

    async def _workflows(self, rows: list[dict[str, Any]], *, full: bool) -> list[WorkflowRec]:
        if not rows:
            return []
        out = {r["id"]: workflow_from_row(r) for r in rows}
        ids = list(out)
        output_col = "output" if full else "'' AS output"
        feedback_col = "feedback" if full else "'' AS feedback"
        for r in await self._fetch(
            f"SELECT workflow_id, position, name, type, model, depends_on, state, iteration,"
            f" {output_col}, error, verdict, {feedback_col}, started_at, finished_at"
            " FROM stages WHERE workflow_id = ANY(%s) ORDER BY workflow_id, position",
            (ids,),
        ):
            out[r["workflow_id"]].stages[r["name"]] = stage_from_row(r)
        for r in await self._fetch(
            f"SELECT task_id, workflow_id, stage, role, iteration, model, state, node,"
            f" endpoint_id, attempt, queued_at, started_at, finished_at, stats, {output_col},"
            " error FROM tasks WHERE workflow_id = ANY(%s) ORDER BY queued_at, seq",
            (ids,),
        ):
            stage = out[r["workflow_id"]].stages.get(r["stage"])
            if stage is not None:
                stage.tasks.append(task_from_row(r))
        content_col = "content" if full else "'' AS content"
        for r in await self._fetch(
            f"SELECT workflow_id, path, kind, stage, {content_col} FROM artifacts"
            " WHERE workflow_id = ANY(%s) ORDER BY seq",
            (ids,),
        ):
            out[r["workflow_id"]].artifacts.append(
                Artifact(r["path"], r["content"], r["kind"], r["stage"])
            )
        return [out[i] for i in ids]

    async def get(self, workflow_id: str) -> WorkflowRec | None:
        rows = await self._fetch("SELECT * FROM workflows WHERE id = %s", (workflow_id,))
        found = await self._workflows(rows, full=True)
        return found[0] if found else None

    async def find_request(self, request_id: str) -> WorkflowRec | None:
        rows = await self._fetch("SELECT * FROM workflows WHERE request_id = %s", (request_id,))
        found = await self._workflows(rows, full=True)
        return found[0] if found else None

    async def list_page(
        self, state: int | None, limit: int, before_seq: int | None
    ) -> list[WorkflowRec]:
        """Newest first; summaries (no outputs, no artifact contents)."""
        sql, args = list_page_query(state, limit, before_seq, "%s")
        rows = await self._fetch(sql, args)
        return await self._workflows(rows, full=False)

    async def unfinished(self) -> list[WorkflowRec]:
        """Every workflow accepted and not finished, oldest first, with full records."""
        rows = await self._fetch(
            "SELECT * FROM workflows WHERE NOT (state = ANY(%s)) ORDER BY seq",
            (sorted(WF_TERMINAL),),
        )
        return await self._workflows(rows, full=True)

    async def schema_versions(self) -> list[tuple[int, str]]:
        rows = await self._fetch("SELECT version, description FROM schema_version ORDER BY version")
        return [(r["version"], r["description"]) for r in rows]

    async def count_tasks(self, workflow_id: str) -> dict[str, int]:
        rows = await self._fetch(
            "SELECT stage, COUNT(*) AS n FROM tasks WHERE workflow_id = %s GROUP BY stage",
            (workflow_id,),
        )
        return {r["stage"]: r["n"] for r in rows}


async def migrate(
    conn: psycopg.AsyncConnection[Any], clock: Callable[[], float] = time.time
) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction, holding the
    migration advisory lock (other coordinators starting now wait, then find nothing to
    do). Returns the versions applied; refuses a database from a newer schema."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
            " description text NOT NULL, applied_at double precision NOT NULL)"
        )
        row = await (
            await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        ).fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StateFileError(
                f"the PostgreSQL state has schema version {current}; this coordinator knows "
                f"up to {SCHEMA_VERSION}: upgrade the coordinator"
            )
        applied = []
        for version, description, sql in MIGRATIONS:
            if version <= current:
                continue
            async with conn.transaction():
                for statement in _statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version VALUES (%s, %s, %s)",
                    (version, description, clock()),
                )
            applied.append(version)
        return applied
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def _statements(script: str) -> list[str]:
    """A migration's statements (they hold no semicolons inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _password(url: str) -> str:
    try:
        return str(psycopg.conninfo.conninfo_to_dict(url).get("password") or "")
    except psycopg.Error:
        return ""
