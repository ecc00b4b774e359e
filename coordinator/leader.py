"""Leader election in PostgreSQL, with a fencing epoch (issue 18, item 2).

Several coordinators share one PostgreSQL; one of them leads (dispatches, writes the
state), the others stand by and redirect clients to it. The leader holds a lease, one row
of ``coordinator_lease``; every takeover raises the row's ``epoch``, and every write the
leader makes checks that epoch in its own transaction (``check_epoch``), so a leader that
was paused or cut off can never write after someone else took the lease: the Patroni /
Kubernetes lease pattern on an existing engine, not a home-made consensus.

The invariants and how they hold:

* **One holder at a time, decided by the database.** A lease is taken in one statement,
  ``INSERT … ON CONFLICT … DO UPDATE … WHERE expires_at < now()``, on the database's
  clock only: concurrent attempts serialise on the row, the first wins, the others see an
  unexpired lease and get nothing back. No local wall clock is compared with anything.
* **The leader stops before anyone can take over.** It measures its lease on its own
  monotonic clock from the *start* of its last successful renew (or acquisition): the
  database set ``expires_at = now() + lease`` at or after that instant, so the local
  deadline passes first. It steps down at that deadline less a margin (a tenth of the
  lease, for the owner to stop its work), when a renew fails, or when a renew outlasts
  its timeout; ``fence()`` and ``is_leader`` read the clock themselves, so even a
  process whose event loop was frozen (SIGSTOP, a long GC pause) answers "not leader" the
  moment it runs again.
* **Writes are fenced in the database too.** A leader's store calls ``fence()`` for the
  epoch and ``check_epoch(conn, epoch)`` in each write transaction (``FOR SHARE`` on the
  lease row, so a takeover waits for that transaction, and a later write with the old
  epoch is refused). A write transaction left open by a paused leader would block a
  takeover until it ends: connections that write take ``session_options(lease)``, so the
  server ends such a transaction after half a lease.
* **The epoch only grows**: every acquisition, including the same holder's after it lost
  the lease, is ``epoch + 1``. A cancelled ``run()`` does not release the lease (a crash
  must look the same); ``release()`` is the graceful hand-over.

How it fails: with PostgreSQL unreachable nobody leads (a leader steps down within its
lease; standbys keep retrying with backoff). A renew whose connection hangs is abandoned
at its timeout; psycopg then tries to cancel the query for up to ten seconds before the
connection is dropped, during which this instance is already a standby but cannot
reconnect. Takeover after a crash takes the remaining lease (standbys schedule their next
attempt at the expiry they read from the database) plus one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

log = logging.getLogger("hive.coordinator.leader")

T = TypeVar("T")

# The advisory lock key taken (for the transaction) while creating the tables: the same
# as the PostgreSQL store's migrations ("hive", store_pg.MIGRATION_LOCK), so this DDL and
# theirs never run at the same time.
SCHEMA_LOCK_KEY = 0x68697665

SCHEMA = """
CREATE TABLE IF NOT EXISTS coordinator_lease (
  id smallint PRIMARY KEY CHECK (id = 1),
  holder text NOT NULL, address text NOT NULL, epoch bigint NOT NULL,
  expires_at timestamptz NOT NULL, renewed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS coordinator_members (
  holder text PRIMARY KEY, address text NOT NULL, role text NOT NULL,
  epoch bigint NOT NULL, seen_at timestamptz NOT NULL);
"""

# Take the lease if it is free or expired, on the database's clock, in one statement.
ACQUIRE = """
INSERT INTO coordinator_lease AS l (id, holder, address, epoch, expires_at, renewed_at)
VALUES (1, %(holder)s, %(address)s, 1, now() + %(lease)s * interval '1 second', now())
ON CONFLICT (id) DO UPDATE SET
  holder = excluded.holder, address = excluded.address, epoch = l.epoch + 1,
  expires_at = excluded.expires_at, renewed_at = excluded.renewed_at
WHERE l.expires_at < now()
RETURNING epoch
"""

RENEW = """
UPDATE coordinator_lease
SET expires_at = now() + %(lease)s * interval '1 second', renewed_at = now()
WHERE id = 1 AND holder = %(holder)s AND epoch = %(epoch)s AND expires_at > now()
"""

READ_LEASE = """
SELECT holder, address, epoch,
       extract(epoch FROM now() - renewed_at)::float8,
       extract(epoch FROM expires_at - now())::float8
FROM coordinator_lease WHERE id = 1
"""

UPSERT_MEMBER = """
INSERT INTO coordinator_members (holder, address, role, epoch, seen_at)
VALUES (%(holder)s, %(address)s, %(role)s, %(epoch)s, now())
ON CONFLICT (holder) DO UPDATE SET
  address = excluded.address, role = excluded.role, epoch = excluded.epoch,
  seen_at = excluded.seen_at
"""

RELEASE = """
UPDATE coordinator_lease SET expires_at = now()
WHERE id = 1 AND holder = %(holder)s AND epoch = %(epoch)s AND expires_at > now()
"""

MEMBERS = """
SELECT m.holder, m.address, m.epoch,
       extract(epoch FROM now() - m.seen_at)::float8,
       l.holder IS NOT NULL,
       extract(epoch FROM now() - l.renewed_at)::float8,
       extract(epoch FROM l.expires_at - now())::float8
FROM coordinator_members m
LEFT JOIN coordinator_lease l ON l.id = 1 AND l.holder = m.holder AND l.expires_at > now()
ORDER BY l.holder IS NULL, m.holder
"""

# The leader's local deadline is the lease less this fraction of it: time for the owner
# to stop dispatching before the database could let anyone else take over.
STEP_DOWN_MARGIN = 0.1
# Reconnection backoff: first wait, doubling up to max(renew_seconds, this).
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 1.0


class NotLeader(RuntimeError):
    """This coordinator does not hold the lease; ``leader_address`` is the leader's gRPC
    address if one is known (for a redirect), else None."""

    def __init__(self, leader_address: str | None, message: str = "") -> None:
        self.leader_address = leader_address
        super().__init__(
            message
            or (f"not the leader (leader: {leader_address})" if leader_address else "no leader")
        )


class Fenced(NotLeader):
    """A write carried ``epoch`` but the lease row holds ``current`` (None: no lease):
    a newer leader exists, the write must not land."""

    def __init__(self, epoch: int, current: int | None) -> None:
        self.epoch, self.current = epoch, current
        super().__init__(None, f"fenced: write with epoch {epoch}, lease epoch is {current}")


@dataclass(frozen=True)
class Member:
    """One coordinator as ``coordinator_members`` and the lease know it; ages are on the
    database's clock, in seconds."""

    holder: str
    address: str
    role: str  # "leader" while it holds an unexpired lease, else "standby"
    epoch: int  # the epoch it held or last saw
    seen_age: float  # since it last wrote its row (about every renew_seconds when alive)
    lease_age: float | None  # the leader's: since its last renew; None for a standby
    expires_in: float | None  # the leader's lease: until it expires; None for a standby


def display_url(url: str) -> str:
    """``url`` without its password, for logs and errors: a URL's ``user:password@``
    and ``?password=``, or a key=value string's ``password=``."""
    if "://" in url:
        url = re.sub(r"^([^:/]+://[^:/@]*:)[^@/]*@", r"\1***@", url)
        return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


async def ensure_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the lease and members tables if absent, under a transaction-scoped
    advisory lock so that coordinators starting together do not race on the DDL."""
    cursor = await conn.execute(
        "SELECT to_regclass('coordinator_lease') IS NOT NULL"
        " AND to_regclass('coordinator_members') IS NOT NULL"
    )
    row = await cursor.fetchone()
    if row is not None and row[0]:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        await conn.execute(SCHEMA)


def session_options(lease_seconds: float) -> str:
    """libpq ``options`` for the connections a leader writes through (psycopg's
    ``options=`` keyword; a pool's ``kwargs``): the server ends a transaction left idle
    for half a lease. Without it a leader paused or cut off inside a write transaction
    keeps its ``FOR SHARE`` lock on the lease row, and no standby can take over until
    the leader resumes or TCP gives up on it (hours)."""
    half = max(100, int(lease_seconds * 500))
    # tcp_user_timeout: a backend blocked sending to a leader across a cut link (its
    # transaction active, not idle, still holding its FOR SHARE) gives the connection up
    # after half a lease of unacknowledged data instead of TCP's quarter of an hour.
    return f"-c idle_in_transaction_session_timeout={half} -c tcp_user_timeout={half}"


async def check_epoch(conn: psycopg.AsyncConnection[Any], epoch: int) -> None:
    """Inside a write transaction on ``conn``: lock the lease row (``FOR SHARE``, so a
    takeover waits until this transaction ends) and raise ``Fenced`` unless its epoch is
    still ``epoch``."""
    cursor = await conn.execute("SELECT epoch FROM coordinator_lease WHERE id = 1 FOR SHARE")
    row = await cursor.fetchone()
    current = None if row is None else int(row[0])
    if current != epoch:
        raise Fenced(epoch, current)


async def members(url: str, *, timeout: float = 5.0) -> list[Member]:
    """The coordinators that ever joined, the leader first (for ``hive status``); [] when
    no coordinator has created the tables yet."""
    async with asyncio.timeout(timeout):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute("SELECT to_regclass('coordinator_members') IS NOT NULL")
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return []
            cursor = await conn.execute(MEMBERS)
            return [
                Member(
                    holder=holder,
                    address=address,
                    role="leader" if leads else "standby",
                    epoch=int(epoch),
                    seen_age=max(0.0, seen_age),
                    lease_age=lease_age,
                    expires_in=expires_in,
                )
                for holder, address, epoch, seen_age, leads, lease_age, expires_in in (
                    await cursor.fetchall()
                )
            ]


class LeaderElection:
    """This coordinator's part in the election: ``run()`` until cancelled; read
    ``is_leader``/``fence()``; react with ``wait_elected()``/``wait_demoted()`` or
    ``on_change``.

    ``holder`` must be unique per process (a restarted coordinator with the same holder
    waits for its old lease to expire, like anyone else); ``address`` is the gRPC
    address standbys hand to clients. ``clock`` is monotonic seconds (``time.monotonic``,
    the event loop's clock, by default) and only measures the local lease; every
    statement is cut at ``timeout_seconds`` (half the lease by default).

    Counters for metrics, plain attributes: ``takeovers`` (leases this instance won),
    ``failovers`` (of those, the ones that replaced an earlier lease: epoch > 1),
    ``step_downs``, ``renewals``, ``renew_failures``, ``last_renew_latency`` (seconds, of
    the last successful renew or acquisition; None before the first).
    """

    def __init__(
        self,
        url: str,
        holder: str,
        address: str,
        *,
        lease_seconds: float = 5.0,
        renew_seconds: float = 1.0,
        timeout_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_seconds < lease_seconds:
            raise ValueError(
                f"renew_seconds ({renew_seconds}) must be positive and below "
                f"lease_seconds ({lease_seconds})"
            )
        self.url = url
        self.holder = holder
        self.address = address
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        # Each statement's limit; a renew is also cut at the local deadline.
        self.timeout_seconds = timeout_seconds or lease_seconds / 2
        self._clock = clock
        self._local_lease = lease_seconds * (1 - STEP_DOWN_MARGIN)

        self._leader = False
        self._epoch = 0  # held while leader; else the lease's as last read
        self._renewed_at = 0.0  # local clock, start of the last successful renew
        self._deadline = 0.0  # local clock: leader until then at most
        # The lease as a standby last read it (local clock of the read).
        self._seen_holder: str | None = None
        self._seen_address: str | None = None
        self._seen_at = 0.0
        self._seen_lease_age = 0.0
        self._seen_expires_in = 0.0

        self._elected = asyncio.Event()
        self._demoted = asyncio.Event()
        self._demoted.set()
        self._callbacks: list[Callable[[bool, int], object]] = []

        self.takeovers = 0
        self.failovers = 0
        self.step_downs = 0
        self.renewals = 0
        self.renew_failures = 0
        self.last_renew_latency: float | None = None

    # -- what the owner reads ---------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this instance holds the lease and its local deadline has not
        passed (a passed deadline steps down here and now: read it on the event loop)."""
        if self._leader and self._clock() >= self._deadline:
            self._step_down("local lease deadline passed")
        return self._leader

    @property
    def epoch(self) -> int:
        """The epoch held while leader; otherwise the lease's as last read (0: none)."""
        return self._epoch

    @property
    def leader_address(self) -> str | None:
        """Where clients should go: this instance's address while it leads, else the
        holder's as last read while that lease is unexpired, else None."""
        if self.is_leader:
            return self.address
        # Our own lease, lost locally but not yet expired, is no one to redirect to.
        if self._seen_address is None or self._seen_holder == self.holder:
            return None
        expires_in = self.expires_in
        return self._seen_address if expires_in is not None and expires_in > 0 else None

    @property
    def leader_holder(self) -> str | None:
        if self.is_leader:
            return self.holder
        return self._seen_holder if self.leader_address is not None else None

    @property
    def lease_age(self) -> float | None:
        """Seconds since the lease was last renewed (None: no lease seen yet)."""
        if self._leader:
            return self._clock() - self._renewed_at
        if self._seen_holder is None:
            return None
        return self._seen_lease_age + (self._clock() - self._seen_at)

    @property
    def expires_in(self) -> float | None:
        """Seconds until the lease expires: the local deadline while leading, else the
        database's expiry as last read (negative: expired)."""
        if self._leader:
            return self._deadline - self._clock()
        if self._seen_holder is None:
            return None
        return self._seen_expires_in - (self._clock() - self._seen_at)

    def fence(self) -> int:
        """The epoch to write with, if this instance leads; else ``NotLeader`` naming
        the leader's address when known."""
        if self.is_leader:
            return self._epoch
        raise NotLeader(self.leader_address)

    def state(self) -> dict[str, Any]:
        """A snapshot for status lines and logs."""
        return {
            "holder": self.holder,
            "address": self.address,
            "is_leader": self.is_leader,
            "epoch": self._epoch,
            "leader_address": self.leader_address,
            "leader_holder": self.leader_holder,
            "lease_age": self.lease_age,
            "expires_in": self.expires_in,
            "takeovers": self.takeovers,
            "failovers": self.failovers,
            "step_downs": self.step_downs,
            "last_renew_latency": self.last_renew_latency,
        }

    async def wait_elected(self) -> int:
        """Return the epoch once this instance leads (at once if it does)."""
        while not self.is_leader:
            await self._elected.wait()
        return self._epoch

    async def wait_demoted(self) -> None:
        """Return once this instance no longer leads (at once if it does not)."""
        while self.is_leader:
            await self._demoted.wait()

    def on_change(self, callback: Callable[[bool, int], object]) -> Callable[[], None]:
        """Call ``callback(is_leader, epoch)`` on the event loop at every election and
        step-down; returns a function that unsubscribes it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead and renew until cancelled. Connection failures step down (if
        leading) and reconnect with backoff. Cancellation steps down without releasing
        the lease (``release()`` hands it over)."""
        backoff = BACKOFF_FIRST
        failing = False
        try:
            while True:
                conn: psycopg.AsyncConnection[Any] | None = None
                try:
                    conn = await self._bounded(self._connect(), self.timeout_seconds)
                    await self._bounded(ensure_schema(conn), self.timeout_seconds)
                    if failing:
                        log.info("leader election: %s reconnected to %s", self.holder, self._db)
                    failing, backoff = False, BACKOFF_FIRST
                    await self._campaign(conn)
                except (psycopg.Error, OSError, TimeoutError) as error:
                    if self._leader:
                        self.renew_failures += 1
                    self._step_down(f"database error: {error!r}")
                    level = logging.DEBUG if failing else logging.WARNING
                    log.log(
                        level,
                        "leader election: %s lost %s (%s); retrying in %.2f s",
                        self.holder,
                        self._db,
                        str(error).strip() or type(error).__name__,
                        backoff,
                    )
                    failing = True
                finally:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max(self.renew_seconds, BACKOFF_CAP))
        finally:
            self._step_down("stopped")

    async def release(self) -> None:
        """Graceful hand-over, after ``run()`` was cancelled: expire this instance's
        lease now (if it still holds the epoch it last held) and leave the members list,
        so a standby takes over at its next attempt instead of after the lease."""
        self._step_down("released")
        async with asyncio.timeout(self.timeout_seconds):
            async with await self._connect() as conn:
                await conn.execute(RELEASE, {"holder": self.holder, "epoch": self._epoch})
                await conn.execute(
                    "DELETE FROM coordinator_members WHERE holder = %s", (self.holder,)
                )
        log.info("leader election: %s released epoch %d", self.holder, self._epoch)

    @property
    def _db(self) -> str:
        return display_url(self.url)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, application_name=f"hive-coordinator {self.holder}"[:63]
        )

    async def _campaign(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """One connection's life: lead or stand by, each renew_seconds, until an error."""
        while True:
            if self._leader:
                await self._renew(conn)
                if not self._leader:
                    continue  # lost it: read who holds it now, at once
                await self._upsert_member(conn, "leader")
                # Wake for the next renew, or at the deadline if the renew comes late.
                wait = min(self.renew_seconds, self._deadline - self._clock())
            else:
                await self._try_acquire(conn)
                if self._leader:
                    await self._upsert_member(conn, "leader")
                    wait = self.renew_seconds
                else:
                    await self._read_lease(conn)
                    await self._upsert_member(conn, "standby")
                    # Try again at the expiry the database gave, if it comes sooner.
                    wait = max(0.005, min(self.renew_seconds, self._seen_expires_in + 0.002))
            await asyncio.sleep(max(0.0, wait))

    async def _try_acquire(self, conn: psycopg.AsyncConnection[Any]) -> None:
        start = self._clock()
        cursor = await self._bounded(
            conn.execute(
                ACQUIRE,
                {"holder": self.holder, "address": self.address, "lease": self.lease_seconds},
            ),
            self.timeout_seconds,
        )
        row = await cursor.fetchone()
        if row is None:
            return
        self.last_renew_latency = self._clock() - start
        epoch = int(row[0])
        self.takeovers += 1
        if epoch > 1:
            self.failovers += 1
        self._become_leader(epoch, start)

    async def _renew(self, conn: psycopg.AsyncConnection[Any]) -> None:
        start = self._clock()
        if start >= self._deadline:
            self._step_down("local lease deadline passed before the renew")
            return
        cursor = await self._bounded(
            conn.execute(
                RENEW, {"holder": self.holder, "epoch": self._epoch, "lease": self.lease_seconds}
            ),
            min(self.timeout_seconds, self._deadline - start),
        )
        if cursor.rowcount != 1:
            self.renew_failures += 1
            self._step_down("lease lost (renew matched no row)")
            return
        self.last_renew_latency = self._clock() - start
        self.renewals += 1
        # From the start of the renew: the database's now() was at or after it.
        self._renewed_at = start
        self._deadline = start + self._local_lease

    async def _read_lease(self, conn: psycopg.AsyncConnection[Any]) -> None:
        cursor = await self._bounded(conn.execute(READ_LEASE), self.timeout_seconds)
        row = await cursor.fetchone()
        if row is None:
            self._seen_holder = self._seen_address = None
            return
        holder, address, epoch, lease_age, expires_in = row
        if holder != self._seen_holder or int(epoch) != self._epoch:
            log.info(
                "leader election: %s sees leader %s at %s, epoch %d",
                self.holder,
                holder,
                address,
                epoch,
            )
        self._seen_holder, self._seen_address, self._epoch = holder, address, int(epoch)
        self._seen_at = self._clock()
        self._seen_lease_age, self._seen_expires_in = float(lease_age), float(expires_in)

    async def _upsert_member(self, conn: psycopg.AsyncConnection[Any], role: str) -> None:
        await self._bounded(
            conn.execute(
                UPSERT_MEMBER,
                {
                    "holder": self.holder,
                    "address": self.address,
                    "role": role,
                    "epoch": self._epoch,
                },
            ),
            self.timeout_seconds,
        )

    async def _bounded(self, operation: Awaitable[T], timeout: float) -> T:
        """``operation`` within ``timeout`` seconds, else TimeoutError. On a timeout or a
        cancellation this instance steps down *before* the operation is cancelled:
        psycopg may spend seconds cancelling a query on a dead connection."""
        task = asyncio.ensure_future(operation)
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout))
        except BaseException:
            self._step_down("stopped during a database call")
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        if not done:
            if self._leader:
                self.renew_failures += 1
            self._step_down(f"database call outlasted {timeout:.2f} s")
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise TimeoutError(f"database call outlasted {timeout:.2f} s")
        return task.result()

    # -- role changes -----------------------------------------------------------------

    def _become_leader(self, epoch: int, start: float) -> None:
        self._leader = True
        self._epoch = epoch
        self._renewed_at = start
        self._deadline = start + self._local_lease
        self._seen_holder, self._seen_address = self.holder, self.address
        self._demoted.clear()
        self._elected.set()
        log.info(
            "leader election: %s at %s elected, epoch %d (%s)",
            self.holder,
            self.address,
            epoch,
            self._db,
        )
        self._notify(True, epoch)

    def _step_down(self, reason: str) -> None:
        if not self._leader:
            return
        self._leader = False
        self.step_downs += 1
        self._seen_holder = self._seen_address = None
        self._elected.clear()
        self._demoted.set()
        log.warning(
            "leader election: %s at %s steps down from epoch %d: %s",
            self.holder,
            self.address,
            self._epoch,
            reason,
        )
        self._notify(False, self._epoch)

    def _notify(self, leader: bool, epoch: int) -> None:
        for callback in list(self._callbacks):
            try:
                callback(leader, epoch)
            except Exception:
                log.exception("leader election: %s: on_change callback failed", self.holder)
