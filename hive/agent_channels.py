"""Channels to node agents' NodeAgentService, one per agent, shared by every call there:
the coordinator's RunTask and the gateway's FollowTask (a direct request's output)."""

from __future__ import annotations

import grpc

from hive import tls
from hive.serving import channel_options
from hive.tls import Security
from hive.v1 import node_agent_pb2_grpc


class AgentChannels:
    """One gRPC channel per agent, reused by every task sent there.

    With ``security`` the channel is mutual TLS and expects the agent's certificate to
    carry the node's name, so a task for IRONWOOD reaches IRONWOOD whatever address its
    registration advertised.
    """

    def __init__(self, max_message_bytes: int, security: Security | None = None) -> None:
        self._options = channel_options(max_message_bytes)
        self._security = security
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}

    def stub(self, address: str, node: str = "") -> node_agent_pb2_grpc.NodeAgentServiceAsyncStub:
        channel = self._channels.get((address, node))
        if channel is None:
            channel = tls.channel(
                address, self._security, server_name=node or None, options=self._options
            )
            self._channels[(address, node)] = channel
        return node_agent_pb2_grpc.NodeAgentServiceStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
