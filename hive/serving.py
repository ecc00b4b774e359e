"""Building gRPC servers the same way in every Hive process.

Every server serves grpc.health.v1 and server reflection beside its own
services, binds the address it is given (port 0 in tests, read back), and
caps message sizes so an oversized message is refused with RESOURCE_EXHAUSTED
instead of being buffered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hive.v1 import (
    agent_session_pb2,
    cluster_pb2,
    inference_pb2,
    node_agent_pb2,
    workflow_pb2,
)

Registrar = Callable[[grpc.aio.Server], None]

# Full names of every service in the contract, keyed by the servicer registration
# function's service so a server lists exactly what it serves in reflection.
SERVICE_NAMES = {
    "AgentSessionService": agent_session_pb2.DESCRIPTOR.services_by_name[
        "AgentSessionService"
    ].full_name,
    "NodeAgentService": node_agent_pb2.DESCRIPTOR.services_by_name["NodeAgentService"].full_name,
    "WorkflowService": workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    "ClusterService": cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    "InferenceService": inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name,
}


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer

    async def stop(self, grace: float | None = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Keepalive lets both sides notice a dead peer on an idle stream. The timeout is
        # generous: a peer whose event loop is busy (thousands of streams) acks late, and
        # a missed ack tears down the connection with every call on it.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


async def start_server(
    address: str,
    registrars: Sequence[Registrar],
    service_names: Sequence[str],
    *,
    max_message_bytes: int = 16 * 1024 * 1024,
) -> RunningServer:
    """Start a grpc.aio server on ``address`` with health and reflection; return it and its port."""
    server = grpc.aio.server(
        options=[
            *channel_options(max_message_bytes),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            # gRPC core cancels calls that wait unmatched behind more than 1,000 others
            # (CANCELLED with no reason), which a burst of submissions easily exceeds.
            # Admission control belongs to the scheduler's bounded queue, which answers
            # RESOURCE_EXHAUSTED with a retry hint; let the transport hold the burst.
            ("grpc.server.max_pending_requests", 65_536),
            ("grpc.server.max_pending_requests_hard_limit", 65_536),
            # ... and cancels calls left unrequested for 30 s, which a busy loop reaches.
            ("grpc.server_max_unrequested_time_in_server", 3_600),
        ]
    )
    for register in registrars:
        register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    await server.start()
    for name in (*service_names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)


def host_port(address: str, port: int) -> str:
    """Replace the port of ``host:port`` (used when binding port 0 and reading it back)."""
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
