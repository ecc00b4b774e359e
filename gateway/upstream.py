"""The gateway's one connection to the coordinator: a lazily opened gRPC channel and stubs.

The channel is opened on first use, inside the serving event loop (a grpc.aio channel
belongs to the loop that made it). It follows the leader among several coordinators
(``hive.coordinators``: ``--coordinator a:50051,b:50051``): a unary call, or a stream that
has sent nothing yet, is made again on the leader a standby names or on the next
coordinator; a stream cut after its first message fails to the caller, whose API reports
a retryable error (a 503 in that API's shape when the HTTP answer had not started, else
the API's error event in the stream). Reconnect backoff is capped low so the gateway
recovers within seconds of the coordinator coming back, instead of gRPC's default of up
to two minutes. With ``security`` the channel is mutual TLS; every call carries the token
of the caller being served (``gateway.auth``), or ``token`` when there is none (``hive
mcp`` over stdio, which acts for the person who started it).

With ``direct`` a streamed answer is read from the agent that runs it (FollowTask, with the
follow token its assignment carries), not through the coordinator: the tokens skip a hop
and the coordinator's CPU. The gateway must then reach the agents' RunTask addresses, as
the coordinator does, over the same mutual TLS.
"""

from __future__ import annotations

from gateway.auth import caller_token
from hive.agent_channels import AgentChannels
from hive.coordinators import CoordinatorChannel, parse_target
from hive.tls import Security, token_interceptors
from hive.v1 import cluster_pb2_grpc, inference_pb2_grpc, workflow_pb2_grpc

# Unary calls (status, submit, cancel) answer in milliseconds; this bounds a stuck coordinator.
UNARY_TIMEOUT_SECONDS = 10.0

CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Workflow outputs and cluster status can be large.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class Upstream:
    """The coordinator's client API (WorkflowService, ClusterService, InferenceService)."""

    def __init__(
        self,
        target: str,
        *,
        security: Security | None = None,
        token: str | None = None,
        service_token: str | None = None,
        direct: bool = False,
    ) -> None:
        parse_target(target)  # a bad --coordinator fails at start, naming the entry
        self.target = target
        self.security = security
        self.direct = direct
        self._agents: AgentChannels | None = None
        self.default_token = token
        # The gateway's own token, for its health checks only (never a caller's calls).
        self.service_token = service_token
        self._channel: CoordinatorChannel | None = None

    def _token(self) -> str | None:
        return caller_token.get() or self.default_token

    @property
    def channel(self) -> CoordinatorChannel:
        if self._channel is None:
            self._channel = CoordinatorChannel(
                self.target,
                security=self.security,
                options=CHANNEL_OPTIONS,
                interceptors=token_interceptors(self._token),
            )
        return self._channel

    @property
    def workflows(self) -> workflow_pb2_grpc.WorkflowServiceAsyncStub:
        return workflow_pb2_grpc.WorkflowServiceStub(self.channel)

    @property
    def cluster(self) -> cluster_pb2_grpc.ClusterServiceAsyncStub:
        return cluster_pb2_grpc.ClusterServiceStub(self.channel)

    @property
    def inference(self) -> inference_pb2_grpc.InferenceServiceAsyncStub:
        return inference_pb2_grpc.InferenceServiceStub(self.channel)

    @property
    def agents(self) -> AgentChannels:
        """Channels to the agents, for FollowTask (direct answers)."""
        if self._agents is None:
            self._agents = AgentChannels(64 * 1024 * 1024, self.security)
        return self._agents

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        agents, self._agents = self._agents, None
        if agents is not None:
            await agents.close()
