"""The seed's REST API under ``/api/distributed`` plus ``/health``: each route unpacks the
request, makes one coordinator RPC, and packs the answer (``schemas``). Errors are raised
as gRPC errors or ``ProblemError`` and answered as problem+json by ``problems``.
"""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from gateway import schemas
from gateway.auth import acting_as
from gateway.bodies import CHECKED_BODY
from gateway.problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_RESPONSES,
    FieldError,
    Problem,
    ProblemError,
    title,
)
from gateway.upstream import UNARY_TIMEOUT_SECONDS, Upstream
from hive import __version__
from hive.v1 import cluster_pb2, common_pb2, workflow_pb2

PREFIX = "/api/distributed"
MAX_PAGE_SIZE = 200

WorkflowId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=schemas.MAX_ID_CHARS,
        description="The workflow's id, as returned on submit.",
    ),
]


def _responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    out = dict(PROBLEM_RESPONSES)
    for status in statuses:
        out[status] = {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {}},
            "description": title(status),
        }
    return out


def known_query_only(request: Request) -> None:
    """Refuse (422) a query parameter the route does not take, e.g. ``?limit=-5`` where
    the list takes ``page_size``: ignoring it would answer something the caller did not
    ask for. ``/health`` takes anything (probes add cache-busters)."""
    if not request.url.path.startswith(PREFIX) or not request.query_params:
        return
    route = request.scope.get("route")
    known = _query_names(route) if isinstance(route, APIRoute) else set()
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this route takes {takes}",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


def _query_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    stack: list[Dependant] = [route.dependant]
    while stack:
        dependant = stack.pop()
        names.update(p.alias for p in dependant.query_params)
        stack.extend(dependant.dependencies)
    return names


def router(upstream: Upstream) -> APIRouter:
    api = APIRouter(dependencies=[Depends(known_query_only), CHECKED_BODY])

    async def cluster_status() -> cluster_pb2.GetClusterStatusResponse:
        return await upstream.cluster.GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest(), timeout=UNARY_TIMEOUT_SECONDS
        )

    # --- health ---------------------------------------------------------------

    @api.get("/health", tags=["health"], responses=_responses())
    async def health() -> schemas.Health:
        """Liveness of the gateway and reachability of the coordinator (503 when unreachable).

        200 with ``status: degraded`` and the nodes by name while a node heartbeats but has
        no healthy Ollama endpoint: the gateway serves (other nodes take the work), so a
        liveness probe must not restart it, but it does not say all is well.
        """
        with acting_as(upstream.service_token):
            response = await cluster_status()
        degraded = [
            n.info.name for n in response.nodes if n.state == common_pb2.NODE_STATE_DEGRADED
        ]
        return schemas.Health(
            status="degraded" if degraded else "healthy",
            version=__version__,
            nodes_healthy=response.summary.nodes_healthy,
            nodes_degraded=degraded,
        )

    @api.get(f"{PREFIX}/health", tags=["health"], responses=_responses())
    async def distributed_health() -> schemas.DistributedHealth:
        """Health of the distributed system: every node's state ("degraded" when some node
        is not healthy, "down" when none is)."""
        with acting_as(upstream.service_token):
            response = await cluster_status()
        nodes = {n.info.name: schemas.node_state_name(n.state) for n in response.nodes}
        healthy = response.summary.nodes_healthy
        state = "healthy" if nodes and healthy == len(nodes) else "degraded" if healthy else "down"
        return schemas.DistributedHealth.model_validate(
            {
                "status": state,
                "nodes": nodes,
                "nodes_total": len(nodes),
                "nodes_healthy": healthy,
                "nodes_degraded": response.summary.nodes_degraded,
            }
        )

    # --- workflows ------------------------------------------------------------

    @api.post(
        f"{PREFIX}/workflows",
        status_code=201,
        tags=["workflows"],
        responses=_responses(409, 422, 429),
    )
    async def submit_workflow(
        body: Annotated[schemas.WorkflowCreate, Body()],
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(
                max_length=schemas.MAX_ID_CHARS,
                description="Retries with the same key return the same workflow.",
            ),
        ] = None,
    ) -> schemas.Workflow:
        """Submit a development workflow (code generation -> review -> testing -> ...).

        Answers 201 with the accepted workflow and its ``Location``; 200 with the earlier
        workflow when the idempotency key matched one accepted before.
        """
        request_id = body.request_id or ""
        if idempotency_key is not None:
            if request_id and request_id != idempotency_key:
                raise ProblemError(
                    400,
                    "the Idempotency-Key header and the request_id field differ; send one",
                    errors=[
                        FieldError(
                            field="body.request_id",
                            reason="differs from the Idempotency-Key header",
                            type="value_error",
                        )
                    ],
                )
            request_id = idempotency_key
        try:
            reply = await upstream.workflows.SubmitWorkflow(
                schemas.submit_request(body, request_id), timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            # On submit it means only that a stage's model is on no node: the request is
            # well formed, the cluster cannot run it (not a conflict with a resource).
            raise ProblemError(
                422,
                err.details() or "",
                grpc_status=err.code().name,
                errors=[
                    FieldError(
                        field="body.pipeline",
                        reason=err.details() or "",
                        type="model_unavailable",
                    )
                ],
            ) from None
        response.headers["Location"] = f"{PREFIX}/workflows/{reply.workflow.id}"
        if not reply.created:
            response.status_code = 200
        return schemas.workflow_from_proto(reply.workflow)

    @api.get(f"{PREFIX}/workflows", tags=["workflows"], responses=_responses())
    async def list_workflows(
        state: Annotated[
            schemas.WorkflowStateName | None, Query(description="Only workflows in this state.")
        ] = None,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        page_token: Annotated[
            str, Query(max_length=1024, description="next_page_token of the previous page.")
        ] = "",
    ) -> schemas.WorkflowList:
        """List workflows, newest first, a page at a time."""
        reply = await upstream.workflows.ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(
                state=schemas.WORKFLOW_STATE_TO_PROTO[state] if state else None,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout=UNARY_TIMEOUT_SECONDS,
        )
        return schemas.WorkflowList(
            workflows=[schemas.workflow_summary_from_proto(w) for w in reply.workflows],
            next_page_token=reply.next_page_token,
        )

    @api.get(f"{PREFIX}/workflows/{{workflow_id}}", tags=["workflows"], responses=_responses(404))
    async def get_workflow(workflow_id: WorkflowId) -> schemas.Workflow:
        """A workflow's status: stages, the node that ran each, timings, tokens, outputs."""
        reply = await upstream.workflows.GetWorkflow(
            workflow_pb2.GetWorkflowRequest(id=workflow_id), timeout=UNARY_TIMEOUT_SECONDS
        )
        return schemas.workflow_from_proto(reply.workflow)

    @api.post(
        f"{PREFIX}/workflows/{{workflow_id}}/cancel",
        status_code=202,
        tags=["workflows"],
        responses=_responses(404, 409),
    )
    async def cancel_workflow(
        workflow_id: WorkflowId,
        body: Annotated[schemas.CancelRequest | None, Body()] = None,
    ) -> schemas.Workflow:
        """Cancel a workflow: queued tasks are removed, running ones cancelled on their nodes.

        Answers 202: cancellation finishes asynchronously; watch or poll the workflow.
        """
        reply = await upstream.workflows.CancelWorkflow(
            workflow_pb2.CancelWorkflowRequest(id=workflow_id, reason=body.reason if body else ""),
            timeout=UNARY_TIMEOUT_SECONDS,
        )
        return schemas.workflow_from_proto(reply.workflow)

    # --- cluster --------------------------------------------------------------

    @api.get(f"{PREFIX}/cluster/status", tags=["cluster"], responses=_responses())
    async def get_cluster_status() -> schemas.ClusterStatus:
        """Cluster health and capacity: nodes, GPUs, endpoints, models, telemetry."""
        return schemas.cluster_status_from_proto(await cluster_status())

    @api.post(f"{PREFIX}/cluster/optimize", tags=["cluster"], responses=_responses(501))
    async def optimize_cluster(
        body: Annotated[schemas.OptimizeRequest | None, Body()] = None,
    ) -> schemas.OptimizationResult:
        """Trigger optimization: rebalancing, parameter tuning, model warm-up."""
        reply = await upstream.cluster.OptimizeCluster(
            cluster_pb2.OptimizeClusterRequest(dry_run=body.dry_run if body else False),
            timeout=UNARY_TIMEOUT_SECONDS,
        )
        return schemas.optimization_from_proto(reply)

    @api.get(f"{PREFIX}/performance/metrics", tags=["cluster"], responses=_responses(501))
    async def performance_metrics() -> schemas.PerformanceMetrics:
        """Utilisation, throughput, latency percentiles and bottleneck findings."""
        reply = await upstream.cluster.GetPerformanceMetrics(
            cluster_pb2.GetPerformanceMetricsRequest(), timeout=UNARY_TIMEOUT_SECONDS
        )
        return schemas.metrics_from_proto(reply)

    return api
