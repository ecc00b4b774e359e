"""OpenAI-compatible API: ``/v1/chat/completions`` (SSE streaming and not),
``/v1/completions``, ``/v1/embeddings`` and ``/v1/models``, served by the cluster through
InferenceService.

``usage`` comes from the node's real token counts (Ollama's ``prompt_eval_count`` and
``eval_count``). ``tool_choice`` and ``parallel_tool_calls`` are honoured around Ollama,
which has neither (``chat_tool_choice``, ``hive.tool_calls.ToolChoice``): a call that
``"required"`` or a named function demands is checked, asked for once more when missing,
and a 502 if the model still answers without it. Errors use OpenAI's
``{"error": {"message", "type", "param", "code"}}`` shape, so the official clients raise
their usual exceptions (404 -> NotFoundError).
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, Literal, Self

import grpc
from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway import inference
from gateway.bodies import CHECKED_BODY
from gateway.problems import ApiError
from gateway.upstream import UNARY_TIMEOUT_SECONDS, Upstream
from hive.limits import MAX_CONTEXT_TOKENS, MAX_DIMENSIONS, MAX_EXACT_INTEGER, MAX_TOP_LOGPROBS
from hive.tool_calls import Mode, ToolChoice, tool_call, tool_name
from hive.v1 import common_pb2, inference_pb2

OWNER = "hive"


class OpenAIError(ApiError):
    """OpenAI's error object: ``message``, ``type`` (``problems.REFUSALS``' OpenAI column
    unless given), ``param`` and ``code`` (the gRPC status name for a refusal of the
    coordinator's)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        grpc_code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(status, message, grpc_code=grpc_code)
        self.type = type or self.refusal.openai
        self.param = param
        self.error_code = code if code is not None or grpc_code is None else grpc_code.name

    @classmethod
    def model_not_found(cls, model: str) -> Self:
        return cls(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": error | {"code": self.error_code}}


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": body}, headers=headers)


async def refusal(upstream: Upstream, err: grpc.aio.AioRpcError, model: str) -> OpenAIError:
    """The coordinator's refusal of a request for ``model``, as OpenAI's error."""
    return await inference.refusal(OpenAIError, upstream, err, model)


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str = ""
    image_url: ImageUrl | None = None

    def image(self) -> str | None:
        """The base64 of an ``image_url`` part given as a data URL (Ollama takes base64; it
        fetches no URLs, and neither does the gateway)."""
        if self.type != "image_url" or self.image_url is None:
            return None
        data = inference.data_url_base64(self.image_url.url)
        if data is None:
            raise OpenAIError(
                400, "image_url must be a data URL (data:image/...;base64,...)", param="messages"
            )
        return data


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=256)]
    # JSON text, as OpenAI sends it.
    arguments: str = "{}"


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = ""
    type: str = "function"
    function: FunctionCall


# The roles OpenAI's Chat Completions take, as Ollama's: "developer" is OpenAI's newer name
# for the system prompt, "function" its older name for a tool's result.
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    # A "tool" message: the call it answers (its tool's name is looked up from it).
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if p.type == "text")

    def images(self) -> list[str]:
        if not isinstance(self.content, list):
            return []
        return [image for p in self.content if (image := p.image()) is not None]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "text"
    json_schema: dict[str, Any] | None = None


class _Sampling(BaseModel):
    # Unknown OpenAI parameters (logit_bias, user, tools...) are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Counts within Ollama's bounds (hive.limits): an answer is never longer than a context.
    max_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    seed: Annotated[int, Field(ge=-MAX_EXACT_INTEGER, le=MAX_EXACT_INTEGER)] | None = None
    stop: str | list[str] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    n: Literal[1] = 1

    def options(self) -> dict[str, Any]:
        """Ollama options for these OpenAI parameters."""
        out: dict[str, Any] = {}
        for ours, theirs in (
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("seed", "seed"),
            ("frequency_penalty", "frequency_penalty"),
            ("presence_penalty", "presence_penalty"),
            ("max_tokens", "num_predict"),
        ):
            value = getattr(self, ours)
            if value is not None:
                out[theirs] = value
        if self.stop is not None:
            out["stop"] = [self.stop] if isinstance(self.stop, str) else self.stop
        return out


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    # Functions the model may call ({"type": "function", "function": {...}}).
    tools: list[dict[str, Any]] | None = None
    # "none", "auto", "required", a named function or allowed_tools (``chat_tool_choice``).
    tool_choice: str | dict[str, Any] | None = None
    # false: at most one tool call in the answer.
    parallel_tool_calls: bool | None = None
    # How hard a thinking model reasons (Ollama's think); its reasoning comes back apart,
    # in ``reasoning``, as Ollama's own OpenAI API sends it.
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)] | None = None
    response_format: ResponseFormat | None = None
    # Each output token's log probability (choices[].logprobs.content), and with
    # top_logprobs the likeliest tokens at each position.
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    suffix: str | None = None
    # The likeliest tokens at each position, with each output token's log probability
    # (OpenAI allows 5; Ollama's bound, 20, is the mesh's).
    logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None


class EmbeddingRequest(BaseModel):
    # ``user`` and other unknown parameters are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    # Text only: OpenAI also takes token ids, which mean nothing to another model's tokenizer.
    input: str | Annotated[list[str], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ValueError(
                "input must be text (a string or a list of strings); token ids are not supported"
            )
        return value


def _encoded(values: Sequence[float], encoding: str) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32 (what the
    official Python client asks for by default)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return list(values)


def _usage(result: common_pb2.TaskResult) -> dict[str, int]:
    prompt, completion = result.stats.prompt_eval_count, result.stats.eval_count
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# OpenAI's reasoning_effort as Ollama's think.
REASONING = {"none": "false", "minimal": "low", "low": "low", "medium": "medium", "high": "high"}


def _content_logprobs(entries: Sequence[common_pb2.TokenLogprob]) -> dict[str, Any]:
    """A chat choice's ``logprobs``: OpenAI's ``{"content": [...]}``."""
    return {"content": inference.logprobs_json(entries, openai=True)}


def _legacy_logprobs(entries: Sequence[common_pb2.TokenLogprob], offset: int) -> dict[str, Any]:
    """A legacy completion choice's ``logprobs``: parallel lists of the tokens, their log
    probabilities, the likeliest tokens at each position (the chosen one always among
    them) and each token's character offset, counted from ``offset``."""
    tokens = [e.token for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [
            {e.token: e.logprob} | {t.token: t.logprob for t in e.top_logprobs} for e in entries
        ],
        "text_offset": offsets,
    }


def tool_choice_error(why: str) -> OpenAIError:
    return OpenAIError(400, f"Invalid value for 'tool_choice': {why}", param="tool_choice")


def tool_choice_mode(value: str, said: str, single: bool) -> ToolChoice:
    """``"none"``, ``"auto"`` or ``"required"`` (both OpenAI APIs take these strings)."""
    if value not in ("none", "auto", "required"):
        raise tool_choice_error(
            f"{said} is not one of 'none', 'auto', 'required' or a tool choice object"
        )
    mode: Mode = "none" if value == "none" else "required" if value == "required" else "auto"
    return ToolChoice(mode, single=single, said=said)


def allowed_tool_choice(
    allowed: Any, said: str, single: bool, name_of: Callable[[Any], str | None]
) -> ToolChoice:
    """OpenAI's ``allowed_tools`` choice (``{"mode", "tools"}``): only those tools are
    offered; ``name_of`` reads a listed tool's function name (None: not a function)."""
    if not isinstance(allowed, dict) or allowed.get("mode") not in ("auto", "required"):
        raise tool_choice_error(f"{said}: allowed_tools needs mode 'auto' or 'required'")
    listed = allowed.get("tools")
    if not isinstance(listed, list):
        raise tool_choice_error(f"{said}: allowed_tools needs a list of tools")
    names = []
    for tool in listed:
        name = name_of(tool)
        if not name:
            raise tool_choice_error(
                f"{said}: allowed_tools may list function tools only (the mesh's models "
                "call functions; it runs no built-in or custom tools)"
            )
        names.append(name)
    mode: Mode = "required" if allowed["mode"] == "required" else "auto"
    return ToolChoice(mode, tuple(names), single, said)


def chat_tool_choice(body: ChatCompletionRequest, tools: Sequence[str]) -> ToolChoice:
    """The request's ``tool_choice`` and ``parallel_tool_calls`` as a ToolChoice over the
    request's ``tools`` (the contract's JSON text); a 400 naming the field when a value
    cannot be honoured."""
    single = body.parallel_tool_calls is False
    value = body.tool_choice
    said = json.dumps(value, separators=(",", ":"))
    if value is None:
        choice = ToolChoice(single=single)
    elif isinstance(value, str):
        choice = tool_choice_mode(value, said, single)
    elif value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise tool_choice_error(f"{said}: a function choice needs function.name")
        choice = ToolChoice("required", (name,), single, said)
    elif value.get("type") == "allowed_tools":

        def name_of(tool: Any) -> str | None:
            if not isinstance(tool, dict) or tool.get("type") != "function":
                return None
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            return name if isinstance(name, str) else None

        choice = allowed_tool_choice(value.get("allowed_tools"), said, single, name_of)
    elif value.get("type") == "custom":
        raise tool_choice_error(
            f"{said}: custom tools are not supported (the mesh's models call functions)"
        )
    else:
        raise tool_choice_error(
            f"{said} is not 'none', 'auto', 'required', a function or allowed_tools"
        )
    if problem := choice.problem([n for t in tools if (n := tool_name(t))]):
        raise tool_choice_error(problem)
    return choice


def unmet_error(err: inference.ToolChoiceUnmet) -> OpenAIError:
    """The model would not make the call ``tool_choice`` demands: the gateway's upstream
    failed to give a valid answer (502), as OpenAI answers a model's invalid output with
    a server error."""
    return OpenAIError(
        502, err.message, type="server_error", param="tool_choice", code="tool_choice_unmet"
    )


def _finish_reason(result: common_pb2.TaskResult, called: bool = False) -> str:
    if called:
        return "tool_calls"
    return "length" if result.done_reason == "length" else "stop"


def _messages(messages: list[ChatMessage]) -> list[common_pb2.ChatMessage]:
    """OpenAI messages as the contract's: a "tool" message names its tool, which OpenAI
    gives only through the id of the call it answers."""
    names = {c.id: c.function.name for m in messages for c in m.tool_calls or () if c.id}
    return [
        common_pb2.ChatMessage(
            role=ROLES[m.role],
            content=m.text(),
            tool_calls=[
                tool_call(c.function.name, c.function.arguments) for c in m.tool_calls or ()
            ],
            tool_name=names.get(m.tool_call_id or "", ""),
            images=m.images(),
        )
        for m in messages
    ]


def _tool_calls(
    ident: str, calls: list[common_pb2.ToolCall], first: int = 0
) -> list[dict[str, Any]]:
    """Tool calls in OpenAI's shape (arguments as JSON text), with ids unique in the answer."""
    return [
        {
            "index": first + i,
            "id": f"call_{ident[-12:]}_{first + i}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments_json or "{}"},
        }
        for i, c in enumerate(calls)
    ]


def sse(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def router(upstream: Upstream) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["openai"], dependencies=[CHECKED_BODY])

    async def open_chat(body: ChatCompletionRequest) -> inference.Generation:
        tools = [json.dumps(t) for t in body.tools or ()]
        choice = chat_tool_choice(body, tools)
        request = inference_pb2.ChatRequest(
            model=body.model,
            messages=_messages(body.messages),
            tools=tools,
            think=REASONING.get(body.reasoning_effort or "", ""),
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs or 0,
            whole=not body.stream,
        )
        if body.top_logprobs is not None and not body.logprobs:
            raise OpenAIError(400, "top_logprobs needs logprobs set to true", param="top_logprobs")
        options = body.options()
        if body.max_completion_tokens is not None:
            options["num_predict"] = body.max_completion_tokens
        if options:
            request.options.update(options)
        if body.response_format is not None and body.response_format.type != "text":
            schema = (body.response_format.json_schema or {}).get("schema")
            request.format = json.dumps(schema) if schema else "json"
        try:
            return await inference.chat(upstream, request, choice)
        except grpc.aio.AioRpcError as err:
            raise await refusal(upstream, err, body.model) from err
        except inference.ToolChoiceUnmet as err:
            raise unmet_error(err) from err

    async def open_completion(body: CompletionRequest) -> inference.Generation:
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise OpenAIError(400, "exactly one prompt per request is supported", param="prompt")
        request = inference_pb2.GenerateRequest(
            model=body.model,
            prompt=prompts[0],
            suffix=body.suffix or "",
            logprobs=body.logprobs is not None,
            top_logprobs=body.logprobs or 0,
            whole=not body.stream,
        )
        if options := body.options():
            request.options.update(options)
        try:
            return await inference.generate(upstream, request)
        except grpc.aio.AioRpcError as err:
            raise await refusal(upstream, err, body.model) from err

    async def stream(
        model: str,
        generation: inference.Generation,
        kind: Literal["chat.completion.chunk", "text_completion"],
        include_usage: bool,
        offset: int = 0,
    ) -> AsyncIterator[bytes]:
        """Server-sent chunks of a chat or legacy completion; ``offset``: where a legacy
        completion's text starts (the prompt's length), for its logprobs' text_offset."""
        ident = ("chatcmpl-" if kind != "text_completion" else "cmpl-") + (
            generation.task_id or uuid.uuid4().hex
        )
        created = int(time.time())
        head = {"id": ident, "object": kind, "created": created, "model": model}
        if kind == "chat.completion.chunk":
            head["system_fingerprint"] = OWNER
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            yield sse({**head, "choices": [{**first, "logprobs": None, "finish_reason": None}]})
        called = 0
        try:
            async for piece in generation.pieces():
                if piece.result is None:
                    choice: dict[str, Any] = (
                        {"index": 0, "delta": {"content": piece.text}}
                        if kind == "chat.completion.chunk"
                        else {"index": 0, "text": piece.text}
                    )
                    if piece.thinking and kind == "chat.completion.chunk":
                        choice["delta"]["reasoning"] = piece.thinking
                    if piece.tool_calls and kind == "chat.completion.chunk":
                        choice["delta"]["tool_calls"] = _tool_calls(ident, piece.tool_calls, called)
                        called += len(piece.tool_calls)
                    choice["logprobs"] = None
                    if piece.logprobs and kind == "chat.completion.chunk":
                        choice["logprobs"] = _content_logprobs(piece.logprobs)
                    elif piece.logprobs:
                        choice["logprobs"] = _legacy_logprobs(piece.logprobs, offset)
                        offset += sum(len(e.token) for e in piece.logprobs)
                    yield sse({**head, "choices": [{**choice, "finish_reason": None}]})
                    continue
                last: dict[str, Any] = (
                    {"index": 0, "delta": {}}
                    if kind == "chat.completion.chunk"
                    else {"index": 0, "text": ""}
                )
                last["logprobs"] = None
                last["finish_reason"] = _finish_reason(piece.result, called > 0)
                yield sse({**head, "choices": [last]})
                if include_usage:
                    yield sse({**head, "choices": [], "usage": _usage(piece.result)})
        except grpc.aio.AioRpcError as err:
            yield sse(OpenAIError.from_rpc(err).body())
        yield sse("[DONE]")

    async def whole(body: _Sampling, generation: inference.Generation) -> inference.Collected:
        try:
            return await inference.collect(generation)
        except grpc.aio.AioRpcError as err:
            raise await refusal(upstream, err, body.model) from err

    @api.post("/chat/completions", response_model=None)
    async def chat_completions(
        body: Annotated[ChatCompletionRequest, Body()],
    ) -> StreamingResponse | dict[str, Any]:
        """Chat completion on the best node for the model (OpenAI's /v1/chat/completions)."""
        generation = await open_chat(body)
        if body.stream:
            include = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                stream(body.model, generation, "chat.completion.chunk", include),
                media_type="text/event-stream",
            )
        got = await whole(body, generation)
        ident = "chatcmpl-" + (generation.task_id or uuid.uuid4().hex)
        message: dict[str, Any] = {"role": "assistant", "content": got.text}
        if got.thinking:
            message["reasoning"] = got.thinking
        if got.tool_calls:
            message["content"] = got.text or None
            message["tool_calls"] = [
                {k: v for k, v in c.items() if k != "index"}
                for c in _tool_calls(ident, got.tool_calls)
            ]
        return {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": OWNER,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": _content_logprobs(got.logprobs) if body.logprobs else None,
                    "finish_reason": _finish_reason(got.result, bool(got.tool_calls)),
                }
            ],
            "usage": _usage(got.result),
        }

    @api.post("/completions", response_model=None)
    async def completions(
        body: Annotated[CompletionRequest, Body()],
    ) -> StreamingResponse | dict[str, Any]:
        """Text completion on the best node for the model (OpenAI's legacy /v1/completions)."""
        generation = await open_completion(body)
        # Offsets count from the prompt's start, as OpenAI's do (one prompt, checked above).
        start = len(body.prompt if isinstance(body.prompt, str) else body.prompt[0])
        if body.stream:
            include = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                stream(body.model, generation, "text_completion", include, start),
                media_type="text/event-stream",
            )
        got = await whole(body, generation)
        text, result = got.text, got.result
        logprobs = None
        if body.logprobs is not None:
            logprobs = _legacy_logprobs(got.logprobs, start)
        return {
            "id": "cmpl-" + (generation.task_id or uuid.uuid4().hex),
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": OWNER,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": logprobs,
                    "finish_reason": _finish_reason(result),
                }
            ],
            "usage": _usage(result),
        }

    async def models() -> list[inference_pb2.ClusterModel]:
        try:
            reply = await upstream.inference.ListModels(
                inference_pb2.ListModelsRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as err:
            raise OpenAIError.from_rpc(err) from err
        return list(reply.models)

    def model_object(m: inference_pb2.ClusterModel) -> dict[str, Any]:
        return {"id": m.info.name, "object": "model", "created": 0, "owned_by": OWNER}

    @api.get("/models")
    async def list_models() -> dict[str, Any]:
        """Every model in the cluster (OpenAI's /v1/models)."""
        return {"object": "list", "data": [model_object(m) for m in await models()]}

    @api.get("/models/{model:path}")
    async def get_model(model: str) -> dict[str, Any]:
        """One model, if any node has it."""
        found = next((m for m in await models() if m.info.name == model), None)
        if found is None:
            raise OpenAIError.model_not_found(model)
        return model_object(found)

    @api.post("/embeddings")
    async def embeddings(body: Annotated[EmbeddingRequest, Body()]) -> dict[str, Any]:
        """Embeddings on the best node for the model (OpenAI's /v1/embeddings)."""
        texts = [body.input] if isinstance(body.input, str) else body.input
        if any(not t for t in texts):
            raise OpenAIError(400, "input must not contain empty strings", param="input")
        request = inference_pb2.EmbedRequest(
            model=body.model, input=texts, dimensions=body.dimensions or 0
        )
        try:
            reply = await inference.embed(upstream, request)
        except grpc.aio.AioRpcError as err:
            raise await refusal(upstream, err, body.model) from err
        tokens = reply.result.stats.prompt_eval_count
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": _encoded(e.values, body.encoding_format),
                }
                for i, e in enumerate(reply.result.embeddings)
            ],
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return api
