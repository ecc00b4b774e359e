"""Several coordinators, one leader: what a standby answers.

With a PostgreSQL store several coordinators share one state; the one holding the lease
(``coordinator.leader.LeaderElection``) is the leader and serves everything. The others
are standbys. A standby answers health and reflection (probes and grpcurl work on it) and
every other call — clients' and agents' sessions alike — with UNAVAILABLE and the leader's
client address in the ``hive-leader`` trailing metadata, so a client that follows it
(``hive.coordinators``) reaches the leader in one more hop. A standby that does not know
the leader yet (an election in progress) says so with an empty ``hive-leader``: the client
tries the next coordinator it knows.

``LeaderGate`` is the check; the coordinator chains it before its access policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from hive.coordinators import LEADER_TRAILER, STANDBY_DETAILS

# Served by every coordinator, leader or not.
OPEN_ON_STANDBY = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Check = Callable[[str, grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


class Leadership(Protocol):
    """What the gate needs to know (LeaderElection provides it)."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader_address(self) -> str | None: ...


def standby_message(leader: str | None) -> str:
    if leader:
        return f"{STANDBY_DETAILS}; the leader is {leader}"
    return f"{STANDBY_DETAILS} and no leader is elected yet; try another"


class LeaderGate:
    """The per-method check of a coordinator that may be a standby: leader → ``then``
    (the access policy); standby → UNAVAILABLE with the leader's address."""

    def __init__(self, leadership: Leadership, then: Check | None = None) -> None:
        self.leadership = leadership
        self.then = then

    async def __call__(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if not self.leadership.is_leader and not method.startswith(OPEN_ON_STANDBY):
            leader = self.leadership.leader_address
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                standby_message(leader),
                # An empty value: "not the leader, and I know none" (try the next one).
                trailing_metadata=((LEADER_TRAILER, leader or ""),),
            )
        if self.then is not None:
            await self.then(method, context)
