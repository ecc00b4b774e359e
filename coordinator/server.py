"""The coordinator process: registry, dispatcher and gRPC services on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from coordinator.dispatch import AgentChannels, Dispatcher
from coordinator.metrics import CoordinatorMetrics
from coordinator.optimizer import OptimizerConfig
from coordinator.optimizer.live import LiveOptimizer
from coordinator.registry import Registry
from coordinator.routing import RouterConfig
from coordinator.service import (
    AgentSessionServicer,
    ClusterServicer,
    InferenceServicer,
)
from coordinator.state_lock import StateLock
from coordinator.workflows import PipelineCatalog, WorkflowEngine, WorkflowStore
from coordinator.workflows.servicer import WorkflowServicer
from hive.config import ClusterConfig
from hive.metrics import MetricsServer
from hive.sdnotify import Notifier
from hive.serving import SERVICE_NAMES, RunningServer, start_server
from hive.v1 import (
    agent_session_pb2_grpc,
    cluster_pb2_grpc,
    inference_pb2_grpc,
    workflow_pb2_grpc,
)

log = logging.getLogger("hive.coordinator")


class Coordinator:
    """Owns the coordinator's state and background tasks; start() then stop()."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        settings = config.coordinator
        loop = asyncio.get_running_loop()
        self.registry = Registry(
            loop.time,
            time.time,
            suspect_after=settings.suspect_after_seconds,
            lost_after=settings.lost_after_seconds,
        )
        self.channels = AgentChannels(settings.max_message_bytes)
        router_config = RouterConfig.from_mapping(
            config.routing, config.source, [n.name for n in config.nodes] or None
        )
        self.metrics = CoordinatorMetrics()
        self.dispatcher = Dispatcher(
            self.registry, self.channels, router_config, loop.time, self.metrics
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
        self.metrics_server: MetricsServer | None = None
        # Durable workflows; extra pipeline templates from HIVE_PIPELINES (dirs, os.pathsep).
        self.workflow_store = WorkflowStore(settings.state_path)
        self.workflows = WorkflowEngine(
            self.workflow_store,
            self.dispatcher,
            PipelineCatalog.load(
                [d for d in os.environ.get("HIVE_PIPELINES", "").split(os.pathsep) if d]
            ),
        )
        self._server: RunningServer | None = None
        self._liveness: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, address: str | None = None) -> int:
        settings = self.config.coordinator
        session = AgentSessionServicer(self.registry, settings.heartbeat_interval_seconds)
        inference = InferenceServicer(self.registry, self.dispatcher)
        cluster = ClusterServicer(self.registry, self.dispatcher, self.optimizer)
        self.workflow_store.open()
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
            ],
            [
                SERVICE_NAMES["AgentSessionService"],
                SERVICE_NAMES["InferenceService"],
                SERVICE_NAMES["ClusterService"],
                SERVICE_NAMES["WorkflowService"],
            ],
            max_message_bytes=settings.max_message_bytes,
        )
        self.port = self._server.port
        self.dispatcher.start()
        await self.workflows.start()
        self._liveness = asyncio.create_task(self._check_liveness(), name="liveness")
        if self.optimizer is not None:
            self._optimizing = asyncio.create_task(self.optimizer.run(), name="optimizer")
        log.info("coordinator listening on %s (port %d)", address or settings.listen, self.port)
        return self.port

    async def start_metrics(self, address: str) -> int:
        """Serve ``/metrics`` on ``address`` (port 0: any free port); return the port."""
        self.metrics_server = MetricsServer(self.metrics.registry, address)
        port = await self.metrics_server.start()
        log.info("coordinator metrics on %s", self.metrics_server.url)
        return port

    async def _check_liveness(self) -> None:
        interval = min(0.25, self.config.coordinator.suspect_after_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            self.registry.check_liveness()

    async def stop(self, grace: float = 1.0) -> None:
        if self._optimizing is not None:
            self._optimizing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._optimizing
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        await self.workflows.stop()
        await self.dispatcher.stop()
        for record in self.registry:
            record.outbound.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace)
        await self.channels.close()
        await self.workflow_store.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()


async def serve(config: ClusterConfig, address: str | None = None) -> None:
    """Run a coordinator until cancelled: the daemon behind `hive coordinator`.

    Holds the state file's lock for its whole life (a second coordinator on the same
    state refuses to start), serves ``/metrics`` unless ``metrics_listen`` is "off", and
    tells systemd when it is ready, pings its watchdog from this loop, and says when it stops.
    """
    settings = config.coordinator
    notifier = Notifier.from_environ()
    with StateLock(settings.state_path):
        coordinator = Coordinator(config)
        try:
            await coordinator.start(address)
            if settings.metrics_listen != "off":
                await coordinator.start_metrics(settings.metrics_listen)
            status = f"serving gRPC on port {coordinator.port}"
            if coordinator.metrics_server is not None:
                status += f", metrics on port {coordinator.metrics_server.port}"
            async with notifier.serving(status):
                await asyncio.Event().wait()
        finally:
            await coordinator.stop()
