"""The gateway's HTTP app: the front door that translates every client protocol into
the coordinator's gRPC API, holding no state of its own.

Served here: the seed's REST API (``rest``), live events over a WebSocket (``events``),
MCP over streamable HTTP at ``/mcp`` (``mcp_server``), the Ollama API (``ollama_api``),
the OpenAI API (``openai_api``) and Anthropic's Messages API (``anthropic_api``).
Errors: problem+json on the REST API (``problems``), each compatible API in its own
clients' shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import (
    anthropic_api,
    auth,
    dashboard,
    events,
    mcp_server,
    ollama_api,
    openai_api,
    openai_responses,
    problems,
    rest,
)
from gateway.upstream import UNARY_TIMEOUT_SECONDS, Upstream
from hive import __version__
from hive.metrics import HttpMetrics, build_info
from hive.tls import Security
from hive.v1 import cluster_pb2

# Request bodies above this are refused with 413 before they are read. The coordinator
# takes prompts up to 1 MB of characters; JSON escaping can double that.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Live-event WebSockets open at once; more are refused (close 1013, try again later).
MAX_EVENT_CLIENTS = 256


def create_app(
    coordinator: str,
    *,
    event_queue_size: int = events.DEFAULT_QUEUE_SIZE,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_event_clients: int = MAX_EVENT_CLIENTS,
    security: Security | None = None,
    service_token: str | None = None,
    protect_metrics: bool = False,
    direct: bool = False,
) -> FastAPI:
    """The gateway for the coordinator at ``coordinator`` (host:port).

    ``security``: mutual TLS to the coordinator (None: plaintext). Callers' bearer tokens
    are forwarded (``gateway.auth``); ``service_token`` is the gateway's own, used for
    the open health endpoints; ``protect_metrics`` asks for a readable token on /metrics;
    ``direct``: streamed answers are read from the agents (``gateway.upstream``).
    """
    upstream = Upstream(coordinator, security=security, service_token=service_token, direct=direct)
    app = FastAPI(
        title="Hive mesh gateway",
        version=__version__,
        description=(
            "Front door of a Hive mesh cluster: the seed's REST API under /api/distributed, "
            "live events on the WebSocket /api/distributed/ws, MCP at /mcp, and the cluster "
            "as one Ollama (/api/*) and one OpenAI endpoint (/v1/*)."
        ),
    )
    app.state.upstream = upstream
    problems.install(app)
    # Each compatible API's errors answer in its own clients' shape.
    app.add_exception_handler(problems.ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)

    app.include_router(rest.router(upstream))
    app.include_router(ollama_api.router(upstream))
    app.include_router(openai_api.router(upstream))
    app.include_router(openai_responses.router(upstream))
    app.include_router(anthropic_api.router(upstream))

    @app.websocket(f"{rest.PREFIX}/ws")
    async def event_stream(websocket: WebSocket) -> None:
        """Live workflow, task and cluster events; see ``gateway.events``."""
        if app.state.event_clients >= max_event_clients:
            await websocket.close(events.CLOSE_TOO_SLOW, "too many event clients; retry later")
            return
        app.state.event_clients += 1
        try:
            await events.EventConnection(websocket, upstream, event_queue_size).run()
        finally:
            app.state.event_clients -= 1

    app.state.event_clients = 0

    mcp_app = mcp_server.StatelessHttp(mcp_server.build(upstream))
    app.router.routes.append(Route("/mcp", mcp_app, methods=["GET", "POST", "DELETE"]))
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(JsonBodies)
    app.add_middleware(HeadAsGet)
    # Each app has its own registry, so several gateways in one process (tests, hive dev)
    # never share counters.
    registry = CollectorRegistry()
    build_info(registry, "gateway")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this gateway."""
        if protect_metrics:
            # Any token the coordinator accepts for reading may scrape.
            await upstream.cluster.GetClusterStatus(
                cluster_pb2.GetClusterStatusRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(HttpMetrics, registry=registry)
    app.add_middleware(auth.CallerToken)
    # Last, so every API route above takes precedence over the dashboard's paths.
    dashboard.install(app)
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, problems.ApiError)
    return exc.response()


async def _on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """Invalid input, answered in the shape the caller's API uses.

    Malformed JSON is 400 everywhere; a well-formed body with wrong fields is 422
    problem+json on the REST API and 400 on the Ollama and OpenAI APIs, as they do.
    """
    assert isinstance(exc, RequestValidationError)
    errors = problems.field_errors(exc)
    detail = problems.validation_detail(errors)
    api = _api_of(request.url.path)
    if api == "anthropic":
        return anthropic_api.error_response(400, detail)
    if api == "openai":
        param = errors[0].field.rsplit(".", 1)[-1] if errors else None
        return openai_api.error_response(
            400,
            {"message": detail, "type": "invalid_request_error", "param": param, "code": None},
        )
    if api == "ollama":
        return ollama_api.error_response(400, detail)
    malformed = any(e.type == "json_invalid" for e in errors)
    status = 400 if malformed else 422
    return problems.problem_response(problems.ProblemError(status, detail, errors=errors), request)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """An unknown path or a wrong method, in the shape of the API the caller was using:
    OpenAI's error object on /v1/, Ollama's ``{"error": ...}`` on its /api/ paths,
    problem+json elsewhere."""
    assert isinstance(exc, StarletteHTTPException)
    path = request.url.path
    headers = dict(exc.headers or {}) or None
    if exc.status_code in (404, 405):
        message = f"{exc.detail}: {request.method} {path}"
    else:
        message = str(exc.detail)
    api = _api_of(path)
    if api == "anthropic":
        return anthropic_api.error_response(exc.status_code, message, headers)
    if api == "openai":
        body = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return openai_api.error_response(exc.status_code, body, headers)
    if api == "ollama":
        return ollama_api.error_response(exc.status_code, message, headers)
    return await problems.on_http_error(request, exc)


def _api_of(path: str) -> str:
    """Whose error shape a path gets: "anthropic" (/v1/messages), "openai" (the rest of
    /v1/), "ollama" (/api/ outside the seed's REST API) or "rest" (problem+json)."""
    if path == anthropic_api.PATH or path.startswith(anthropic_api.PATH + "/"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/api/") and not path.startswith(rest.PREFIX):
        return "ollama"
    return "rest"


class JsonBodies:
    """Reads every request body of the JSON APIs as JSON, whatever its Content-Type says.

    Ollama decodes bodies as JSON without looking at the header, and its documentation's
    examples (``curl http://host:11434/api/generate -d '{...}'``) send curl's default
    ``application/x-www-form-urlencoded``; FastAPI would parse that as a form and answer
    "Input should be a valid dictionary". None of the gateway's APIs takes a form, so on
    ``/api/`` (Ollama's and the seed's REST API) and ``/v1/`` (OpenAI's) a body that is not
    declared JSON is declared JSON: bad JSON then gets the usual clear 400.
    """

    PREFIXES = ("/api/", "/v1/")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.PREFIXES):
            headers = scope["headers"]
            declared = next((v for k, v in headers if k == b"content-type"), b"")
            media = declared.split(b";", 1)[0].strip().lower()
            if media != b"application/json" and not media.endswith(b"+json"):
                kept = [(k, v) for k, v in headers if k != b"content-type"]
                # In place, not a copy: the router records the matched route in this scope,
                # where the metrics middleware outside reads it (a copy left every such
                # request labelled route="unmatched").
                scope["headers"] = [*kept, (b"content-type", b"application/json")]
        await self.app(scope, receive, send)


class HeadAsGet:
    """Answers HEAD as the GET of the same path without its body, as HTTP asks of every
    GET route (Ollama's clients probe ``HEAD /api/version`` and ``HEAD /api/tags``);
    FastAPI routes answer only the methods they declare."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:  # what the router matched, for the metrics outside
                scope["route"] = as_get["route"]


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or as they stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        seen = 0
        too_large = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def unless_refused(message: Message) -> None:
            # FastAPI answers a body it failed to read with 400; ours is the real reason.
            if not too_large:
                await send(message)

        try:
            await self.app(scope, limited, unless_refused)
        except _TooLarge:
            pass
        if too_large:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = problems.ProblemError(413, f"request body is larger than {self.max_bytes} bytes")
        await problems.problem_response(problem)(scope, receive, send)


class _TooLarge(Exception):
    pass
