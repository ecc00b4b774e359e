"""Building gRPC servers the same way in every Hive process.

Every server serves grpc.health.v1 and server reflection beside its own
services, binds the address it is given (port 0 in tests, read back), and
caps message sizes so an oversized message is refused with RESOURCE_EXHAUSTED
instead of being buffered. With a ``Security`` it listens with mutual TLS only.

``RequestGuard`` wraps every method of every server: a request that does not decode
is answered INVALID_ARGUMENT (gRPC's default is UNKNOWN, which reads as a server
fault), and an optional ``check`` runs before the method (the coordinator's token
and scope check).
"""

from __future__ import annotations

import gc
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hive.tls import Security
from hive.v1 import (
    agent_session_pb2,
    cluster_pb2,
    enrollment_pb2,
    inference_pb2,
    node_agent_pb2,
    workflow_pb2,
)

Registrar = Callable[[grpc.aio.Server], None]

# Trailing metadata a node agent puts on every RunTask status it ends itself (the node's
# name). A RunTask error without it came from a broken transport: the agent died or the
# network between broke, so the coordinator retries the task away from that whole node.
AGENT_TRAILER = "hive-agent"


def trailer_keys(err: grpc.aio.AioRpcError) -> set[str]:
    """The trailing metadata keys a failed call ended with: none when the transport broke
    (the peer died, the network between), so a server's own marker there (AGENT_TRAILER,
    hive.coordinators.COORDINATOR_TRAILER) tells its refusals from its going away."""
    return {key for key, _ in err.trailing_metadata() or ()}


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
    "EnrollmentService": enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"].full_name,
    "AccessService": enrollment_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
}

# Runs before a method with its full name ("/hive.v1.ClusterService/DrainNode"); aborts
# the call to refuse it.
Check = Callable[[str, grpc.aio.ServicerContext[Any, Any]], Awaitable[None]]


class _Undecodable:
    """What a request that failed to decode becomes, so the method can refuse it."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return _Undecodable(exc)

    return deserialize


async def _refuse_undecodable(
    method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request to {method} is not a valid protobuf message of its type",
        )


class Unavailable(RuntimeError):
    """Raised by a servicer's domain code for "not now, try again" (the state disk is
    full, say): every server answers it UNAVAILABLE with its message, not UNKNOWN."""


class RequestGuard(grpc.aio.ServerInterceptor):
    """Wraps every method: undecodable requests → INVALID_ARGUMENT; ``check`` first;
    ``Unavailable`` → UNAVAILABLE."""

    def __init__(self, check: Check | None = None) -> None:
        self._check = check

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._wrap(handler_call_details.method, handler)

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        check = self._check
        deserializer = _tolerant(handler.request_deserializer)
        serializer = handler.response_serializer

        async def before(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            if check is not None:
                await check(method, context)

        async def requests(
            iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async for request in iterator:
                await _refuse_undecodable(method, request, context)
                yield request

        if handler.unary_unary is not None:
            uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                await before(context)
                await _refuse_undecodable(method, request, context)
                try:
                    return await uu(request, context)
                except Unavailable as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

            return grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
        if handler.unary_stream is not None:
            us: Any = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                await before(context)
                await _refuse_undecodable(method, request, context)
                result = us(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:
                    await result

            return grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
        if handler.stream_unary is not None:
            su: Any = handler.stream_unary

            async def stream_unary(iterator: Any, context: Any) -> Any:
                await before(context)
                return await su(requests(iterator, context), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)
        ss: Any = handler.stream_stream
        assert ss is not None

        async def stream_stream(iterator: Any, context: Any) -> AsyncIterator[Any]:
            await before(context)
            result = ss(requests(iterator, context), context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:
                await result

        return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)


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
    security: Security | None = None,
    check: Check | None = None,
    require_client_auth: bool = True,
) -> RunningServer:
    """Start a grpc.aio server on ``address`` with health and reflection; return it and its port.

    With ``security`` the port takes mutual TLS only (client certificates from the
    cluster CA); without, plaintext (the caller decided that insecure is wanted).
    """
    server = grpc.aio.server(
        interceptors=[RequestGuard(check)],
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
        ],
    )
    for register in registrars:
        register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if security is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, security.server_credentials(require_client_auth))
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


# Allocations between young-generation collections in a serving process (CPython: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc_for_serving() -> None:
    """Collect the young generation every GC_YOUNG_THRESHOLD allocations instead of 700.

    A daemon allocates protobuf messages, coroutines and dicts per request; at CPython's
    default the collector runs every few requests and its pauses land in the tail. In
    benchmarks/bench_dispatch.py (three processes on 2 cores, ~180 tasks/s) this moved the
    accepted-to-running p99 from 7.4-8.0 ms to 4.3-4.8 ms (three interleaved runs each),
    throughput unchanged. Older generations are collected proportionally less often; the
    cost is some more memory held by garbage cycles between collections.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, max(older, 20), max(oldest, 100))
