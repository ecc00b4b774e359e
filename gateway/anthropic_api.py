"""Anthropic's Messages API (``POST /v1/messages``) on the cluster, as Ollama serves it.

Tools built on it (Claude Code, the Anthropic SDKs) then run on the mesh's models: point
``ANTHROPIC_BASE_URL`` at the gateway. A request becomes one ``InferenceService.Chat``:
``system`` a system message, text and base64 image blocks the message's content and
images, ``tool_use`` blocks the assistant's tool calls, ``tool_result`` blocks "tool"
messages (named after the call they answer), ``max_tokens`` / ``temperature`` /
``top_p`` / ``top_k`` / ``stop_sequences`` Ollama's options, ``thinking`` Ollama's think.
The answer comes back as content blocks (``thinking``, ``text``, ``tool_use``) with
``stop_reason`` and ``usage``, whole or as Anthropic's server-sent events.

``tool_choice`` is honoured around Ollama, which has none (``hive.tool_calls.ToolChoice``):
``none`` offers the model no tools, ``any`` / ``tool`` demand a call (to the named tool,
the only one offered) and ask once more when the answer has none, else a 502;
``disable_parallel_tool_use`` keeps the answer's first call.

Not supported, as in Ollama: prompt caching (``cache_control`` is ignored), image URLs,
documents and batches; ``/v1/messages/count_tokens`` answers an estimate. The API key
(``x-api-key``) is the caller's bearer token when the mesh checks tokens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway import inference
from gateway.bodies import CHECKED_BODY
from gateway.problems import ApiError
from gateway.upstream import Upstream
from hive.limits import MAX_CONTEXT_TOKENS, MAX_TOP_K
from hive.tool_calls import Mode, ToolChoice, tool_call
from hive.v1 import common_pb2, inference_pb2

PATH = "/v1/messages"


class AnthropicError(ApiError):
    """Anthropic's error: ``{"type": "error", "error": {"type", "message"}}``, its type
    ``problems.REFUSALS``' Anthropic column."""

    def body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.refusal.anthropic, "message": self.message}}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = AnthropicError(status, message).body()
    return JSONResponse(body, status_code=status, headers=headers)


class ImageSource(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    media_type: str | None = None
    data: str | None = None


class Block(BaseModel):
    """A content block; which fields it has depends on ``type``."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    source: ImageSource | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[Block] | None = None
    thinking: str | None = None


class MessageParam(BaseModel):
    model_config = ConfigDict(extra="allow")

    # Claude Code also sends "system" turns among the messages.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=256)]
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ThinkingConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    effort: str | None = None


class MessagesRequest(BaseModel):
    # metadata, service_tier and other fields are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    # Counts within Ollama's bounds (hive.limits), as the coordinator checks them.
    max_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)]
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    system: str | list[Block] | None = None
    stream: bool = False
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0, le=MAX_TOP_K)] | None = None
    stop_sequences: list[str] | None = None
    tools: list[Tool] | None = None
    # {"type": "auto" | "any" | "tool" | "none", ...} (``tool_choice``).
    tool_choice: dict[str, Any] | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None

    def think(self) -> str:
        """Ollama's think for this request: ``thinking`` enabled or disabled, else the
        ``output_config.effort`` level (as Ollama reads them); "" for the model's default."""
        if self.thinking is not None and self.thinking.type == "enabled":
            return "true"
        if self.thinking is not None and self.thinking.type == "disabled":
            return "false"
        effort = (self.output_config.effort or "").strip().lower() if self.output_config else ""
        return _EFFORT.get(effort, "")

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_predict": self.max_tokens}
        for ours, theirs in (
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("top_k", "top_k"),
        ):
            value = getattr(self, ours)
            if value is not None:
                out[theirs] = value
        if self.stop_sequences:
            out["stop"] = self.stop_sequences
        return out


# output_config.effort as Ollama's think levels.
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _text(blocks: str | list[Block] | None) -> str:
    if blocks is None:
        return ""
    if isinstance(blocks, str):
        return blocks
    return "".join(b.text or "" for b in blocks if b.type == "text")


def _images(blocks: list[Block], where: str) -> list[str]:
    images = []
    for b in blocks:
        if b.type != "image":
            continue
        if b.source is None or b.source.type != "base64" or not b.source.data:
            raise AnthropicError(400, f"{where}: only base64 images are supported (not image URLs)")
        images.append(b.source.data)
    return images


class CountTokensRequest(MessagesRequest):
    """Anthropic's /v1/messages/count_tokens body: a Messages request without max_tokens."""

    max_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)] = 1


def estimate_tokens(messages: Sequence[common_pb2.ChatMessage], tools: Sequence[str]) -> int:
    """An estimate of a prompt's tokens: a token for every 4 characters of its messages and
    tools' JSON (what BPE tokenizers of Llama, Qwen and Mistral average on English and code;
    Ollama has no tokenize endpoint to ask). At least 1."""
    return max(1, (sum(len(m.content) for m in messages) + sum(map(len, tools))) // 4)


def chat_messages(body: MessagesRequest) -> list[common_pb2.ChatMessage]:
    """The request's conversation as the contract's chat messages (Ollama's conversion)."""
    out = []
    if system := _text(body.system):
        out.append(common_pb2.ChatMessage(role="system", content=system))
    names: dict[str, str] = {}
    for i, m in enumerate(body.messages):
        if isinstance(m.content, str):
            out.append(common_pb2.ChatMessage(role=m.role, content=m.content))
            continue
        calls = []
        for b in m.content:
            if b.type == "tool_use":
                if not b.id or not b.name:
                    raise AnthropicError(
                        400, f"messages.{i}: a tool_use block needs an id and a name"
                    )
                names[b.id] = b.name
                calls.append(tool_call(b.name, b.input or {}))
        results = [
            common_pb2.ChatMessage(
                role="tool",
                content=_text(b.content),
                tool_name=names.get(b.tool_use_id or "", ""),
                images=_images(b.content, f"messages.{i}") if isinstance(b.content, list) else (),
            )
            for b in m.content
            if b.type == "tool_result"
        ]
        text, images = _text(m.content), _images(m.content, f"messages.{i}")
        said = (
            [common_pb2.ChatMessage(role=m.role, content=text, tool_calls=calls, images=images)]
            if text or images or calls
            else []
        )
        # A user turn answers the tool calls before it says anything new.
        out.extend([*results, *said] if m.role == "user" else [*said, *results])
    return out


# The fields each kind of Anthropic tool_choice takes besides its type.
_CHOICE_FIELDS = {
    "auto": {"disable_parallel_tool_use"},
    "any": {"disable_parallel_tool_use"},
    "tool": {"name", "disable_parallel_tool_use"},
    "none": set(),
}


def tool_choice(body: MessagesRequest) -> ToolChoice:
    """The request's ``tool_choice`` as a ToolChoice over its tools: ``auto`` (the
    default), ``any`` (a call to any tool), ``tool`` (a call to the one ``name``d),
    ``none``; ``disable_parallel_tool_use`` at most one call. A 400 naming the field for
    a value that cannot be honoured (an unknown kind or field, a tool not in ``tools``,
    a call demanded of a request without tools)."""
    value = body.tool_choice
    if value is None:
        return ToolChoice()
    said = json.dumps(value, separators=(",", ":"))
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in _CHOICE_FIELDS:
        raise AnthropicError(
            400, f"tool_choice.type: {said} is not one of 'auto', 'any', 'tool', 'none'"
        )
    extra = sorted(set(value) - {"type"} - _CHOICE_FIELDS[kind])
    if extra:
        raise AnthropicError(
            400, f"tool_choice.{extra[0]}: not a field of a '{kind}' tool_choice ({said})"
        )
    single = value.get("disable_parallel_tool_use", False)
    if not isinstance(single, bool):
        raise AnthropicError(400, "tool_choice.disable_parallel_tool_use: must be a boolean")
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise AnthropicError(400, "tool_choice.name: a 'tool' tool_choice names its tool")
        choice = ToolChoice("required", (name,), single, said)
    else:
        mode: Mode = "required" if kind == "any" else "none" if kind == "none" else "auto"
        choice = ToolChoice(mode, single=single, said=said)
    if problem := choice.problem([t.name for t in body.tools or ()]):
        raise AnthropicError(400, f"tool_choice: {problem}")
    return choice


def _stop_reason(result: common_pb2.TaskResult, called: bool) -> str:
    if called:
        return "tool_use"
    return "max_tokens" if result.done_reason == "length" else "end_turn"


def _usage(result: common_pb2.TaskResult) -> dict[str, int]:
    return {
        "input_tokens": result.stats.prompt_eval_count,
        "output_tokens": result.stats.eval_count,
    }


def _tool_use(ident: str, index: int, call: common_pb2.ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{ident[-16:]}_{index}",
        "name": call.name,
        "input": inference.tool_arguments(call),
    }


class _Blocks:
    """Anthropic's streamed content blocks: each opened, filled with deltas, closed; a
    thinking block, then a text block, then one block per tool call."""

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self.index = 0
        self.open: str | None = None
        self.calls = 0

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        self.index += 1
        return [inference.sse_event({"type": "content_block_stop", "index": self.index - 1})]

    def _delta(self, kind: str, block: dict[str, Any], delta: dict[str, Any]) -> list[bytes]:
        out = []
        if self.open != kind:
            out += self._close()
            self.open = kind
            start = {"type": "content_block_start", "index": self.index, "content_block": block}
            out.append(inference.sse_event(start))
        out.append(
            inference.sse_event(
                {"type": "content_block_delta", "index": self.index, "delta": delta},
            )
        )
        return out

    def piece(self, piece: inference.Piece) -> list[bytes]:
        out = []
        if piece.thinking:
            thinking = {"type": "thinking", "thinking": "", "signature": ""}
            out += self._delta(
                "thinking", thinking, {"type": "thinking_delta", "thinking": piece.thinking}
            )
        if piece.text:
            text = {"type": "text", "text": ""}
            out += self._delta("text", text, {"type": "text_delta", "text": piece.text})
        for call in piece.tool_calls:
            block = _tool_use(self.ident, self.calls, call) | {"input": {}}
            arguments = json.dumps(inference.tool_arguments(call))
            out += self._close()
            out += self._delta(
                "tool_use", block, {"type": "input_json_delta", "partial_json": arguments}
            )
            out += self._close()
            self.calls += 1
        return out

    def end(self) -> list[bytes]:
        return self._close()


def router(upstream: Upstream) -> APIRouter:
    api = APIRouter(tags=["anthropic"], dependencies=[CHECKED_BODY])

    async def refusal(err: grpc.aio.AioRpcError, model: str) -> AnthropicError:
        return await inference.refusal(AnthropicError, upstream, err, model)

    async def events(
        model: str, generation: inference.Generation, ident: str, estimate: int
    ) -> AsyncIterator[bytes]:
        """The answer as Anthropic's events; ``estimate``: the prompt's tokens, until the
        node counts them."""
        start: dict[str, Any] = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": estimate, "output_tokens": 0},
        }
        yield inference.sse_event({"type": "message_start", "message": start})
        yield inference.sse_event({"type": "ping"})
        blocks = _Blocks(ident)
        try:
            async for piece in generation.pieces():
                if piece.result is None:
                    for event in blocks.piece(piece):
                        yield event
                    continue
                for event in blocks.end():
                    yield event
                delta = {
                    "stop_reason": _stop_reason(piece.result, blocks.calls > 0),
                    "stop_sequence": None,
                }
                yield inference.sse_event(
                    {"type": "message_delta", "delta": delta, "usage": _usage(piece.result)},
                )
                yield inference.sse_event({"type": "message_stop"})
        except grpc.aio.AioRpcError as err:
            yield inference.sse_event(AnthropicError.from_rpc(err).body())

    @api.post(PATH + "/count_tokens")
    async def count_tokens(body: Annotated[CountTokensRequest, Body()]) -> dict[str, int]:
        """An estimate of the request's input tokens (Anthropic's count_tokens): 4
        characters a token (``estimate_tokens``), for a model the cluster has."""
        try:
            if await inference.model_is_unknown_now(upstream, body.model):
                raise AnthropicError.model_not_found(body.model)
        except grpc.aio.AioRpcError as err:
            raise await refusal(err, body.model) from err
        tools = [
            inference.function_tool(t.name, t.description, t.input_schema) for t in body.tools or ()
        ]
        offered = tool_choice(body).offered(tools)
        return {"input_tokens": estimate_tokens(chat_messages(body), offered)}

    @api.post(PATH, response_model=None)
    async def messages(
        body: Annotated[MessagesRequest, Body()],
    ) -> StreamingResponse | dict[str, Any]:
        """A message from a model on the best node for it (Anthropic's /v1/messages)."""
        choice = tool_choice(body)
        request = inference_pb2.ChatRequest(
            model=body.model,
            messages=chat_messages(body),
            tools=[
                inference.function_tool(t.name, t.description, t.input_schema)
                for t in body.tools or ()
            ],
            whole=not body.stream,
        )
        think = body.think()
        # Claude Code asks every model to think; Ollama lets a model that cannot think
        # answer without it on this API rather than refuse, and so does the gateway.
        if think not in ("", "false") and not await inference.thinks(upstream, body.model):
            think = ""
        request.think = think
        request.options.update(body.options())
        try:
            generation = await inference.chat(upstream, request, choice)
        except grpc.aio.AioRpcError as err:
            raise await refusal(err, body.model) from err
        except inference.ToolChoiceUnmet as err:
            # The model would not make the call: the gateway's upstream failed (502).
            raise AnthropicError(502, err.message) from err
        ident = "msg_" + (generation.task_id or uuid.uuid4().hex).replace("-", "")
        if body.stream:
            estimate = estimate_tokens(request.messages, request.tools)
            return StreamingResponse(
                events(body.model, generation, ident, estimate), media_type="text/event-stream"
            )
        try:
            got = await inference.collect(generation)
        except grpc.aio.AioRpcError as err:
            raise await refusal(err, body.model) from err
        content: list[dict[str, Any]] = []
        if got.thinking:
            content.append({"type": "thinking", "thinking": got.thinking, "signature": ""})
        if got.text:
            content.append({"type": "text", "text": got.text})
        content += [_tool_use(ident, i, c) for i, c in enumerate(got.tool_calls)]
        return {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": body.model,
            "content": content,
            "stop_reason": _stop_reason(got.result, bool(got.tool_calls)),
            "stop_sequence": None,
            "usage": _usage(got.result),
        }

    return api
