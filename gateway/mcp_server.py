"""The MCP server: the seed's tools (submit_workflow, get_cluster_status,
get_performance_metrics, optimize_cluster) plus get_workflow and cancel_workflow, and
the cluster status and workflows as resources. Built on the official ``mcp`` SDK
(``MCPServer``, formerly FastMCP), served over stdio (``hive mcp``) and over streamable
HTTP at the gateway's ``/mcp``.

Tools return the REST API's typed models, so their output schemas match the OpenAPI
ones. A coordinator error becomes a tool error naming the gRPC status.

Over HTTP the server runs stateless with JSON responses: every request is complete in
itself (the gateway holds no state), so no session outlives the request that made it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import grpc
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.types import Receive, Scope, Send

from gateway import schemas
from gateway.upstream import UNARY_TIMEOUT_SECONDS, Upstream
from hive import __version__
from hive.v1 import cluster_pb2, workflow_pb2

T = TypeVar("T")

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

INSTRUCTIONS = (
    "Hive runs development workflows (code generation -> review -> testing -> compilation "
    "-> optimization) on a cluster of GPU hosts, each stage on the node best suited for it. "
    "Submit a workflow, then poll get_workflow until its state is succeeded, failed or "
    "cancelled; get_cluster_status shows the nodes, GPUs and models."
)


async def _call(rpc: Awaitable[T]) -> T:
    try:
        return await rpc
    except grpc.aio.AioRpcError as err:
        raise ToolError(f"{err.code().name}: {err.details() or 'coordinator error'}") from err


def build(upstream: Upstream) -> MCPServer:
    mcp: MCPServer = MCPServer(
        "hive",
        title="Hive mesh",
        version=__version__,
        instructions=INSTRUCTIONS,
        # The SDK calls logging.basicConfig with this level when nothing configured logging.
        log_level="WARNING",
    )

    @mcp.tool()
    async def submit_workflow(
        name: Annotated[str, Field(min_length=1, max_length=schemas.MAX_NAME_CHARS)],
        requirements: Annotated[
            str,
            Field(
                min_length=1,
                max_length=schemas.MAX_REQUIREMENTS_CHARS,
                description="What to build, in plain words.",
            ),
        ],
        language: Annotated[str, Field(max_length=64)] = "",
        priority: schemas.PriorityName = "normal",
        pipeline: Annotated[
            str, Field(max_length=schemas.MAX_NAME_CHARS, description="Empty for 'full'.")
        ] = "",
        request_id: Annotated[
            str, Field(max_length=schemas.MAX_ID_CHARS, description="Makes retries idempotent.")
        ] = "",
        wait_for_models: Annotated[
            bool,
            Field(
                description="Accept it even when a stage's model is on no node (that stage "
                "waits for one); otherwise such a workflow is refused, naming stage and model."
            ),
        ] = False,
    ) -> schemas.Workflow:
        """Create a distributed development workflow; returns it with its id and stages."""
        body = schemas.WorkflowCreate(
            name=name,
            requirements=requirements,
            language=language,
            priority=priority,
            pipeline=pipeline,
            wait_for_models=wait_for_models,
        )
        reply = await _call(
            upstream.workflows.SubmitWorkflow(
                schemas.submit_request(body, request_id), timeout=UNARY_TIMEOUT_SECONDS
            )
        )
        return schemas.workflow_from_proto(reply.workflow)

    @mcp.tool(annotations=READ_ONLY)
    async def get_workflow(
        workflow_id: Annotated[str, Field(min_length=1, max_length=schemas.MAX_ID_CHARS)],
    ) -> schemas.Workflow:
        """A workflow's state, stages, the node that ran each, their outputs and artifacts."""
        reply = await _call(
            upstream.workflows.GetWorkflow(
                workflow_pb2.GetWorkflowRequest(id=workflow_id), timeout=UNARY_TIMEOUT_SECONDS
            )
        )
        return schemas.workflow_from_proto(reply.workflow)

    @mcp.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    async def cancel_workflow(
        workflow_id: Annotated[str, Field(min_length=1, max_length=schemas.MAX_ID_CHARS)],
        reason: Annotated[str, Field(max_length=1000)] = "",
    ) -> schemas.Workflow:
        """Cancel a workflow: queued tasks are removed, running ones cancelled on their nodes."""
        reply = await _call(
            upstream.workflows.CancelWorkflow(
                workflow_pb2.CancelWorkflowRequest(id=workflow_id, reason=reason),
                timeout=UNARY_TIMEOUT_SECONDS,
            )
        )
        return schemas.workflow_from_proto(reply.workflow)

    async def cluster_status() -> schemas.ClusterStatus:
        reply = await _call(
            upstream.cluster.GetClusterStatus(
                cluster_pb2.GetClusterStatusRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        )
        return schemas.cluster_status_from_proto(reply)

    @mcp.tool(annotations=READ_ONLY)
    async def get_cluster_status() -> schemas.ClusterStatus:
        """Cluster health and capacity: nodes, GPUs, VRAM, Ollama endpoints, loaded models."""
        return await cluster_status()

    @mcp.tool(annotations=READ_ONLY)
    async def get_performance_metrics() -> schemas.PerformanceMetrics:
        """Utilisation, tokens/s, task latency percentiles per node, and bottleneck findings."""
        reply = await _call(
            upstream.cluster.GetPerformanceMetrics(
                cluster_pb2.GetPerformanceMetricsRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        )
        return schemas.metrics_from_proto(reply)

    @mcp.tool()
    async def optimize_cluster(
        dry_run: Annotated[bool, Field(description="Plan without applying.")] = False,
    ) -> schemas.OptimizationResult:
        """Trigger optimization: rebalancing, parameter tuning, predictive model warm-up."""
        reply = await _call(
            upstream.cluster.OptimizeCluster(
                cluster_pb2.OptimizeClusterRequest(dry_run=dry_run),
                timeout=UNARY_TIMEOUT_SECONDS,
            )
        )
        return schemas.optimization_from_proto(reply)

    @mcp.resource(
        "hive://cluster/status",
        name="cluster_status",
        description="The cluster's nodes, GPUs, endpoints and models, now.",
        mime_type="application/json",
    )
    async def cluster_status_resource() -> str:
        return (await cluster_status()).model_dump_json()

    @mcp.resource(
        "hive://workflows",
        name="workflows",
        description="The most recent workflows (first page), with their states.",
        mime_type="application/json",
    )
    async def workflows_resource() -> str:
        reply = await _call(
            upstream.workflows.ListWorkflows(
                workflow_pb2.ListWorkflowsRequest(page_size=50), timeout=UNARY_TIMEOUT_SECONDS
            )
        )
        items = [
            schemas.workflow_summary_from_proto(w).model_dump(mode="json") for w in reply.workflows
        ]
        return json.dumps({"workflows": items})

    @mcp.resource(
        "hive://workflows/{workflow_id}",
        name="workflow",
        description="One workflow with its stages, outputs and artifacts (its pipeline run).",
        mime_type="application/json",
    )
    async def workflow_resource(workflow_id: str) -> str:
        reply = await _call(
            upstream.workflows.GetWorkflow(
                workflow_pb2.GetWorkflowRequest(id=workflow_id), timeout=UNARY_TIMEOUT_SECONDS
            )
        )
        return schemas.workflow_from_proto(reply.workflow).model_dump_json()

    return mcp


class StatelessHttp:
    """ASGI app serving one MCP server over streamable HTTP, one request at a time.

    Each request gets a fresh stateless session manager that lives exactly as long as the
    request, so nothing needs an application lifespan to start or stop it.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = StreamableHTTPSessionManager(
            app=self.server._lowlevel_server,  # the SDK's own mounting does the same
            json_response=True,
            stateless=True,
        )
        async with manager.run():
            await manager.handle_request(scope, receive, send)
