"""What an inference request must be before it is routed: its model's name, its sizes,
its options and durations within what Ollama takes (``hive.limits``), its tools and tool
calls JSON objects with finite numbers, its think and top_logprobs values. Each check
aborts the call with INVALID_ARGUMENT naming what is wrong; nothing reaches a node."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import struct_pb2

from hive import limits
from hive.limits import MAX_TOP_LOGPROBS
from hive.models import tagged
from hive.v1 import inference_pb2

MAX_PROMPT_CHARS = 1_000_000

# Inputs one Embed request may carry: 512 vectors of a 5,120-dimension model are 10 MiB,
# inside the 16 MiB gRPC message limit on every hop.
MAX_EMBED_INPUTS = 512


async def check_size(size: int, what: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Refuse a request whose text (``what``, e.g. "prompt is") is over the limit."""
    if size > MAX_PROMPT_CHARS:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{what} {size} characters; the limit is {MAX_PROMPT_CHARS}",
        )


THINK_VALUES = ("", "true", "false", "low", "medium", "high")


async def check_top_logprobs(top: int, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if top > MAX_TOP_LOGPROBS:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, not {top}",
        )


async def check_limits(
    keep_alive: str, options: struct_pb2.Struct, context: grpc.aio.ServicerContext[Any, Any]
) -> str:
    """``keep_alive`` as a Go duration every Ollama takes, once it and the options' counts
    are within Ollama's bounds (``hive.limits``), as the gateway checks them: refused here,
    before routing, so that no client of the API sends a node what breaks it."""
    try:
        limits.check_options(dict(options.items()))
        return limits.keep_alive(keep_alive)
    except limits.OutOfRange as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


async def check_think(think: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if think not in THINK_VALUES:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"think {think!r} is not one of true, false, low, medium, high",
        )


def tools_problem(request: inference_pb2.ChatRequest) -> str:
    """What is wrong with a chat's tools and tool calls, or "" (each must be a JSON object:
    Ollama would refuse the whole request on the node, after routing; and its numbers
    finite doubles, or the node's JSON encoder refuses them, three attempts running)."""
    for i, tool in enumerate(request.tools):
        value = _json(tool)
        if not isinstance(value, dict):
            return f"tools[{i}] is not a JSON object: {tool[:80]!r}"
        if limits.unrepresentable_at(value) is not None:
            return f"tools[{i}] {limits.NOT_FINITE}"
    for i, message in enumerate(request.messages):
        for j, call in enumerate(message.tool_calls):
            arguments = _json(call.arguments_json or "{}")
            if not call.name or not isinstance(arguments, dict):
                return f"messages[{i}].tool_calls[{j}] needs a name and a JSON object of arguments"
            if limits.unrepresentable_at(arguments) is not None:
                return f"messages[{i}].tool_calls[{j}].arguments {limits.NOT_FINITE}"
    return ""


def _json(text: str) -> object:
    """``text`` decoded (NaN and Infinity read as floats, for ``unrepresentable_at`` to
    name); None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


async def check_model(model: str, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The model's name as the nodes report it: a name without a tag means ``:latest``,
    as in Ollama (``nomic-embed-text`` is ``nomic-embed-text:latest``)."""
    if not model or len(model) > 256 or any(c.isspace() for c in model):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"model {model!r} is not a model name (e.g. 'llama3.1:8b')",
        )
    return tagged(model)
