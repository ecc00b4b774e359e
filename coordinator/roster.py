"""The coordinators that share this cluster's state, as ``hive status`` shows them
(issue 18, item 4).

With a PostgreSQL store every coordinator writes its row in ``coordinator_members``
about every renew, and the lease names the leader (``coordinator.leader.members``). The
leader's ``GetClusterStatus`` lists them from there; standbys answer that call
UNAVAILABLE (``coordinator.ha.LeaderGate``), so clients only ever see the leader's view.
With SQLite the coordinator is the only one and lists itself, epoch 0.

The status call must not wait on a slow store: one read at a time, cut at ``timeout``,
and its answer (an empty list when the read failed, with a log line) is kept for
``ttl`` seconds, so a burst of status calls costs one query and PostgreSQL being slow
costs each caller at most ``timeout`` once a ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg

from coordinator.leader import Member, display_url, members

log = logging.getLogger("hive.coordinator.roster")

# A coordinator stopped by SIGKILL (or cut off from the store) keeps its row; one not
# seen for this long is forgotten. A graceful stop deletes its row at once.
FORGET_AFTER_SECONDS = 3600.0


@dataclass(frozen=True)
class CoordinatorView:
    """One coordinator, as ``GetClusterStatus`` reports it."""

    address: str
    role: str  # "leader", "standby", or "gone" (no row written for a lease)
    epoch: int  # held (leader) or last seen; 0 with SQLite
    lease_age: float  # the leader's, since its last renew; 0.0 for the others
    seen_age: float  # since it last wrote its row


def only_coordinator(address: str) -> list[CoordinatorView]:
    """A SQLite coordinator's roster: itself, leading, epoch 0."""
    return [CoordinatorView(address, "leader", 0, 0.0, 0.0)]


def roster(
    rows: Sequence[Member], *, stale_after: float, forget_after: float = FORGET_AFTER_SECONDS
) -> list[CoordinatorView]:
    """One line per address, the leader first, then by address.

    A restarted coordinator joins under a new holder at the same address, so an address
    keeps its best row: the lease holder's, else the most recently seen. A non-leader
    not seen for ``stale_after`` seconds (a lease: live ones write about every renew) is
    "gone"; one not seen for ``forget_after`` is left out.
    """
    best: dict[str, Member] = {}
    for row in rows:
        kept = best.get(row.address)
        if kept is None or (row.role == "leader", -row.seen_age) > (
            kept.role == "leader",
            -kept.seen_age,
        ):
            best[row.address] = row
    views = []
    for row in best.values():
        leads = row.role == "leader"
        if not leads and row.seen_age > forget_after:
            continue
        views.append(
            CoordinatorView(
                address=row.address,
                role=row.role if leads or row.seen_age <= stale_after else "gone",
                epoch=row.epoch,
                lease_age=max(0.0, row.lease_age or 0.0) if leads else 0.0,
                seen_age=row.seen_age,
            )
        )
    return sorted(views, key=lambda v: (v.role != "leader", v.address))


Fetch = Callable[[str], Awaitable[list[Member]]]


class Roster:
    """The coordinators for ``GetClusterStatus``: ``await roster.current()``.

    ``url`` None: SQLite, the only coordinator is this one at ``address()`` (known once
    the server is bound, hence a callable). Otherwise the members read from ``url``,
    cached ``ttl`` seconds on ``clock``; a read that fails or outlasts ``timeout`` gives
    [] (logged) for that ``ttl``. ``stale_after`` is the lease (see ``roster``).
    """

    def __init__(
        self,
        url: str | None,
        address: Callable[[], str],
        clock: Callable[[], float],
        *,
        stale_after: float,
        ttl: float = 1.0,
        timeout: float = 1.0,
        fetch: Fetch | None = None,
    ) -> None:
        self.url = url
        self.address = address
        self.clock = clock
        self.stale_after = stale_after
        self.ttl = ttl
        self.timeout = timeout
        self._fetch: Fetch = fetch or (lambda u: members(u, timeout=timeout))
        self._cached: list[CoordinatorView] = []
        self._until = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> list[CoordinatorView]:
        if self.url is None:
            return only_coordinator(self.address())
        async with self._lock:
            if self.clock() < self._until:
                return self._cached
            self._cached = await self._read(self.url)
            self._until = self.clock() + self.ttl
            return self._cached

    async def _read(self, url: str) -> list[CoordinatorView]:
        try:
            async with asyncio.timeout(self.timeout):
                rows = await self._fetch(url)
        except (TimeoutError, psycopg.Error, OSError) as error:
            log.warning(
                "coordinator %s: could not list the coordinators from %s within %.1f s (%s); "
                "the status goes without them",
                self.address(),
                display_url(url),
                self.timeout,
                str(error).strip() or type(error).__name__,
            )
            return []
        return roster(rows, stale_after=self.stale_after)
