"""Reaching the leader among several coordinators, for every client process: agents, the
gateway, ``hive mcp`` and the ``hive`` commands.

A coordinator target is a comma-separated list of ``host:port`` entries
(``a:50051,b:50051,c:50051``); a host may be a DNS name with several addresses (Docker
Swarm's ``tasks.coordinator``), resolved again at the start of every round so a replica
rescheduled onto a new address is found. One coordinator is the leader; a standby answers
every client RPC with UNAVAILABLE and the leader's client address in the trailing metadata
``hive-leader`` (``LEADER_TRAILER``). ``CoordinatorChannel`` keeps one channel to the
coordinator it believes leads and moves when told otherwise; ``client_channel`` is the
``hive`` commands' door to it, with TLS and token from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from hive import tls
from hive.tls import Security

log = logging.getLogger("hive.coordinators")

# The trailing metadata by which a standby names the leader's client address (host:port).
# Present with an empty value: "I am not the leader and know none" (try the next one).
LEADER_TRAILER = "hive-leader"
# Trailing metadata a coordinator puts on every Generate and Chat status it ends itself:
# an UNAVAILABLE without it came from a coordinator that went away (killed, cut off,
# shutting down), not from its own refusal, and a whole answer may be asked again.
COORDINATOR_TRAILER = "hive-coordinator"
# How a standby's UNAVAILABLE begins (coordinator/ha.py): without a ``hive-leader`` (no
# leader elected yet) it still means "try another coordinator", not the leader's refusal.
STANDBY_DETAILS = "this coordinator is a standby"
ENV_COORDINATOR = "HIVE_COORDINATOR"
DEFAULT_TARGET = "127.0.0.1:50051"

# Redirects followed in a row before a redirect counts as a miss: two standbys naming each
# other (each with a stale idea of the leader, during an election) cannot make a client spin.
MAX_HOPS = 2
# How long a call is retried on other coordinators when the caller set no shorter deadline:
# longer than an election (the lease expires in a few seconds), short enough that a client
# of a cluster that is down hears it.
PATIENCE_SECONDS = 10.0
BACKOFF_INITIAL_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 2.0
# While a standby answers but no leader does (a failover under way: the lease of a dead
# leader running out), a round is tried again at most this long after the last, so the
# client reaches the new leader within this of its election instead of at the end of a
# grown backoff. A standby's refusal costs it next to nothing.
FAILOVER_POLL_SECONDS = 0.25
# A channel left behind keeps its calls (a stream on a coordinator that still serves it)
# up to this long before they are cancelled.
RETIRE_GRACE_SECONDS = 3600.0

Request = TypeVar("Request")
Response = TypeVar("Response")


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``host:port`` of a coordinator target; ``host`` is a name or an IP literal."""

    host: str
    port: int

    def __str__(self) -> str:
        return _join(self.host, self.port)


def parse_target(text: str) -> tuple[Entry, ...]:
    """The entries of ``a:50051,b:50051`` (IPv6 as ``[::1]:50051``); ValueError names the
    entry at fault and why."""
    if not text.strip():
        raise ValueError("no coordinator given (expected host:port[,host:port...])")
    entries = []
    for position, raw in enumerate(text.split(","), start=1):
        item = raw.strip()
        where = f"coordinator {position} of {text!r}"
        if not item:
            raise ValueError(f"{where} is empty (expected host:port[,host:port...])")
        entries.append(parse_entry(item, where))
    return tuple(entries)


def parse_entry(item: str, where: str = "coordinator") -> Entry:
    host, sep, port_text = item.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{where}: {item!r} has no port (expected host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{where}: {item!r}: [{host}] is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{where}: {item!r}: write an IPv6 address in brackets, [addr]:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{where}: {item!r}: port {port_text!r} is not a number in 1-65535")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"{where}: {item!r}: {host!r} is not a host name or address")
    return Entry(host, int(port_text))


def validate(text: str) -> str:
    """``text`` if it is a valid target (for argparse's ``type=``), else ValueError."""
    parse_target(text)
    return text


def default_target() -> str:
    """``HIVE_COORDINATOR`` (a list too) or 127.0.0.1:50051."""
    return os.environ.get(ENV_COORDINATOR) or DEFAULT_TARGET


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--coordinator`` for a client command: a validated target, ``HIVE_COORDINATOR`` by
    default (argparse checks a default as it checks the flag, so a bad variable is named)."""
    parser.add_argument(
        "--coordinator",
        default=default_target(),
        type=_argument,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="the coordinators (any of them: standbys send the client to the leader); "
        "default $HIVE_COORDINATOR or 127.0.0.1:50051",
    )


def _argument(text: str) -> str:
    try:
        return validate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    """Every A/AAAA address of ``host`` as ``host:port`` strings, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = _join(str(sockaddr[0]), port)
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve(entries: Sequence[Entry], resolver: Resolver = getaddrinfo_resolver) -> list[str]:
    """The addresses of every entry (IP literals as they are, names through ``resolver``),
    without repeats. A name that does not resolve is skipped (a Swarm ``tasks.`` name has
    no records while no replica runs); OSError when no entry gives an address."""
    addresses: list[str] = []
    failures: list[str] = []
    for entry in entries:
        if _is_ip(entry.host):
            found = [str(entry)]
        else:
            try:
                found = await resolver(entry.host, entry.port)
            except OSError as exc:
                failures.append(f"{entry.host}: {exc}")
                continue
        addresses.extend(a for a in found if a not in addresses)
    if not addresses:
        raise OSError(f"no coordinator address: {'; '.join(failures) or 'nothing resolved'}")
    return addresses


def is_standby(err: BaseException) -> bool:
    """Whether ``err`` is a standby's refusal (it names a leader, or says it knows none)."""
    if not isinstance(err, grpc.aio.AioRpcError) or err.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    if any(key == LEADER_TRAILER for key, _ in err.trailing_metadata() or ()):
        return True
    return (err.details() or "").startswith(STANDBY_DETAILS)


def leader_named(err: BaseException, channel: grpc.aio.Channel | None = None) -> str | None:
    """Where an error on ``channel`` says to go: the leader's address from a standby's
    UNAVAILABLE, "" for "another coordinator" (a standby that knows no leader, or no
    coordinator answered: refused, reset, shut down), None for an error that is the
    caller's (the leader's own refusal, a bad request, a deadline)."""
    if not isinstance(err, grpc.aio.AioRpcError) or err.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    for key, value in err.trailing_metadata() or ():
        if key == LEADER_TRAILER:
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            try:
                return str(parse_entry(text.strip(), LEADER_TRAILER)) if text.strip() else ""
            except ValueError:
                return ""
    if (err.details() or "").startswith(STANDBY_DETAILS):
        return ""
    # The leader refuses with UNAVAILABLE too (no capacity, a full state disk): retrying
    # that elsewhere would only come back to it. It answered over a connection that is
    # still up; when no coordinator answered (refused, reset, going away) the channel is
    # not READY.
    if channel is not None and channel.get_state() == grpc.ChannelConnectivity.READY:
        return None
    return ""


def unavailable(details: str) -> grpc.aio.AioRpcError:
    """An UNAVAILABLE as gRPC would raise it, for failures before any call was made."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details
    )


def backoff_delay(rounds: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with jitter, a random point in the upper half of the step, so
    many clients of a coordinator that went away do not come back in one burst."""
    step = min(maximum, initial * (2 ** min(max(rounds - 1, 0), 30)))
    return float(step * rng.uniform(0.5, 1.0))


class CoordinatorChannel(grpc.aio.Channel):
    """A ``grpc.aio.Channel`` to whichever coordinator leads, for generated stubs as they are.

    Algorithm. The channel dials the first address of the target (resolved). A call that
    fails with UNAVAILABLE carrying ``hive-leader: ADDR`` moves the channel to ADDR and is
    made again at once (one more hop; ``MAX_HOPS`` in a row at most, then it counts as a
    miss). An UNAVAILABLE that the transport made (nothing listening, connection reset,
    name unresolvable) or a standby that knows no leader (``hive-leader`` empty) is a miss:
    the channel moves to the next address, round-robin; the target is resolved again at the
    start of each round. After a whole round of misses the call waits, with exponential
    backoff and jitter (``backoff_initial`` doubling to ``backoff_max``), before the next.
    Any success resets the count. Every move opens a fresh channel, so the new address is
    dialled at once instead of after the old channel's reconnect backoff; the old channel
    is closed once its calls end.

    Which calls are made again: a unary call, until it succeeds or fails with an error of
    the caller's; a server-streaming call only while it has received no message (a stream
    that had started is never retried: the caller sees the error). Client- and
    bidirectional streams are not retried (their requests cannot be replayed); they go to
    the current coordinator, and their owner calls ``move`` (the agent's session does).

    How it fails. Every coordinator down: a call retries with backoff until its deadline
    (``timeout``) or ``patience`` seconds, whichever comes first, then raises the last
    error (UNAVAILABLE). A coordinator that accepts connections but never answers (a
    partition) holds each attempt up to the call's deadline: give calls deadlines. The
    leader's own UNAVAILABLE (no capacity, a full disk) is the caller's, as from one
    coordinator. A call that failed after the leader took it but before it answered (the
    leader died) is made again on the new one: unary calls that change state carry request
    ids (SubmitWorkflow) so a repeat finds the first.
    """

    def __init__(
        self,
        target: str,
        *,
        security: Security | None = None,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
        patience: float = PATIENCE_SECONDS,
        backoff_initial: float = BACKOFF_INITIAL_SECONDS,
        backoff_max: float = BACKOFF_MAX_SECONDS,
        resolver: Resolver = getaddrinfo_resolver,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.entries = parse_target(target)
        self.patience = patience
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._security = security
        self._options = list(options)
        self._interceptors = list(interceptors) if interceptors else None
        self._resolver = resolver
        self._rng = rng or random.Random()
        # This round's addresses and the position in it of the address last tried from it.
        self._addresses: list[str] = []
        self._index = -1
        self._address: str | None = None
        self._channel: grpc.aio.Channel | None = None
        # Bumped at every move: a failure seen on an older channel moves nothing again.
        self.generation = 0
        self._hops = 0
        self._misses = 0
        self.rounds = 0
        # Whether a standby answered in this round, and in the last whole round.
        self._standby_in_round = False
        self.failing_over = False
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"CoordinatorChannel({self.target!r}, at {self._address})"

    @property
    def address(self) -> str | None:
        """The coordinator the channel talks to now (None before the first call)."""
        return self._address

    # --- where to go ----------------------------------------------------------------

    async def current(self) -> tuple[grpc.aio.Channel, int]:
        """The channel to the current coordinator and its generation, dialling the first
        address if there is none yet; UNAVAILABLE (AioRpcError) if no name resolves."""
        async with self._lock:
            if self._channel is None:
                await self._next_address()
            assert self._channel is not None
            return self._channel, self.generation

    async def move(self, error: BaseException | None, generation: int | None = None) -> bool:
        """Leave the current coordinator after ``error`` (None: a failure with no error,
        such as a silent coordinator): for the leader it names, else the next address.
        Ignored when ``generation`` is given and the channel already moved since. Always a
        fresh channel. True when a whole round has failed since the last success: the
        caller backs off before the next attempt."""
        async with self._lock:
            if generation is not None and generation != self.generation:
                return False
            leader = leader_named(error) if error is not None else ""
            if error is not None and is_standby(error):
                self._standby_in_round = True
            if leader and self._hops < MAX_HOPS:
                self._hops += 1
                log.info("coordinator %s is a standby; the leader is %s", self._address, leader)
                self._open(leader)
                return False
            self._hops = 0
            self._misses += 1
            round_done = self._misses >= max(len(self._addresses), 1)
            if round_done:
                self._misses = 0
                self.rounds += 1
                self.failing_over, self._standby_in_round = self._standby_in_round, False
            try:
                await self._next_address()
            except grpc.aio.AioRpcError:
                return True  # nothing resolves: count it a round, and keep the old channel
            return round_done

    def succeeded(self) -> None:
        """A call was answered: the coordinator leads; forget past misses."""
        self._hops = self._misses = self.rounds = 0
        self.failing_over = self._standby_in_round = False

    def backoff(self, delay: float) -> float:
        """``delay``, the caller's backoff after a failed round, shortened to at most
        FAILOVER_POLL_SECONDS (with jitter) while a failover is under way."""
        if not self.failing_over:
            return delay
        return min(delay, FAILOVER_POLL_SECONDS * self._rng.uniform(0.5, 1.0))

    async def _next_address(self) -> None:
        self._index = self._index + 1 if self._index + 1 < len(self._addresses) else 0
        if self._index == 0:  # a new round: the replicas may have moved
            try:
                self._addresses = await resolve(self.entries, self._resolver)
            except OSError as exc:
                self._index = -1
                raise unavailable(f"coordinator {self.target}: {exc}") from None
        self._open(self._addresses[self._index])

    def _open(self, address: str) -> None:
        old, self._channel = (
            self._channel,
            tls.channel(
                address, self._security, options=self._options, interceptors=self._interceptors
            ),
        )
        self._address = address
        self.generation += 1
        if old is not None:
            task = asyncio.create_task(_retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    # --- calls ------------------------------------------------------------------------

    async def unary(
        self,
        call: Callable[[grpc.aio.Channel, float | None], Awaitable[Response]],
        timeout: float | None = None,
    ) -> Response:
        """``call(channel, timeout)`` on the leader, made again on another coordinator as
        the class docstring says; ``timeout`` bounds all attempts together."""
        budget = _Budget(self, timeout)
        while True:
            channel, generation = await budget.channel()
            try:
                reply = await call(channel, budget.remaining())
            except grpc.aio.AioRpcError as err:
                await budget.failed(err, generation)
                continue
            self.succeeded()
            return reply

    # --- grpc.aio.Channel -----------------------------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return _UnaryUnaryMulti(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryStreamMultiCallable[Any, Any]:
        return _UnaryStreamMulti(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.StreamUnaryMultiCallable[Any, Any]:
        return self._plain().stream_unary(method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
        return self._plain().stream_stream(method, request_serializer, response_deserializer)

    def _plain(self) -> grpc.aio.Channel:
        """The current channel, or one to the first entry as written (gRPC resolves it)."""
        if self._channel is None:
            self._open(str(self.entries[0]))
        assert self._channel is not None
        return self._channel

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._plain().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._plain().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await (await self.current())[0].channel_ready()

    async def close(self, grace: float | None = None) -> None:
        channel, self._channel = self._channel, None
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if channel is not None:
            await channel.close(grace)

    async def __aenter__(self) -> CoordinatorChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Budget:
    """One call's attempts: the caller's deadline (for each attempt's timeout) and the end of
    retrying (that deadline or ``patience`` from now, whichever is sooner)."""

    def __init__(self, owner: CoordinatorChannel, timeout: float | None) -> None:
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.deadline = None if timeout is None else now + timeout
        self.retry_until = now + (
            owner.patience if timeout is None else min(timeout, owner.patience)
        )
        self.attempt: grpc.aio.Channel | None = None

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.loop.time())

    async def channel(self) -> tuple[grpc.aio.Channel, int]:
        while True:
            try:
                self.attempt, generation = await self.owner.current()
                return self.attempt, generation
            except grpc.aio.AioRpcError as err:
                self.attempt = None
                await self.failed(err, None)

    async def failed(self, err: grpc.aio.AioRpcError, generation: int | None) -> None:
        """Move on after ``err`` and wait as the owner's backoff says, or raise ``err``
        when it is the caller's or retrying time is up."""
        if leader_named(err, self.attempt) is None:
            raise err
        if generation is None:  # nothing resolved: a round's worth of waiting
            self.owner.rounds += 1
            back_off = True
        else:
            back_off = await self.owner.move(err, generation)
        delay = (
            self.owner.backoff(
                backoff_delay(
                    self.owner.rounds,
                    self.owner.backoff_initial,
                    self.owner.backoff_max,
                    self.owner._rng,
                )
            )
            if back_off
            else 0.0
        )
        if self.loop.time() + delay >= self.retry_until:
            raise err
        if delay:
            await asyncio.sleep(delay)


class _Multi:
    def __init__(
        self,
        owner: CoordinatorChannel,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self.owner = owner
        self.method = method
        self.serializer = serializer
        self.deserializer = deserializer

    def _attempt(
        self, kind: str, request: Any, options: dict[str, Any]
    ) -> Callable[[grpc.aio.Channel, float | None], Any]:
        """One attempt of the call on a channel, with the time left: ``kind`` is the
        channel's multi-callable factory (``unary_unary``, ``unary_stream``)."""

        def attempt(channel: grpc.aio.Channel, left: float | None) -> Any:
            factory = getattr(channel, kind)
            return factory(self.method, self.serializer, self.deserializer)(
                request, timeout=left, **options
            )

        return attempt


class _UnaryUnaryMulti(_Multi, grpc.aio.UnaryUnaryMultiCallable[Any, Any]):
    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.aio.UnaryUnaryCall[Any, Any]:
        options = {
            "metadata": metadata,
            "credentials": credentials,
            "wait_for_ready": wait_for_ready,
            "compression": compression,
        }
        return _UnaryCall(self.owner, self._attempt("unary_unary", request, options), timeout)


class _UnaryStreamMulti(_Multi, grpc.aio.UnaryStreamMultiCallable[Any, Any]):
    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        options = {
            "metadata": metadata,
            "credentials": credentials,
            "wait_for_ready": wait_for_ready,
            "compression": compression,
        }
        return _StreamCall(self.owner, self._attempt("unary_stream", request, options), timeout)


class _FollowingCall(Generic[Request, Response]):
    """What every call that follows the leader shares: the attempt under way (``_call``),
    and the answers about it (code, metadata) from the last attempt."""

    def __init__(
        self,
        owner: CoordinatorChannel,
        attempt: Callable[[grpc.aio.Channel, float | None], Any],
        timeout: float | None,
    ) -> None:
        self._owner = owner
        self._attempt = attempt
        self._timeout = timeout
        self._call: Any = None
        self._cancelled = False
        self._callbacks: list[Any] = []

    def cancelled(self) -> bool:
        return self._cancelled or (self._call is not None and self._call.cancelled())

    def done(self) -> bool:
        return self._cancelled or (self._call is not None and self._call.done())

    def time_remaining(self) -> float | None:
        return None if self._call is None else self._call.time_remaining()

    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._call.cancel()) if self._call is not None else True

    def add_done_callback(self, callback: Any) -> None:
        self._callbacks.append(callback)
        if self._call is not None:
            self._call.add_done_callback(callback)

    def _started(self, call: Any) -> Any:
        self._call = call
        for callback in self._callbacks:
            call.add_done_callback(callback)
        return call

    async def _settled(self) -> Any:
        raise NotImplementedError

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return await (await self._settled()).initial_metadata()  # type: ignore[no-any-return]

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        return await (await self._settled()).trailing_metadata()  # type: ignore[no-any-return]

    async def code(self) -> grpc.StatusCode:
        return await (await self._settled()).code()  # type: ignore[no-any-return]

    async def details(self) -> str:
        return await (await self._settled()).details()  # type: ignore[no-any-return]


class _UnaryCall(_FollowingCall[Any, Any], grpc.aio.UnaryUnaryCall[Any, Any]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._result: asyncio.Future[Any] | None = None

    def _future(self) -> asyncio.Future[Any]:
        if self._result is None:
            self._result = asyncio.ensure_future(self._run())
        return self._result

    async def _run(self) -> Any:
        async def one(channel: grpc.aio.Channel, left: float | None) -> Any:
            if self._cancelled:
                raise asyncio.CancelledError
            return await self._started(self._attempt(channel, left))

        return await self._owner.unary(one, self._timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._future().__await__()

    def cancel(self) -> bool:
        if self._result is not None:
            self._result.cancel()
        return super().cancel()

    async def _settled(self) -> Any:
        await asyncio.gather(self._future(), return_exceptions=True)
        return self._call

    async def wait_for_connection(self) -> None:
        await self._future()


class _StreamCall(_FollowingCall[Any, Any], grpc.aio.UnaryStreamCall[Any, Any]):
    """A server stream made again on another coordinator until its first message."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._received = False
        self._budget: _Budget | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    async def _attempt_call(self) -> Any:
        if self._cancelled:
            raise asyncio.CancelledError
        if self._call is None:
            if self._budget is None:
                self._budget = _Budget(self._owner, self._timeout)
            channel, self._generation = await self._budget.channel()
            self._started(self._attempt(channel, self._budget.remaining()))
        return self._call

    async def _until_started(self, step: Callable[[Any], Awaitable[Any]]) -> Any:
        """``step(call)`` on the attempt under way; while nothing was received, an error
        that says "another coordinator" moves on and makes the call again."""
        async with self._lock:
            while True:
                call = await self._attempt_call()
                try:
                    return await step(call)
                except grpc.aio.AioRpcError as err:
                    if self._received:
                        raise
                    assert self._budget is not None
                    await self._budget.failed(err, self._generation)
                    self._call = None

    async def read(self) -> Any:
        if self._received:
            return await self._call.read()
        message = await self._until_started(lambda call: call.read())
        if message is not grpc.aio.EOF:
            self._received = True
            self._owner.succeeded()
        return message

    async def wait_for_connection(self) -> None:
        if not self._received:
            await self._until_started(lambda call: call.wait_for_connection())

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        while (message := await self.read()) is not grpc.aio.EOF:
            yield message

    async def _settled(self) -> Any:
        if self._call is None:
            await self._attempt_call()
        return self._call


async def _retire(channel: grpc.aio.Channel) -> None:
    """Close ``channel`` once its calls end; at once if cancelled (the owner closes)."""
    try:
        await channel.close(RETIRE_GRACE_SECONDS)
    except asyncio.CancelledError:
        await channel.close(None)
        raise


def client_channel(target: str, **kwargs: Any) -> CoordinatorChannel:
    """The ``hive`` commands' channel to the leader of ``target``: TLS and token from the
    environment (as ``hive.tls.client_channel``)."""
    token = os.environ.get(tls.ENV_TOKEN)
    interceptors = tls.token_interceptors(lambda: token) if token else None
    return CoordinatorChannel(
        target, security=tls.security_from_env(), interceptors=interceptors, **kwargs
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
