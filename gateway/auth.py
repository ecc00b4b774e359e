"""The caller's API token, carried from HTTP to the coordinator.

The gateway does not judge tokens: it forwards the caller's bearer token on every gRPC
call it makes for that caller, and the coordinator (which holds the hashed tokens,
their scopes and rate limits) accepts or refuses; its UNAUTHENTICATED, PERMISSION_DENIED
and RESOURCE_EXHAUSTED come back as 401, 403 and 429. One place decides, revocation
takes effect on the next call, and the gateway holds no secrets but its own.

Where the token is read from, first match wins:

* ``Authorization: Bearer <token>`` (every HTTP route and WebSocket clients that can set
  headers), or ``x-api-key: <token>`` (what Anthropic's clients send);
* for browsers' WebSockets, which cannot: the subprotocol list
  ``Sec-WebSocket-Protocol: hive.v1, bearer.<token>`` (the server answers ``hive.v1``),
  or the ``token`` query parameter (``/api/distributed/ws?token=<token>``; it can end up
  in proxy logs, so prefer the subprotocol).

Health endpoints stay open: they call the coordinator with the gateway's own service
token (``--token-file``), never the caller's. ``/metrics`` is open unless the gateway runs
with ``--protect-metrics``; then it needs a token the coordinator accepts for reading.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

# The token of the request being served (None: the caller sent none).
caller_token: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hive_caller_token", default=None
)
WS_SUBPROTOCOL = "hive.v1"
WS_BEARER_PREFIX = "bearer."


def token_from_scope(scope: Scope) -> str | None:
    headers: dict[bytes, bytes] = {k.lower(): v for k, v in scope.get("headers", ())}
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # Anthropic's clients send their API key so (Claude Code with ANTHROPIC_API_KEY).
    if api_key := headers.get(b"x-api-key", b"").decode("latin-1").strip():
        return api_key
    if scope["type"] == "websocket":
        protocols = headers.get(b"sec-websocket-protocol", b"").decode("latin-1")
        for protocol in (p.strip() for p in protocols.split(",")):
            if protocol.startswith(WS_BEARER_PREFIX) and len(protocol) > len(WS_BEARER_PREFIX):
                return protocol[len(WS_BEARER_PREFIX) :]
        raw: bytes = scope.get("query_string", b"")
        query = parse_qs(raw.decode("latin-1"))
        if query.get("token"):
            return query["token"][0]
    return None


def websocket_subprotocol(scope: Scope) -> str | None:
    """The subprotocol to accept: ``hive.v1`` when the client offered it (browsers fail
    a handshake whose answer names none of the protocols they offered)."""
    offered = dict(scope.get("headers", ())).get(b"sec-websocket-protocol", b"")
    protocols = [p.strip() for p in offered.decode("latin-1").split(",") if p.strip()]
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in protocols else None


class CallerToken:
    """ASGI middleware: sets ``caller_token`` for the request (or WebSocket) it serves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reset = caller_token.set(token_from_scope(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            caller_token.reset(reset)


@contextlib.contextmanager
def acting_as(token: str | None) -> Iterator[None]:
    """Make the calls inside use ``token`` (the gateway's own, for health checks)."""
    reset = caller_token.set(token)
    try:
        yield
    finally:
        caller_token.reset(reset)
