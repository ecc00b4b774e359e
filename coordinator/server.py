"""The coordinator process: registry, dispatcher and gRPC services on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc

from coordinator.access import AccessBook, ApiGuard, RateLimiter
from coordinator.access.servicer import AccessServicer, EnrollmentServicer
from coordinator.cluster_service import ClusterServicer
from coordinator.dispatch import Dispatcher
from coordinator.ha import LeaderGate
from coordinator.leader import LeaderElection, session_options
from coordinator.metrics import CoordinatorMetrics
from coordinator.optimizer import OptimizerConfig
from coordinator.optimizer.live import LiveOptimizer
from coordinator.policy import Policy
from coordinator.registry import Registry
from coordinator.roster import Roster
from coordinator.routing import RouterConfig
from coordinator.service import AgentSessionServicer, InferenceServicer
from coordinator.state_lock import StateLock
from coordinator.workflows import PipelineCatalog, WorkflowEngine
from coordinator.workflows.servicer import WorkflowServicer
from coordinator.workflows.store import Fenced
from coordinator.workflows.stores import create_store
from hive.agent_channels import AgentChannels
from hive.config import ClusterConfig, ConfigError
from hive.metrics import MetricsServer, split_listen
from hive.sdnotify import Notifier
from hive.serving import SERVICE_NAMES, RunningServer, start_server
from hive.tls import Security
from hive.v1 import (
    agent_session_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    enrollment_pb2_grpc,
    inference_pb2_grpc,
    workflow_pb2_grpc,
)

log = logging.getLogger("hive.coordinator")


def configured_policy(router: RouterConfig, source: str) -> Policy | None:
    """The policy ``routing.policy`` names: None for the router ("hive"), else one of the
    simulator's baselines (coordinator/sim/policies.py), so that a real cluster can be
    run with what another scheduler would do and the two compared (issue 20). An unknown
    name is a ConfigError naming the key and the known policies."""
    if router.policy == "hive":
        return None
    from coordinator.sim.policies import make_policy

    try:
        policy = make_policy(router.policy, router, seed=0)
    except ValueError as err:
        raise ConfigError(source, "routing.policy", str(err)) from None
    log.warning(
        "routing.policy: tasks are placed by the baseline %r, not by hive's router", router.policy
    )
    return policy


class Coordinator:
    """Owns the coordinator's state and background tasks; start() then stop().

    ``security`` None means plaintext with no authentication (the caller chose insecure);
    with it, every connection is mutual TLS and the client API needs bearer tokens
    (unless ``auth.api_tokens: false``).
    """

    def __init__(self, config: ClusterConfig, security: Security | None = None) -> None:
        self.config = config
        self.security = security
        settings = config.coordinator
        auth = settings.auth
        self.api_auth = auth.api_tokens if auth.api_tokens is not None else security is not None
        loop = asyncio.get_running_loop()
        self.registry = Registry(
            loop.time,
            time.time,
            suspect_after=settings.suspect_after_seconds,
            lost_after=settings.lost_after_seconds,
        )
        self.channels = AgentChannels(settings.max_message_bytes, security)
        router_config = RouterConfig.from_mapping(
            config.routing, config.source, [n.name for n in config.nodes] or None
        )
        self.metrics = CoordinatorMetrics()
        self.dispatcher = Dispatcher(
            self.registry,
            self.channels,
            router_config,
            loop.time,
            self.metrics,
            configured_policy(router_config, config.source),
        )
        self.metrics.attach(self.registry, self.dispatcher)
        optimizer_config = OptimizerConfig.from_mapping(
            config.optimizer, config.source, router_config.scheduler.endpoint_limits
        )
        self.optimizer: LiveOptimizer | None = (
            LiveOptimizer(optimizer_config, self.registry, self.dispatcher, loop.time)
            if optimizer_config.enabled
            else None
        )
        self._optimizing: asyncio.Task[None] | None = None
        # Writes of the optimizer's applied state under way.
        self._saving: set[asyncio.Task[None]] = set()
        self.metrics_server: MetricsServer | None = None
        # host:port as bound, real ports (GetClusterStatus tells clients); "" when off.
        self.metrics_address = ""
        self.enroll_address = ""
        # Durable workflows; extra pipeline templates from HIVE_PIPELINES (dirs, os.pathsep).
        # Several coordinators share a PostgreSQL store; the lease (coordinator.leader)
        # decides which one leads, and fences every write it makes. None: the only one.
        self.election: LeaderElection | None = None
        self.demoted = asyncio.Event()  # set when this coordinator stopped leading
        self.leading = asyncio.Event()  # set once it leads (at once for the only one)
        self._leading: asyncio.Task[None] | None = None
        self._electing: asyncio.Task[None] | None = None
        self.advertise = ""
        self.workflow_store = create_store(
            settings,
            fence=self._fence,
            on_fenced=lambda exc: self._demote(f"fenced: {exc}"),
            session_options=session_options(settings.lease_seconds),
        )
        store = self.workflow_store
        self.metrics.state_writable.set_function(lambda: 0.0 if store.unwritable else 1.0)
        self.metrics.is_leader.set_function(lambda: 1.0 if self.is_leader else 0.0)
        self.metrics.lease_renew_seconds.set_function(
            lambda: (self.election.last_renew_latency or 0.0) if self.election is not None else 0.0
        )
        self.workflows = WorkflowEngine(
            self.workflow_store,
            self.dispatcher,
            PipelineCatalog.load(
                [d for d in os.environ.get("HIVE_PIPELINES", "").split(os.pathsep) if d]
            ),
        )
        self.access = AccessBook(self.workflow_store, time.time)
        self.guard = ApiGuard(
            self.access,
            api_auth=self.api_auth,
            limiter=RateLimiter(auth.submit_rate_per_second, auth.submit_burst, loop.time),
        )
        self._server: RunningServer | None = None
        self._enroll_server: RunningServer | None = None
        self.enroll_port = 0
        self._liveness: asyncio.Task[None] | None = None
        self.port = 0
        # Known once the port is bound, unless coordinator.name sets it.
        self.cluster_name = config.coordinator.name

    async def start(self, address: str | None = None) -> int:
        settings = self.config.coordinator
        session = AgentSessionServicer(
            self.registry,
            settings.heartbeat_interval_seconds,
            access=self.access,
            verify_names=self.security is not None,
            keeps=self.dispatcher.keeps,
        )
        inference = InferenceServicer(self.registry, self.dispatcher)
        cluster = _AddressedClusterServicer(
            self,
            self.registry,
            self.dispatcher,
            self.optimizer,
            Roster(
                settings.postgres_url,
                lambda: self.advertise,
                asyncio.get_running_loop().time,
                stale_after=settings.lease_seconds,
            ),
        )
        access = AccessServicer(self.access, self.registry)
        postgres = settings.postgres_url
        # The store opens first, standby or not: an unreachable PostgreSQL, a wrong
        # password or a newer schema stops the coordinator here with the reason.
        await self.workflow_store.open()
        if not postgres:
            await self._open_state()
        self._server = await start_server(
            address or settings.listen,
            [
                lambda s: agent_session_pb2_grpc.add_AgentSessionServiceServicer_to_server(
                    session, s
                ),
                lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(inference, s),
                lambda s: cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster, s),
                lambda s: workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
                    WorkflowServicer(self.workflows), s
                ),
                lambda s: enrollment_pb2_grpc.add_AccessServiceServicer_to_server(access, s),
            ],
            [
                SERVICE_NAMES["AgentSessionService"],
                SERVICE_NAMES["InferenceService"],
                SERVICE_NAMES["ClusterService"],
                SERVICE_NAMES["WorkflowService"],
                SERVICE_NAMES["AccessService"],
            ],
            max_message_bytes=settings.max_message_bytes,
            security=self.security,
            check=LeaderGate(self, self.guard) if postgres else self.guard,
        )
        self.port = self._server.port
        if not self.cluster_name:
            self.cluster_name = default_cluster_name(socket.gethostname(), self.port)
        self.dispatcher.cluster_name = self.cluster_name
        self.advertise = settings.advertise or f"{socket.gethostname()}:{self.port}"
        log.info("coordinator listening on %s (port %d)", address or settings.listen, self.port)
        if not postgres:
            await self._begin_leading()
            self.leading.set()
            return self.port
        self.election = LeaderElection(
            postgres,
            f"{self.advertise}/{uuid.uuid4().hex[:8]}",
            self.advertise,
            lease_seconds=settings.lease_seconds,
            renew_seconds=settings.renew_seconds,
        )
        self._electing = asyncio.create_task(self.election.run(), name="election")
        self._leading = asyncio.create_task(self._lead(), name="leading")
        log.info(
            "coordinator %s: a standby until it holds the lease (lease %.1fs, renewed every %.1fs)",
            self.advertise,
            settings.lease_seconds,
            settings.renew_seconds,
        )
        return self.port

    # --- leading ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Serving as the leader: always for the only coordinator; with several, once
        this one holds the lease and has loaded the state."""
        if self.election is None:
            return True
        return self.leading.is_set() and not self.demoted.is_set() and self.election.is_leader

    @property
    def leader_address(self) -> str | None:
        """The leader's address for a standby to name to clients (None: not known, or
        this one was elected and is still loading the state)."""
        if self.election is None:
            return self.advertise
        address = self.election.leader_address
        return None if address == self.advertise else address

    def _fence(self) -> int:
        """The epoch every write carries (the PostgreSQL store checks it)."""
        if self.election is None:
            return 0
        return self.election.fence()

    def _demote(self, reason: str) -> None:
        if not self.demoted.is_set():
            log.warning("coordinator %s: stops leading: %s", self.advertise, reason)
            self.demoted.set()

    async def _open_state(self) -> None:
        await self.access.load()
        if self.api_auth and not self.access.has_live_admin():
            await self._bootstrap_admin_token()

    async def _begin_leading(self) -> None:
        await self._start_enrollment()
        await self._restore_optimizer()
        self.dispatcher.start()
        await self.workflows.start()
        self._liveness = asyncio.create_task(self._check_liveness(), name="liveness")
        if self.optimizer is not None:
            self._optimizing = asyncio.create_task(self.optimizer.run(), name="optimizer")

    async def _restore_optimizer(self) -> None:
        """Apply again what the optimizer applied before this start or failover, and from
        now on store what it applies (the ``optimizer_state`` table)."""
        optimizer = self.optimizer
        if optimizer is None:
            return
        for row in await self.workflow_store.read_access("optimizer_state"):
            if row["key"] == "applied":
                optimizer.restore(str(row["value"]))
        optimizer.on_applied = self._save_optimizer

    def _save_optimizer(self, document: str) -> None:
        row = {"key": "applied", "value": document, "updated_at": time.time()}
        task = asyncio.create_task(self._put_optimizer(row), name="optimizer-state")
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def _put_optimizer(self, row: dict[str, object]) -> None:
        try:
            await self.workflow_store.put_access("optimizer_state", row)
        except Exception as exc:  # a full disk, a lost fence: the next pass writes again
            log.warning("optimizer: its applied state was not stored: %s", exc)

    async def _lead(self) -> None:
        """Wait for the lease; then load the state and serve as the leader until the lease
        or the fence is lost. A coordinator that stopped leading does not lead again: its
        owner (``serve``) starts a fresh one as a standby."""
        election = self.election
        assert election is not None
        epoch = await election.wait_elected()
        started = time.monotonic()
        try:
            await self._open_state()
            await self._begin_leading()
        except Exception as exc:
            self._demote(f"could not load the state as the new leader: {exc}")
            return
        if election.is_leader:
            self.leading.set()
        if epoch > 1:
            self.metrics.failovers.inc()
        log.warning(
            "coordinator %s: leader (epoch %d), state loaded in %.2fs",
            self.advertise,
            epoch,
            time.monotonic() - started,
        )
        await election.wait_demoted()
        self._demote("lost the lease")

    async def _bootstrap_admin_token(self) -> None:
        """A cluster with API tokens on and no admin token would lock its operators out:
        make one and write it to a file only the coordinator's user can read. The token
        itself is never logged."""
        auth = self.config.coordinator.auth
        path = Path(
            auth.admin_token_file or Path(self.config.coordinator.state_path).parent / "admin.token"
        )
        _, secret = await self.access.create_api_token("bootstrap admin", "admin")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        log.warning(
            "no admin API token existed: wrote a new one to %s (export HIVE_TOKEN=$(cat %s))",
            path,
            path,
        )

    async def _start_enrollment(self) -> None:
        settings = self.config.coordinator
        tls = settings.tls
        if settings.enroll_listen == "off" or self.security is None or tls is None:
            return
        if tls.ca_key is None:
            return
        ca_key = await asyncio.to_thread(Path(tls.ca_key).read_bytes)
        enrollment = EnrollmentServicer(self.access, self.security.ca, ca_key)
        self._enroll_server = await start_server(
            settings.enroll_listen,
            [lambda s: enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(enrollment, s)],
            [SERVICE_NAMES["EnrollmentService"]],
            max_message_bytes=64 * 1024,
            security=self.security,
            require_client_auth=False,
        )
        self.enroll_port = self._enroll_server.port
        self.enroll_address = _bound(settings.enroll_listen, self.enroll_port)
        log.info("enrolment on %s (port %d)", settings.enroll_listen, self.enroll_port)

    async def start_metrics(self, address: str) -> int:
        """Serve ``/metrics`` on ``address`` (port 0: any free port); return the port."""
        self.metrics_server = MetricsServer(self.metrics.registry, address)
        port = await self.metrics_server.start()
        self.metrics_address = _bound(address, port)
        log.info("coordinator metrics on %s", self.metrics_server.url)
        return port

    async def _check_liveness(self) -> None:
        interval = min(0.25, self.config.coordinator.suspect_after_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            self.registry.check_liveness()

    async def stop(self, grace: float = 1.0, *, hand_over: bool = True) -> None:
        """Stop everything. A leader among several hands the lease over at once
        (``hand_over``; False leaves it to expire, as a crash does)."""
        handing_over = hand_over and self.is_leader and self.election is not None
        # With PostgreSQL across a network, a step that needs the database (a query being
        # cancelled, queued writes) can hang on a cut link for minutes: each gets a bound,
        # and what outlives it is left behind (its writes fenced), so that a coordinator
        # cut off from PostgreSQL still stops and comes back as a standby.
        bound = self.config.coordinator.lease_seconds * 2 if self.election is not None else None
        if self._saving:  # while it still leads: a write after the election stops is fenced
            saving = asyncio.gather(*self._saving, return_exceptions=True)
            await _within(saving, bound, "optimizer state")
        for task in (self._leading, self._electing):
            if task is not None:
                task.cancel()
                await _within(task, bound, "leader election")
        if self._optimizing is not None:
            self._optimizing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._optimizing
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        with contextlib.suppress(Fenced):  # no longer the leader: nothing may be written
            await _within(self.workflows.stop(), bound, "workflow engine")
        await self.dispatcher.stop()
        for record in self.registry:
            record.outbound.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace)
        if self._enroll_server is not None:
            await self._enroll_server.stop(grace)
        await self.channels.close()
        with contextlib.suppress(Fenced):
            await _within(self.workflow_store.close(), bound, "state store")
        if handing_over and self.election is not None:
            # A planned stop hands the lease over at once instead of letting it expire.
            await self.election.release()
        if self.metrics_server is not None:
            await self.metrics_server.stop()


class _AddressedClusterServicer(ClusterServicer):
    """GetClusterStatus with the coordinator's own /metrics and enrolment addresses, which
    only the process that bound them knows (a port 0 made real, a host as configured), so
    `hive check` and `hive tokens join create` need not guess them."""

    def __init__(self, coordinator: Coordinator, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.coordinator = coordinator

    async def GetClusterStatus(
        self,
        request: cluster_pb2.GetClusterStatusRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.GetClusterStatusRequest, cluster_pb2.GetClusterStatusResponse
        ],
    ) -> cluster_pb2.GetClusterStatusResponse:
        response = await super().GetClusterStatus(request, context)
        response.metrics_address = self.coordinator.metrics_address
        response.enroll_address = self.coordinator.enroll_address
        return response


def _bound(listen: str, port: int) -> str:
    """``listen`` (``host:port``, ``:port`` = every interface) with its real ``port``."""
    host, _ = split_listen(listen)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _within(step: Awaitable[object], seconds: float | None, what: str) -> None:
    """Await ``step``; with ``seconds``, at most that long, then leave it behind cancelled
    (logged). A cancelled task's CancelledError is the expected end, not an error."""
    task = asyncio.ensure_future(step)
    if seconds is None:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("coordinator: stopping the %s took over %.1fs; left behind", what, seconds)
        task.cancel()
        return
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


async def serve(
    config: ClusterConfig, address: str | None = None, *, insecure: bool = False
) -> None:
    """Run a coordinator until cancelled: the daemon behind `hive coordinator`.

    Holds the state file's lock for its whole life (a second coordinator on the same
    state refuses to start), serves ``/metrics`` unless ``metrics_listen`` is "off", and
    tells systemd when it is ready, pings its watchdog from this loop, and says when it stops.
    """
    settings = config.coordinator
    security = settings.security(config.source, insecure)
    if security is None:
        log.warning("INSECURE: plaintext gRPC, no certificates, no API tokens (--insecure)")
    notifier = Notifier.from_environ()
    # One coordinator per SQLite file; PostgreSQL is shared (the leader lease decides).
    sqlite_path = settings.sqlite_path
    with StateLock(sqlite_path) if sqlite_path else contextlib.nullcontext():
        supervisor = CoordinatorSupervisor(config, security, address)
        try:
            await supervisor.start()
            coordinator = supervisor.current
            status = f"serving gRPC on port {coordinator.port}"
            if coordinator.metrics_server is not None:
                status += f", metrics on port {coordinator.metrics_server.port}"
            async with notifier.serving(status):
                await asyncio.Event().wait()
        finally:
            await supervisor.stop()


# A coordinator that stopped leading starts again as a standby; while that fails (its
# PostgreSQL out of reach) it retries, backing off to the max. Only the first start of a
# process fails it (a wrong URL or password is the operator's to fix).
RESTART_INITIAL_SECONDS = 0.5
RESTART_MAX_SECONDS = 5.0


class CoordinatorSupervisor:
    """Keeps a coordinator serving at one address: with several coordinators, one that
    stopped leading (its lease or its fence lost) keeps nothing of its in-memory state, so
    a fresh one takes its place, as a standby that campaigns again. The only coordinator
    (SQLite) never stops leading, and this is just its owner."""

    def __init__(
        self, config: ClusterConfig, security: Security | None, address: str | None = None
    ) -> None:
        self.config = config
        self.security = security
        self.address = address
        self.current = Coordinator(config, security)
        self.restarts = 0
        self._loop: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        await self.current.start(self.address)
        metrics = self.config.coordinator.metrics_listen
        if metrics != "off":
            await self.current.start_metrics(metrics)

    async def start(self) -> int:
        await self._start()
        self._loop = asyncio.create_task(self._supervise(), name="coordinator-supervisor")
        return self.current.port

    async def _supervise(self) -> None:
        while True:
            await self.current.demoted.wait()
            await self.current.stop(hand_over=False)
            self.restarts += 1
            log.warning("coordinator: starting again as a standby")
            delay = RESTART_INITIAL_SECONDS
            while True:
                self.current = Coordinator(self.config, self.security)
                try:
                    await self._start()
                    break
                except Exception as exc:  # PostgreSQL out of reach across a partition
                    log.warning(
                        "coordinator: cannot start again as a standby yet (%s); retrying in %.1fs",
                        exc,
                        delay,
                    )
                    with contextlib.suppress(Exception):
                        await self.current.stop(hand_over=False)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RESTART_MAX_SECONDS)

    async def stop(self, *, hand_over: bool = True) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self.current.stop(hand_over=hand_over)


def default_cluster_name(host: str, port: int) -> str:
    """``host:port``, with anything a cluster name may not hold (hive.config.CLUSTER_NAME)
    made a hyphen, so peers accept it in X-Hive-Via."""
    cleaned = re.sub(r"[^A-Za-z0-9_.:-]", "-", host).strip("-.:_")[:100] or "hive"
    return f"{cleaned}:{port}"
