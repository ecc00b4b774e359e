"""Errors as RFC 9457 problem details, and the one table of what each API answers for
a gRPC status (``REFUSALS``).

Every error the REST API returns has one JSON shape (``application/problem+json``):
``type``, ``title``, ``status``, ``detail``, plus ``grpc_status`` when the coordinator
answered with an error, and ``errors`` (field and reason) for invalid input. The
Ollama-, OpenAI- and Anthropic-compatible routes answer in their own clients' error
shapes (``ApiError``'s subclasses in ``ollama_api``, ``openai_api`` and
``anthropic_api``), each built from the same table: the HTTP status, the error type names
of each API, and ``Retry-After`` where the caller may try again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Self

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Refusal:
    """How every API the gateway serves answers one gRPC status.

    ``status``: the HTTP status (the REST API's problem+json, and Ollama's
    ``{"error": message}``, carry nothing more); ``openai``: the ``type`` of OpenAI's error
    object (its ``code`` is the gRPC status name); ``anthropic``: the ``type`` of
    Anthropic's; ``retry``: the caller may try again later, so the answer says when
    (``Retry-After``)."""

    status: int
    openai: str
    anthropic: str
    retry: bool = False


_INVALID = "invalid_request_error"

# gRPC status -> HTTP status. Follows Google's API design guide, except:
# FAILED_PRECONDITION is 409 (the resource's state conflicts with the request, e.g.
# cancelling a finished workflow), and errors inside the coordinator (UNKNOWN,
# INTERNAL, DATA_LOSS) are 502: the gateway itself did not fail, its upstream did.
# The type names are each API's own: OpenAI's are rate_limit_error (429), server_error
# (5xx) and invalid_request_error for any other 4xx (an unknown model too, with code
# model_not_found); Anthropic's documented ones, invalid_request_error for a 4xx it names
# no type for, api_error for a 5xx, overloaded_error for "try again later" (503).
REFUSALS: dict[grpc.StatusCode, Refusal] = {
    grpc.StatusCode.OK: Refusal(200, _INVALID, "api_error"),
    grpc.StatusCode.CANCELLED: Refusal(499, _INVALID, _INVALID),
    grpc.StatusCode.UNKNOWN: Refusal(502, "server_error", "api_error"),
    grpc.StatusCode.INVALID_ARGUMENT: Refusal(400, _INVALID, _INVALID),
    grpc.StatusCode.DEADLINE_EXCEEDED: Refusal(504, "server_error", "api_error"),
    grpc.StatusCode.NOT_FOUND: Refusal(404, _INVALID, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: Refusal(409, _INVALID, _INVALID),
    grpc.StatusCode.PERMISSION_DENIED: Refusal(403, _INVALID, "permission_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: Refusal(
        429, "rate_limit_error", "rate_limit_error", retry=True
    ),
    grpc.StatusCode.FAILED_PRECONDITION: Refusal(409, _INVALID, _INVALID),
    grpc.StatusCode.ABORTED: Refusal(409, _INVALID, _INVALID),
    grpc.StatusCode.OUT_OF_RANGE: Refusal(400, _INVALID, _INVALID),
    grpc.StatusCode.UNIMPLEMENTED: Refusal(501, "server_error", "api_error"),
    grpc.StatusCode.INTERNAL: Refusal(502, "server_error", "api_error"),
    grpc.StatusCode.UNAVAILABLE: Refusal(503, "server_error", "overloaded_error", retry=True),
    grpc.StatusCode.DATA_LOSS: Refusal(502, "server_error", "api_error"),
    grpc.StatusCode.UNAUTHENTICATED: Refusal(401, _INVALID, "authentication_error"),
}

# A status code the coordinator never sends (a newer grpc's) is its upstream's failure.
_UNLISTED = REFUSALS[grpc.StatusCode.UNKNOWN]

# Statuses the gateway answers itself, with no gRPC status behind them (a body too large,
# a wrong method), take the row of their HTTP status; those no row has, these; any other
# 4xx is the request's fault and any other 5xx the server's, as both APIs document.
_BY_STATUS: dict[int, Refusal] = {
    413: Refusal(413, _INVALID, "request_too_large"),
    529: Refusal(529, "server_error", "overloaded_error"),
} | {r.status: r for r in REFUSALS.values() if r.status != 200}

RETRY_AFTER_SECONDS = 1


def refusal(code: grpc.StatusCode) -> Refusal:
    """The row for a gRPC status code."""
    return REFUSALS.get(code, _UNLISTED)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code."""
    return refusal(code).status


def refusal_of_status(status: int) -> Refusal:
    """The row for an HTTP status the gateway answers with no gRPC status behind it."""
    found = _BY_STATUS.get(status)
    if found is not None:
        return found
    if status >= 500:
        return Refusal(status, "server_error", "api_error")
    return Refusal(status, _INVALID, _INVALID)


def retry_headers(code: grpc.StatusCode | None) -> dict[str, str] | None:
    """``Retry-After`` for a refusal the caller may try again later, else none."""
    if code is not None and refusal(code).retry:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return None


def title(status: int) -> str:
    if status == 499:
        return "Client Closed Request"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiError(Exception):
    """A refusal on one of the compatible APIs (Ollama's, OpenAI's, Anthropic's), which
    answers in that API's own error shape.

    ``grpc_code``: the coordinator's gRPC status when it refused, which picks the row of
    ``REFUSALS`` (``from_rpc``); errors the gateway makes itself take the row of their
    HTTP status."""

    def __init__(
        self, status: int, message: str, *, grpc_code: grpc.StatusCode | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.grpc_code = grpc_code

    @classmethod
    def from_rpc(cls, err: grpc.aio.AioRpcError) -> Self:
        """The coordinator's refusal in this API's shape."""
        code = err.code()
        return cls(http_status(code), err.details() or code.name, grpc_code=code)

    @classmethod
    def model_not_found(cls, model: str) -> Self:
        """No node has ``model`` (404), in the words of this API's own server."""
        return cls(404, f"model '{model}' not found")

    @property
    def refusal(self) -> Refusal:
        if self.grpc_code is None:
            return refusal_of_status(self.status)
        return refusal(self.grpc_code)

    @property
    def headers(self) -> dict[str, str] | None:
        return retry_headers(self.grpc_code)

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content=self.body(), headers=self.headers)


class FieldError(BaseModel):
    """One invalid input: where it is and why it was refused."""

    field: str = Field(description="Dotted location, e.g. 'body.priority' or 'query.page_size'.")
    reason: str
    type: str = Field(description="Machine-readable error type, e.g. 'missing', 'literal_error'.")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    instance: str | None = None
    grpc_status: str | None = Field(
        default=None, description="The coordinator's gRPC status name, when it answered with one."
    )
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise from a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        grpc_status: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.grpc_status = grpc_status
        self.errors = list(errors) if errors is not None else None
        self.headers = headers

    @classmethod
    def from_rpc(cls, err: grpc.aio.AioRpcError) -> ProblemError:
        code = err.code()
        detail = err.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE:
            detail = f"coordinator unavailable: {detail}"
        return cls(http_status(code), detail, grpc_status=code.name, headers=retry_headers(code))


# Documented on every REST route, so the OpenAPI schema names the error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": title(status)}
    for status in (400, 422, 503)
}


def problem_response(problem: ProblemError, request: Request | None = None) -> JSONResponse:
    body = Problem(
        title=title(problem.status),
        status=problem.status,
        detail=problem.detail,
        instance=request.url.path if request is not None else None,
        grpc_status=problem.grpc_status,
        errors=problem.errors,
    )
    return JSONResponse(
        status_code=problem.status,
        content=body.model_dump(exclude_none=True),
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for error in exc.errors():
        parts = tuple(error.get("loc", ()))
        reason = str(error.get("msg", ""))
        if error["type"] == "json_invalid":
            # FastAPI puts the character position where a field would be ("body.30").
            at = parts[1] if len(parts) > 1 else "?"
            why = (error.get("ctx") or {}).get("error", "")
            parts = ("body",)
            reason = f"malformed JSON at character {at}" + (f": {why}" if why else "")
        loc = ".".join(str(part) for part in parts)
        out.append(FieldError(field=loc, reason=reason, type=error["type"]))
    return out


def validation_detail(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.reason}" for e in errors) or "invalid request"


def install(app: FastAPI) -> None:
    """Answer every error on the REST routes as problem+json.

    Routes of the Ollama and OpenAI APIs raise their own exception types, handled in
    their modules; invalid input and unknown paths are answered by ``gateway.app``'s
    handlers, which use this module's formatters on the REST API.
    """

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(exc, request)

    async def on_rpc_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, grpc.aio.AioRpcError)
        return problem_response(ProblemError.from_rpc(exc), request)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(grpc.aio.AioRpcError, on_rpc_error)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """An unknown path, a wrong method and the like, as problem+json."""
    assert isinstance(exc, StarletteHTTPException)
    problem = ProblemError(
        exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None
    )
    return problem_response(problem, request)
