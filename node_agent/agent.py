"""The node agent: holds the session with the coordinator and serves RunTask.

One agent runs on every GPU host. It dials the coordinator and keeps one
bidirectional stream open: Register first, then a Heartbeat with telemetry
every interval, while it answers the coordinator's control messages (welcome,
drain, warm a model). When the coordinator goes away it reconnects forever,
with exponential backoff and jitter, and registers again under the same name.
With several coordinators (``coordinator: a:50051,b:50051``) the session goes to the
leader: a standby's refusal names it and the agent registers there at once, reporting
the tasks it is running; otherwise it tries the next coordinator (``hive.coordinators``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hive import __version__, tls
from hive.config import AgentConfig, ConfigError, EndpointSpec, read_token_file
from hive.coordinators import CoordinatorChannel, parse_target
from hive.metrics import MetricsServer
from hive.sdnotify import Notifier
from hive.serving import SERVICE_NAMES, RunningServer, channel_options, host_port, start_server
from hive.tls import Security
from hive.v1 import agent_session_pb2, agent_session_pb2_grpc, common_pb2, node_agent_pb2_grpc
from node_agent.attempts import Attempts
from node_agent.endpoints import LocalEndpoint, activity_from_endpoints
from node_agent.metrics import AgentMetrics
from node_agent.ollama import OllamaClient, OllamaError
from node_agent.service import NodeAgentServicer
from node_agent.telemetry import GpuActivity, TelemetryProvider, open_provider

log = logging.getLogger("hive.agent")

# Every this many heartbeats the agent re-reads each endpoint's model list.
FULL_REFRESH_EVERY = 30
_VENDOR = {
    "nvidia": common_pb2.GPU_VENDOR_NVIDIA,
    "amd": common_pb2.GPU_VENDOR_AMD,
}


def backoff_delay(failures: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: a random point in the upper half of the step.

    The jitter spreads the reconnects of many agents after a coordinator restart
    so they do not arrive in one burst.
    """
    step = min(maximum, initial * (2 ** min(failures, 30)))
    return float(step * rng.uniform(0.5, 1.0))


class CoordinatorSilent(Exception):
    """The coordinator stopped answering on the session's connection (a partition)."""


class Agent:
    """One node's agent. ``security`` None: plaintext (insecure, chosen by the caller);
    with it, the session and RunTask are mutual TLS, and RunTask serves only the
    coordinator's certificate."""

    def __init__(
        self,
        config: AgentConfig,
        provider: TelemetryProvider | None = None,
        *,
        security: Security | None = None,
    ) -> None:
        self.config = config
        try:
            parse_target(config.coordinator)
        except ValueError as exc:
            raise ConfigError(config.source, "coordinator", str(exc)) from None
        self.security = security
        self.name = config.node.name
        self.endpoints: dict[str, LocalEndpoint] = {
            e.id: LocalEndpoint(
                e,
                OllamaClient(
                    e.url or "http://127.0.0.1:11434",
                    token=_token(config.source, e),
                    verify=_verify(config.source, e),
                ),
            )
            for e in config.node.endpoints
        }
        self._provider = provider
        # The attempts this agent runs (and orphans for the next leader to adopt).
        self.attempts = Attempts(self.name, config.orphan_seconds, lambda: self._session_over)
        # Set when the session under way ends; None between sessions.
        self._session_over: asyncio.Event | None = None
        self.draining = False
        self.session_id = ""
        self.sessions = 0
        self.connected = asyncio.Event()
        self.address = ""
        self._server: RunningServer | None = None
        # The coordinators, and the channel of the session under way (to the leader).
        self.coordinators: CoordinatorChannel | None = None
        self._channel: grpc.aio.Channel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rng = random.Random()
        self._beats = 0
        # Set to send the next heartbeat now (models_changed), not after the interval.
        self._beat_now = asyncio.Event()
        # The telemetry of the last heartbeat, for /metrics.
        self.last_telemetry: common_pb2.NodeTelemetry | None = None
        self.metrics = AgentMetrics(self)
        self.metrics_server: MetricsServer | None = None

    @property
    def started(self) -> bool:
        return self._provider is not None

    @property
    def provider(self) -> TelemetryProvider:
        assert self._provider is not None, "agent not started"
        return self._provider

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> int:
        """Open telemetry, discover endpoints, serve RunTask, start the session; return the port."""
        if self._provider is None:
            self._provider = open_provider(
                self.config.telemetry,
                simulated_gpus=self.config.node.gpus,
                activity=self._activity,
                seed=sum(map(ord, self.name)),
                logger=log,
            )
        await asyncio.gather(*(e.refresh(full=True) for e in self.endpoints.values()))
        self._server = await start_server(
            self.config.listen,
            [
                lambda s: node_agent_pb2_grpc.add_NodeAgentServiceServicer_to_server(
                    NodeAgentServicer(self), s
                )
            ],
            [SERVICE_NAMES["NodeAgentService"]],
            security=self.security,
            check=self._only_coordinator if self.security is not None else None,
        )
        self.address = self.config.advertise or _advertised(self.config.listen, self._server.port)
        self.coordinators = self._new_coordinators()
        self._spawn(self._session_loop(), "session")
        self._spawn(self.attempts.reaper(), "reaper")
        log.info(
            "agent %s serving on %s (telemetry %s, %d endpoints), coordinator %s",
            self.name,
            self.address,
            self.provider.name,
            len(self.endpoints),
            self.config.coordinator,
        )
        return self._server.port

    def _new_coordinators(self) -> CoordinatorChannel:
        """The coordinators, each channel to one with its own reconnect backoff never
        above the agent's: gRPC's default grows to 120 s, and added to the agent's backoff
        it kept agents away for up to 15 s after a coordinator came back."""
        initial_ms = max(1, int(self.config.reconnect_initial_seconds * 1000))
        max_ms = max(initial_ms, int(self.config.reconnect_max_seconds * 1000))
        # gRPC gives a connection attempt at least this long (its default is 20 s): an
        # attempt begun during a partition then retries soon after the link heals.
        connect_ms = max(1000, initial_ms)
        return CoordinatorChannel(
            self.config.coordinator,
            security=self.security,
            options=[
                *channel_options(16 * 1024 * 1024),
                ("grpc.initial_reconnect_backoff_ms", initial_ms),
                ("grpc.min_reconnect_backoff_ms", connect_ms),
                ("grpc.max_reconnect_backoff_ms", max_ms),
            ],
        )

    async def _only_coordinator(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """RunTask and GetNode answer the coordinator only: any other holder of a cluster
        certificate (another node, a client) is refused. FollowTask answers any holder of
        one who also holds the attempt's follow token (a gateway, checked there)."""
        if not method.startswith("/hive.v1.NodeAgentService/") or self.security is None:
            return
        if method == "/hive.v1.NodeAgentService/FollowTask":
            return
        caller = tls.peer_name(context)
        if caller != self.security.coordinator_name:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {self.name} takes tasks from {self.security.coordinator_name} only, "
                f"not {caller}",
            )

    async def start_metrics(self, address: str) -> int:
        """Serve ``/metrics`` on ``address`` (port 0: any free port); return the port."""
        self.metrics_server = MetricsServer(self.metrics.registry, address)
        port = await self.metrics_server.start()
        log.info("agent %s metrics on %s", self.name, self.metrics_server.url)
        return port

    async def stop(self, grace: float = 1.0) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(grace)
        await self.attempts.close()
        if self.coordinators is not None:
            await self.coordinators.close()
        for endpoint in self.endpoints.values():
            await endpoint.client.close()
        if self._provider is not None:
            self._provider.close()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what the node is --------------------------------------------------------

    def node_info(self) -> common_pb2.NodeInfo:
        node = self.config.node
        provider_gpus = self.provider.gpus()
        if provider_gpus:
            gpus = [
                common_pb2.Gpu(
                    index=g.index,
                    uuid=g.uuid,
                    name=g.name,
                    vendor=_VENDOR.get(g.vendor, common_pb2.GPU_VENDOR_OTHER),
                    memory_total_bytes=g.memory_total_bytes,
                )
                for g in provider_gpus
            ]
        else:  # no telemetry: describe the GPUs the configuration declares
            gpus = [
                common_pb2.Gpu(
                    index=i,
                    name=g.name,
                    vendor=_VENDOR.get(g.vendor, common_pb2.GPU_VENDOR_OTHER),
                    memory_total_bytes=g.memory_bytes,
                )
                for i, g in enumerate(node.gpus)
            ]
        return common_pb2.NodeInfo(
            name=self.name,
            labels=dict(node.labels),
            specializations=node.specializations,
            features=node.features,
            gpus=gpus,
            endpoints=[e.to_proto() for e in self.endpoints.values()],
            agent_address=self.address,
            agent_version=__version__,
            telemetry_provider=self.provider.name,
        )

    def _activity(self) -> list[GpuActivity]:
        return activity_from_endpoints(list(self.endpoints.values()), self.config.node.gpus)

    async def telemetry(self) -> common_pb2.NodeTelemetry:
        full = self._beats % FULL_REFRESH_EVERY == 0
        await asyncio.gather(*(e.refresh(full=full) for e in self.endpoints.values()))
        if self.provider.name in ("simulated", "none"):
            samples = self.provider.sample()
        else:  # NVML and AMD SMI calls block; keep them off the event loop
            samples = await asyncio.to_thread(self.provider.sample)
        telemetry = common_pb2.NodeTelemetry(
            gpus=[
                common_pb2.GpuTelemetry(
                    index=s.index,
                    utilization_percent=s.utilization_percent,
                    memory_used_bytes=s.memory_used_bytes,
                    memory_total_bytes=s.memory_total_bytes,
                    temperature_celsius=s.temperature_celsius,
                    power_watts=s.power_watts,
                    power_limit_watts=s.power_limit_watts,
                    throttled=s.throttled,
                )
                for s in samples
            ],
            endpoints=[e.telemetry() for e in self.endpoints.values()],
        )
        telemetry.sampled_at.GetCurrentTime()
        self.last_telemetry = telemetry
        return telemetry

    # --- the session -------------------------------------------------------------

    @property
    def coordinator_address(self) -> str:
        """The coordinator the session is with (or tries), else the configured target."""
        address = self.coordinators.address if self.coordinators is not None else None
        return address or self.config.coordinator

    async def _session_loop(self) -> None:
        assert self.coordinators is not None
        failures = 0
        while True:
            error: BaseException | None = None
            sessions = self.sessions
            try:
                welcomed = await self._session()
            except grpc.aio.AioRpcError as err:
                welcomed, error = False, err
                level = (
                    logging.ERROR
                    if err.code()
                    in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.ALREADY_EXISTS,
                        grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.UNAUTHENTICATED,
                    )
                    else logging.WARNING
                )
                log.log(
                    level,
                    "agent %s: session failed: %s %s",
                    self.name,
                    err.code().name,
                    err.details(),
                )
            except CoordinatorSilent as exc:
                welcomed = False
                log.warning("agent %s: session %s ended: %s", self.name, self.session_id, exc)
            except Exception:
                # Whatever went wrong, the agent keeps trying: it must never die on its own.
                welcomed = False
                log.exception("agent %s: session failed unexpectedly", self.name)
            finally:
                self.connected.clear()
                self.metrics.connected.set(0)
            # A session that was welcomed (and ended, cleanly or broken: the leader
            # SIGKILLed) starts the backoff afresh: failures count only attempts since the
            # last welcome.
            if self.sessions > sessions:
                failures = 0
            # A fresh channel, to the leader a standby named or to the next coordinator,
            # dials at once when the agent's backoff says so, instead of waiting out the old
            # channel's own backoff (issue 17: 6.5-15.4 s after the coordinator listened
            # again, with reconnect_max_seconds 10). A redirect, or a miss before every
            # coordinator was tried, goes on at once: no backoff before the leader.
            if not welcomed:
                if await self.coordinators.move(error):
                    failures += 1
                else:
                    self.metrics.reconnects.inc()
                    log.info("agent %s: trying coordinator %s", self.name, self.coordinator_address)
                    continue
            self.metrics.reconnects.inc()
            delay = self.coordinators.backoff(
                backoff_delay(
                    failures,
                    self.config.reconnect_initial_seconds,
                    self.config.reconnect_max_seconds,
                    self._rng,
                )
            )
            log.info("agent %s: reconnecting in %.2fs", self.name, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One session: register, heartbeat, obey control messages; True if it was welcomed."""
        assert self.coordinators is not None
        self._channel, _ = await self.coordinators.current()
        stub = agent_session_pb2_grpc.AgentSessionServiceStub(self._channel)
        call = stub.Connect()
        writer = _SessionWriter(call)
        heartbeats: asyncio.Task[None] | None = None
        watchdog: asyncio.Task[None] | None = None
        try:
            node = self.node_info()
            announced = list(node.endpoints)
            await writer.write(
                agent_session_pb2.ConnectRequest(
                    register=agent_session_pb2.Register(
                        node=node,
                        running_task_ids=self.attempts.adoptable_ids(),
                        reconnects=self.sessions,
                    )
                )
            )
            first = await call.read()
            if (
                not isinstance(first, agent_session_pb2.ConnectResponse)
                or first.WhichOneof("message") != "welcome"
            ):
                log.warning(
                    "agent %s: coordinator closed the session before welcoming it", self.name
                )
                return False
            welcome = first.welcome
            self._session_over = asyncio.Event()
            self.attempts.abandon(list(welcome.abandoned_task_ids))
            self.coordinators.succeeded()
            self.sessions += 1
            self.session_id = welcome.session_id
            self.draining = welcome.draining
            interval = welcome.heartbeat_interval_seconds or self.config.heartbeat_interval_seconds
            log.info("agent %s: session %s open", self.name, self.session_id)
            self.connected.set()
            self.metrics.sessions.inc()
            self.metrics.connected.set(1)
            heartbeats = asyncio.create_task(self._heartbeats(writer, interval, announced))
            lost_after = welcome.lost_after_seconds or 6 * interval
            watchdog = asyncio.create_task(self._watch_coordinator(lost_after))
            while True:
                read = asyncio.ensure_future(call.read())
                await asyncio.wait({read, watchdog}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    watchdog.result()  # raises CoordinatorSilent
                message = read.result()
                if not isinstance(message, agent_session_pb2.ConnectResponse):
                    log.warning(
                        "agent %s: coordinator ended session %s", self.name, self.session_id
                    )
                    return True
                await self._handle(writer, message)
                if heartbeats.done():
                    heartbeats.result()  # surface a write failure
        finally:
            helpers = [task for task in (heartbeats, watchdog) if task is not None]
            for task in helpers:
                task.cancel()
            # gather, not a suppressed await: the helpers' endings are theirs, but a
            # cancellation of this session (the agent stopping) must not be swallowed here,
            # or the loop would open another session the agent never ends.
            await asyncio.gather(*helpers, return_exceptions=True)
            call.cancel()
            if self._session_over is not None:
                self._session_over.set()
                self._session_over = None

    async def _watch_coordinator(self, lost_after: float) -> None:
        """Raise CoordinatorSilent when the coordinator stops answering on this channel.

        The session stream carries little from the coordinator, and across a partition
        (no reset, packets dropped) TCP keeps a dead connection for many minutes and, once
        the link heals, resends on its own growing backoff: the node would come back long
        after the network did. A health check on the same connection every third of
        ``lost_after``, each allowed all of it, notices within 4/3 of ``lost_after`` (the
        coordinator has given the node up by then). Allowed less, a check queued behind a
        stream's output on a slow, lossy link (TCP resending what it dropped) timed out
        while the session was alive and carrying tokens, and broke it."""
        assert self._channel is not None
        stub = health_pb2_grpc.HealthStub(self._channel)
        period, allowed = lost_after / 3, lost_after
        while True:
            await asyncio.sleep(period)
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=allowed)
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise CoordinatorSilent(
                        f"coordinator silent: health check {err.code().name} "
                        f"(allowed {allowed:.1f}s)"
                    ) from None

    async def _heartbeats(
        self, writer: _SessionWriter, interval: float, announced: list[common_pb2.OllamaEndpoint]
    ) -> None:
        """Heartbeat every ``interval``; with the endpoints and their models whenever they
        differ from what the coordinator was last told (``announced``, from Register)."""
        while True:
            telemetry = await self.telemetry()
            # No await from here to reading the endpoints: a heartbeat numbered after a
            # change (models_changed) announces the models as they are since the change.
            self._beat_now.clear()
            self._beats += 1
            self.metrics.heartbeats.inc()
            beat = agent_session_pb2.Heartbeat(
                seq=self._beats, telemetry=telemetry, running_task_ids=self.attempts.running_ids()
            )
            now = [e.to_proto() for e in self.endpoints.values()]
            if now != announced:
                log.info("agent %s: endpoints' models changed; announcing them", self.name)
                beat.endpoints.extend(now)
                announced = now
            await writer.write(agent_session_pb2.ConnectRequest(heartbeat=beat))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), interval)

    def models_changed(self) -> int:
        """An endpoint's models were just read again (a pull or a removal through the
        agent): heartbeat now rather than after the interval. Returns the seq of the first
        heartbeat that announces them, which the session stream carries in order after
        every earlier one: once the coordinator has applied it (or a later one, or the
        Register of a later session, read after this), it routes by these models."""
        self._beat_now.set()
        return self._beats + 1

    async def _handle(
        self, writer: _SessionWriter, message: agent_session_pb2.ConnectResponse
    ) -> None:
        kind = message.WhichOneof("message")
        if kind == "drain":
            self.draining = message.drain.draining
            log.info("agent %s: draining=%s (%s)", self.name, self.draining, message.drain.reason)
        elif kind == "warm_model":
            self._spawn(self._warm(writer, message.warm_model), f"warm:{message.warm_model.model}")
        else:
            log.warning("agent %s: ignoring unexpected %s", self.name, kind)

    async def _warm(self, writer: _SessionWriter, warm: agent_session_pb2.WarmModel) -> None:
        endpoint = self.endpoints.get(warm.endpoint_id)
        ack = agent_session_pb2.ControlAck(request_id=warm.request_id, ok=True)
        if endpoint is None:
            ack.ok, ack.error = False, f"no endpoint {warm.endpoint_id!r}"
        else:
            try:
                await endpoint.client.load(warm.model, warm.keep_alive)
                done = "unloaded" if warm.keep_alive == "0" else "warmed"
                log.info("agent %s: %s %s on %s", self.name, done, warm.model, endpoint.id)
            except (OllamaError, OSError) as exc:
                ack.ok, ack.error = False, str(exc)
            except Exception as exc:  # anything: the coordinator may be awaiting this ack
                log.exception("agent %s: warm %s failed", self.name, warm.model)
                ack.ok, ack.error = False, f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await writer.write(agent_session_pb2.ConnectRequest(ack=ack))


class _SessionWriter:
    """One session stream's writes, one at a time: gRPC allows a single write in flight
    per stream (a second at once fails the call, GRPC_CALL_ERROR_TOO_MANY_OPERATIONS), and
    heartbeats and control acks (sent as each warm-up or unload finishes) share it."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._lock = asyncio.Lock()

    async def write(self, request: agent_session_pb2.ConnectRequest) -> None:
        async with self._lock:
            await self._call.write(request)


def _advertised(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    if host in ("0.0.0.0", "[::]", ""):
        host = socket.getfqdn()
    return host_port(f"{host}:0", port)


async def serve(config: AgentConfig, *, insecure: bool = False) -> None:
    """Run an agent until cancelled: the daemon behind `hive agent`.

    Serves ``/metrics`` unless ``metrics_listen`` is "off" and tells systemd it is ready
    once RunTask is served (the session with the coordinator is retried forever, so a
    coordinator that is down does not hold the agent's start-up), with watchdog pings
    from this loop.
    """
    security = config.security(insecure)
    if security is None:
        log.warning("INSECURE: plaintext gRPC, no certificates (--insecure)")
    agent = Agent(config, security=security)
    notifier = Notifier.from_environ()
    try:
        port = await agent.start()
        if config.metrics_listen != "off":
            await agent.start_metrics(config.metrics_listen)
        async with notifier.serving(f"node {agent.name}: RunTask on port {port}"):
            connected = asyncio.create_task(_report_session(agent, notifier))
            try:
                await asyncio.Event().wait()
            finally:
                connected.cancel()
    finally:
        await agent.stop()


async def _report_session(agent: Agent, notifier: Notifier) -> None:
    """Keep systemd's STATUS line saying whether the session is up."""
    while True:
        await agent.connected.wait()
        notifier.status(f"node {agent.name}: connected to {agent.coordinator_address}")
        while agent.connected.is_set():  # noqa: ASYNC110 - connected is a set/clear Event
            await asyncio.sleep(1.0)
        notifier.status(f"node {agent.name}: reconnecting to {agent.config.coordinator}")


def _token(source: str, endpoint: EndpointSpec) -> str | None:
    """The endpoint's bearer token, read from its ``token_file`` (federation)."""
    if endpoint.token_file is None:
        return None
    key = f"endpoints[{endpoint.id}].token_file"
    token = read_token_file(endpoint.token_file, source, key)
    if not token:
        raise ConfigError(source, key, "the file is empty")
    return token


def _verify(source: str, endpoint: EndpointSpec) -> ssl.SSLContext | bool:
    """How to check the endpoint's https server: against its ``ca_file``, or the system's
    CAs."""
    if endpoint.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=endpoint.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            source, f"endpoints[{endpoint.id}].ca_file", f"cannot load the CA: {exc}"
        ) from None
