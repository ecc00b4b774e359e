"""The coordinator process: registry, dispatcher and gRPC services on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from coordinator.dispatch import AgentChannels, Dispatcher
from coordinator.registry import Registry
from coordinator.routing import RouterConfig
from coordinator.service import (
    AgentSessionServicer,
    ClusterServicer,
    InferenceServicer,
    WorkflowServicer,
)
from hive.config import ClusterConfig
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
        self.dispatcher = Dispatcher(self.registry, self.channels, router_config, loop.time)
        self._server: RunningServer | None = None
        self._liveness: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, address: str | None = None) -> int:
        settings = self.config.coordinator
        session = AgentSessionServicer(self.registry, settings.heartbeat_interval_seconds)
        inference = InferenceServicer(self.registry, self.dispatcher)
        cluster = ClusterServicer(self.registry, self.dispatcher)
        self._server = await start_server(
            address or settings.listen,
            [
                lambda s: agent_session_pb2_grpc.add_AgentSessionServiceServicer_to_server(
                    session, s
                ),
                lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(inference, s),
                lambda s: cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster, s),
                lambda s: workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
                    WorkflowServicer(), s
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
        self._liveness = asyncio.create_task(self._check_liveness(), name="liveness")
        log.info("coordinator listening on %s (port %d)", address or settings.listen, self.port)
        return self.port

    async def _check_liveness(self) -> None:
        interval = min(0.25, self.config.coordinator.suspect_after_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            self.registry.check_liveness()

    async def stop(self, grace: float = 1.0) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        await self.dispatcher.stop()
        for record in self.registry:
            record.outbound.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace)
        await self.channels.close()


async def serve(config: ClusterConfig, address: str | None = None) -> None:
    """Run a coordinator until cancelled."""
    coordinator = Coordinator(config)
    await coordinator.start(address)
    try:
        await asyncio.Event().wait()
    finally:
        await coordinator.stop()
