"""The coordinator's per-method policy, checked before every RPC (``hive.serving.RequestGuard``).

* Health, reflection and enrolment are open (enrolment's credential is its join token).
* ``AgentSessionService`` is for agents: authenticated by their certificate (mTLS), the
  node name checked against it when they register.
* Every other method needs ``authorization: Bearer <token>`` with the scope the table
  below names; a method missing from the table needs ``admin`` (fail closed).
* A peer whose certificate names a revoked node is refused everything.
* Submissions (workflows, generate, chat, embed) spend one unit of the token's rate limit.

With API authentication off (``hive dev``, ``--insecure``), only the decoding guard and
the revoked-certificate check apply.
"""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.access.book import AccessBook, AccessDenied, scope_allows
from coordinator.access.ratelimit import RateLimiter
from hive.tls import peer_name

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "hive.v1.EnrollmentService",
    }
)
AGENT_SERVICES = frozenset({"hive.v1.AgentSessionService"})

METHOD_SCOPES: dict[str, str] = {
    "/hive.v1.ClusterService/GetClusterStatus": "read",
    "/hive.v1.ClusterService/WatchCluster": "read",
    "/hive.v1.ClusterService/ExplainTask": "read",
    "/hive.v1.ClusterService/GetPerformanceMetrics": "read",
    "/hive.v1.ClusterService/DrainNode": "admin",
    "/hive.v1.ClusterService/OptimizeCluster": "admin",
    "/hive.v1.WorkflowService/GetWorkflow": "read",
    "/hive.v1.WorkflowService/ListWorkflows": "read",
    "/hive.v1.WorkflowService/WatchWorkflow": "read",
    "/hive.v1.WorkflowService/SubmitWorkflow": "submit",
    "/hive.v1.WorkflowService/CancelWorkflow": "submit",
    "/hive.v1.InferenceService/ListModels": "read",
    "/hive.v1.InferenceService/Generate": "submit",
    "/hive.v1.InferenceService/Chat": "submit",
    "/hive.v1.InferenceService/Embed": "submit",
    # Anyone who may load a model (an empty generate) may unload it, as in Ollama.
    "/hive.v1.InferenceService/Unload": "submit",
    # Pulling fills the nodes' disks: an operator's call.
    "/hive.v1.InferenceService/Pull": "admin",
    "/hive.v1.InferenceService/Delete": "admin",
    **{
        f"/hive.v1.AccessService/{name}": "admin"
        for name in (
            "CreateApiToken",
            "ListApiTokens",
            "RevokeApiToken",
            "CreateJoinToken",
            "ListJoinTokens",
            "RevokeJoinToken",
            "RevokeNode",
            "ListRevokedNodes",
        )
    },
}
SUBMISSIONS = frozenset(
    {
        "/hive.v1.WorkflowService/SubmitWorkflow",
        "/hive.v1.InferenceService/Generate",
        "/hive.v1.InferenceService/Chat",
        "/hive.v1.InferenceService/Embed",
    }
)


def required_scope(method: str) -> str:
    return METHOD_SCOPES.get(method, "admin")


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class ApiGuard:
    """The ``check`` of the coordinator's ``RequestGuard``."""

    def __init__(
        self, book: AccessBook, *, api_auth: bool, limiter: RateLimiter | None = None
    ) -> None:
        self.book = book
        self.api_auth = api_auth
        self.limiter = limiter

    async def __call__(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        if service in OPEN_SERVICES:
            return
        peer = peer_name(context)
        if peer is not None and self.book.node_revoked(peer):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"the certificate of {peer} is revoked"
            )
        if service in AGENT_SERVICES or not self.api_auth:
            return
        needed = required_scope(method)
        secret = bearer_token(context)
        if secret is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{method} needs an API token with the {needed} scope: send "
                "'authorization: Bearer <token>' (make one with `hive tokens create`)",
            )
            return
        try:
            token = self.book.authenticate(secret)
        except AccessDenied as exc:
            await context.abort(grpc.StatusCode[exc.code], str(exc))
            return
        if not scope_allows(token.scope, needed):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token {token.id} has the {token.scope} scope; {method} needs {needed}",
            )
        if self.limiter is not None and method in SUBMISSIONS:
            wait = self.limiter.take(token.id)
            if wait > 0:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"token {token.id} is over its submission rate limit "
                    f"({self.limiter.rate:g}/s, burst {self.limiter.burst:g}); "
                    f"retry after {wait:.1f}s",
                    trailing_metadata=(("retry-after-ms", str(max(1, int(wait * 1000)))),),
                )
