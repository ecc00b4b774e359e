"""The gateway's HTTP app: translates REST calls into the coordinator's gRPC API.

It holds no state of its own. This first version serves health and cluster
status; workflows, live events, MCP and the Ollama/OpenAI APIs build on it.
"""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from hive import __version__
from hive.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2


def create_app(coordinator: str) -> FastAPI:
    app = FastAPI(
        title="Hive mesh gateway",
        version=__version__,
        description="REST front door of a Hive mesh cluster.",
    )
    channel: grpc.aio.Channel | None = None

    def cluster() -> cluster_pb2_grpc.ClusterServiceAsyncStub:
        nonlocal channel
        if channel is None:
            channel = grpc.aio.insecure_channel(coordinator)
        return cluster_pb2_grpc.ClusterServiceStub(channel)

    async def status() -> cluster_pb2.GetClusterStatusResponse:
        return await cluster().GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=5)

    def unavailable(err: grpc.aio.AioRpcError) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            media_type="application/problem+json",
            content={
                "type": "about:blank",
                "title": "Coordinator unavailable",
                "status": 503,
                "detail": err.details() or err.code().name,
                "grpc_status": err.code().name,
            },
        )

    @app.get("/health")
    async def health() -> Any:
        """Liveness of the gateway and reachability of the coordinator."""
        try:
            summary = (await status()).summary
        except grpc.aio.AioRpcError as err:
            return unavailable(err)
        return {"status": "healthy", "version": __version__, "nodes_healthy": summary.nodes_healthy}

    @app.get("/api/distributed/health")
    async def distributed_health() -> Any:
        """Health of the distributed system: every node's liveness."""
        try:
            response = await status()
        except grpc.aio.AioRpcError as err:
            return unavailable(err)
        nodes = {
            n.info.name: common_pb2.NodeState.Name(n.state).removeprefix("NODE_STATE_").lower()
            for n in response.nodes
        }
        healthy = response.summary.nodes_healthy
        state = "healthy" if nodes and healthy == len(nodes) else "degraded" if healthy else "down"
        return {"status": state, "nodes": nodes}

    @app.get("/api/distributed/cluster/status")
    async def cluster_status() -> Any:
        """Cluster health and capacity: nodes, GPUs, endpoints, models, telemetry."""
        try:
            response = await status()
        except grpc.aio.AioRpcError as err:
            return unavailable(err)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    return app
