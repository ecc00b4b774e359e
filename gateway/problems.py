"""Errors as RFC 9457 problem details, and the one gRPC-status -> HTTP-status mapping.

Every error the REST API returns has one JSON shape (``application/problem+json``):
``type``, ``title``, ``status``, ``detail``, plus ``grpc_status`` when the coordinator
answered with an error, and ``errors`` (field and reason) for invalid input. The
Ollama- and OpenAI-compatible routes use their own clients' error shapes, built from
the same mapping (see ``ollama_api`` and ``openai_api``).
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"

# gRPC status -> HTTP status. Follows Google's API design guide, except:
# FAILED_PRECONDITION is 409 (the resource's state conflicts with the request, e.g.
# cancelling a finished workflow), and errors inside the coordinator (UNKNOWN,
# INTERNAL, DATA_LOSS) are 502: the gateway itself did not fail, its upstream did.
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 502,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 502,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code."""
    return GRPC_TO_HTTP.get(code, 502)


def title(status: int) -> str:
    if status == 499:
        return "Client Closed Request"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiError(Exception):
    """A refusal on one of the compatible APIs (Ollama's, OpenAI's, Anthropic's), which
    answers in that API's own error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        raise NotImplementedError


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
        headers = {"Retry-After": "1"} if code in _RETRYABLE else None
        return cls(http_status(code), detail, grpc_status=code.name, headers=headers)


_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}

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
