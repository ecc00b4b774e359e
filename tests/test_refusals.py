"""The one table of what each API answers for a gRPC status (``gateway.problems.REFUSALS``)
and the error classes built from it: every status has a row, and for a few statuses each
API's exact status, body and headers are pinned here, so a change to one API's mapping
shows. Unit tests: no cluster."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from fastapi.responses import JSONResponse

from gateway import anthropic_api, ollama_api, openai_api
from gateway.anthropic_api import AnthropicError
from gateway.ollama_api import OllamaError
from gateway.openai_api import OpenAIError
from gateway.problems import REFUSALS, ProblemError, refusal_of_status

C = grpc.StatusCode


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def answered(response: JSONResponse) -> tuple[int, Any, str | None]:
    """Status, JSON body and Retry-After of a response."""
    return (
        response.status_code,
        json.loads(bytes(response.body)),
        response.headers.get("retry-after"),
    )


def test_every_grpc_status_has_a_row() -> None:
    assert set(REFUSALS) == set(grpc.StatusCode)


def test_a_status_the_gateway_answers_itself_reads_as_the_refusal_of_that_status() -> None:
    # An error with no gRPC status behind it (a 400 the gateway finds, a 502 of its own)
    # takes the same type names as the coordinator's refusal with that HTTP status.
    for code, row in REFUSALS.items():
        if code != C.OK:
            mine = refusal_of_status(row.status)
            assert (mine.openai, mine.anthropic) == (row.openai, row.anthropic), code


def test_only_try_again_later_says_when() -> None:
    assert {code for code, row in REFUSALS.items() if row.retry} == {
        C.RESOURCE_EXHAUSTED,
        C.UNAVAILABLE,
    }


# code, details -> (status, Ollama's body, OpenAI's error, Anthropic's error type, Retry-After)
CASES = [
    (C.INVALID_ARGUMENT, "bad", 400, "invalid_request_error", "invalid_request_error", None),
    (C.NOT_FOUND, "no workflow", 404, "invalid_request_error", "not_found_error", None),
    (C.PERMISSION_DENIED, "no", 403, "invalid_request_error", "permission_error", None),
    (C.UNAUTHENTICATED, "token", 401, "invalid_request_error", "authentication_error", None),
    (C.FAILED_PRECONDITION, "done", 409, "invalid_request_error", "invalid_request_error", None),
    (C.RESOURCE_EXHAUSTED, "queue full", 429, "rate_limit_error", "rate_limit_error", "1"),
    (C.UNAVAILABLE, "no capacity", 503, "server_error", "overloaded_error", "1"),
    (C.INTERNAL, "boom", 502, "server_error", "api_error", None),
    (C.UNIMPLEMENTED, "", 501, "server_error", "api_error", None),
]


@pytest.mark.parametrize(("code", "details", "status", "openai", "anthropic", "retry"), CASES)
def test_each_api_answers_a_refusal_in_its_own_shape(
    code: grpc.StatusCode,
    details: str,
    status: int,
    openai: str,
    anthropic: str,
    retry: str | None,
) -> None:
    err = rpc_error(code, details)
    message = details or code.name
    assert answered(OllamaError.from_rpc(err).response()) == (status, {"error": message}, retry)
    assert answered(OpenAIError.from_rpc(err).response()) == (
        status,
        {"error": {"message": message, "type": openai, "param": None, "code": code.name}},
        retry,
    )
    assert answered(AnthropicError.from_rpc(err).response()) == (
        status,
        {"type": "error", "error": {"type": anthropic, "message": message}},
        retry,
    )
    rest = ProblemError.from_rpc(err)
    assert rest.status == status and rest.grpc_status == code.name
    assert (rest.headers or {}).get("Retry-After") == retry


def test_a_model_no_node_has_is_each_apis_404() -> None:
    assert answered(OllamaError.model_not_found("m:1").response()) == (
        404,
        {"error": "model 'm:1' not found"},
        None,
    )
    assert answered(OpenAIError.model_not_found("m:1").response()) == (
        404,
        {
            "error": {
                "message": "The model `m:1` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        },
        None,
    )
    assert answered(AnthropicError.model_not_found("m:1").response()) == (
        404,
        {"type": "error", "error": {"type": "not_found_error", "message": "model 'm:1' not found"}},
        None,
    )


def test_errors_the_gateway_makes_take_the_type_of_their_status() -> None:
    assert OpenAIError(400, "x", param="messages").body()["error"] == {
        "message": "x",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    assert OpenAIError(502, "x", type="server_error", code="tool_choice_unmet").type == (
        "server_error"
    )
    assert [AnthropicError(s, "x").body()["error"]["type"] for s in (400, 405, 413, 502, 529)] == [
        "invalid_request_error",
        "invalid_request_error",
        "request_too_large",
        "api_error",
        "overloaded_error",
    ]
    # The handlers for invalid input and unknown paths (gateway.app) answer the same way.
    assert answered(anthropic_api.error_response(404, "gone")) == (
        404,
        {"type": "error", "error": {"type": "not_found_error", "message": "gone"}},
        None,
    )
    assert answered(ollama_api.error_response(405, "no", {"Allow": "GET"}))[:2] == (
        405,
        {"error": "no"},
    )
    body = {"message": "m", "type": "invalid_request_error", "param": None, "code": None}
    assert answered(openai_api.error_response(400, body))[1] == {"error": body}
