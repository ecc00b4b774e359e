"""OpenAI's Responses API (``POST /v1/responses``) on the cluster, as Ollama serves it.

Coding agents built on it (Codex CLI and others using the Responses API) then run on the
mesh's models. A request becomes one ``InferenceService.Chat``: ``instructions`` a system
message; ``input`` a string (one user message) or items: messages (``input_text``,
``output_text``, data-URL ``input_image`` parts; ``developer`` is a system message),
``function_call`` items the assistant's tool calls and ``function_call_output`` items
"tool" messages named after the call they answer; ``max_output_tokens``,
``temperature``, ``top_p`` Ollama's options; ``reasoning.effort`` Ollama's think;
``text.format`` Ollama's format. The answer comes back as output items (``reasoning``,
``function_call``, ``message``), whole or as the Responses API's events.

The gateway keeps no responses, as Ollama keeps none: ``previous_response_id`` and
``conversation`` are refused (send the whole conversation in ``input``), ``store`` is
ignored. ``function`` tools are offered to the model, a ``namespace``'s members as
``namespace.member``; built-in tools the mesh cannot run (``web_search``...) are left out.
``tool_choice`` and ``parallel_tool_calls`` are honoured as on ``/v1/chat/completions``
(``hive.tool_calls.ToolChoice``); a choice of a built-in tool is a 400.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway import inference
from gateway.bodies import CHECKED_BODY
from gateway.openai_api import (
    REASONING,
    OpenAIError,
    allowed_tool_choice,
    refusal,
    tool_choice_error,
    tool_choice_mode,
    unmet_error,
)
from gateway.upstream import Upstream
from hive.limits import MAX_CONTEXT_TOKENS
from hive.tool_calls import ToolChoice, tool_call, tool_name
from hive.v1 import common_pb2, inference_pb2


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="allow")

    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat | None = None


class ResponsesRequest(BaseModel):
    # store, metadata, include, user... are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT_TOKENS)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    # "none", "auto", "required", a function or allowed_tools (``_tool_choice``).
    tool_choice: str | dict[str, Any] | None = None
    # false: at most one function call in the output.
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    previous_response_id: str | None = None
    conversation: Any = None


def _parts(content: Any, where: str) -> tuple[str, list[str]]:
    """A message's text and base64 images, from a string or a list of content parts."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise OpenAIError(400, f"{where}.content must be a string or a list", param="input")
    text, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            text.append(str(part.get("text") or ""))
        elif kind == "input_image":
            data = inference.data_url_base64(str(part.get("image_url") or ""))
            if data is None:
                raise OpenAIError(
                    400,
                    f"{where}: input_image must be a data URL (data:image/...;base64,...)",
                    param="input",
                )
            images.append(data)
        else:
            raise OpenAIError(
                400, f"{where}: content part {kind!r} is not supported", param="input"
            )
    return "".join(text), images


def chat_messages(body: ResponsesRequest) -> list[common_pb2.ChatMessage]:
    """The request's instructions and input as the contract's chat messages."""
    out = []
    if body.instructions:
        out.append(common_pb2.ChatMessage(role="system", content=body.instructions))
    if isinstance(body.input, str):
        out.append(common_pb2.ChatMessage(role="user", content=body.input))
        return out
    names: dict[str, str] = {}
    for i, item in enumerate(body.input):
        where = f"input.{i}"
        kind = item.get("type", "message")
        if kind == "message":
            role = str(item.get("role") or "user")
            if role not in ("user", "assistant", "system", "developer"):
                raise OpenAIError(400, f"{where}: unknown role {role!r}", param="input")
            text, images = _parts(item.get("content", ""), where)
            role = "system" if role == "developer" else role
            out.append(common_pb2.ChatMessage(role=role, content=text, images=images))
        elif kind == "function_call":
            name, call_id = str(item.get("name") or ""), str(item.get("call_id") or "")
            if not name:
                raise OpenAIError(400, f"{where}: a function_call needs a name", param="input")
            try:
                arguments = json.loads(item.get("arguments") or "{}")
            except ValueError:
                raise OpenAIError(
                    400, f"{where}: arguments must be JSON text", param="input"
                ) from None
            names[call_id] = name
            call = tool_call(name, arguments)
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not last.content:
                last.tool_calls.append(call)  # parallel calls: one assistant turn
            else:
                out.append(common_pb2.ChatMessage(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else _parts(output, where)[0]
            name = names.get(str(item.get("call_id") or ""), "")
            out.append(common_pb2.ChatMessage(role="tool", content=text, tool_name=name))
        elif kind == "reasoning":
            continue  # the model's own earlier reasoning: Ollama does not take it back
        else:
            raise OpenAIError(400, f"{where}: item type {kind!r} is not supported", param="input")
    return out


def _functions(tool: dict[str, Any], where: str, prefix: str = "") -> list[str]:
    """The functions a tool declares, as the contract's tools: itself, or a namespace's
    members named ``namespace.member`` (as Ollama expands them); none for a built-in tool
    the mesh cannot run (web search, file search...), which is left out, not refused."""
    kind = tool.get("type")
    name = str(tool.get("name") or "")
    if kind == "namespace":
        members = tool.get("tools") or []
        return [
            f
            for j, member in enumerate(members if isinstance(members, list) else [])
            if isinstance(member, dict)
            for f in _functions(
                member, f"{where}.tools.{j}", f"{prefix}{name}." if name else prefix
            )
        ]
    if kind != "function":
        return []
    if not name:
        raise OpenAIError(400, f"{where}: a function tool needs a name", param="tools")
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    return [inference.function_tool(prefix + name, tool.get("description") or "", parameters)]


def _tools(body: ResponsesRequest) -> list[str]:
    return [f for i, t in enumerate(body.tools or ()) for f in _functions(t, f"tools.{i}")]


def _tool_choice(body: ResponsesRequest, tools: list[str]) -> ToolChoice:
    """The request's ``tool_choice`` and ``parallel_tool_calls`` as a ToolChoice over its
    function tools (``tools``: the contract's, namespace members named
    ``namespace.member``); a 400 naming the field for what cannot be honoured, such as a
    built-in tool, which the mesh does not run."""
    single = body.parallel_tool_calls is False
    value = body.tool_choice
    said = json.dumps(value, separators=(",", ":"))
    if value is None:
        choice = ToolChoice(single=single)
    elif isinstance(value, str):
        choice = tool_choice_mode(value, said, single)
    elif value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise tool_choice_error(f"{said}: a function choice needs a name")
        choice = ToolChoice("required", (name,), single, said)
    elif value.get("type") == "allowed_tools":

        def name_of(tool: Any) -> str | None:
            if not isinstance(tool, dict) or tool.get("type") != "function":
                return None
            name = tool.get("name")
            return name if isinstance(name, str) else None

        choice = allowed_tool_choice(value, said, single, name_of)
    else:
        raise tool_choice_error(
            f"{said}: only 'none', 'auto', 'required', a function or allowed_tools of "
            "functions can be honoured (the mesh runs no built-in, MCP or custom tools)"
        )
    if problem := choice.problem([n for t in tools if (n := tool_name(t))]):
        raise tool_choice_error(problem)
    return choice


def _usage(result: common_pb2.TaskResult) -> dict[str, Any]:
    prompt, output = result.stats.prompt_eval_count, result.stats.eval_count
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


class _Output:
    """The response's output items, built as the answer streams: a reasoning item, then
    the message, then one function_call item per call; each step's events are returned
    for a streamed response (with sequence numbers), and ``items`` is the whole output."""

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.sequence = 0
        self.calls = 0

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **data}

    def _index(self) -> int:
        return len(self.items) - 1

    def _close(self) -> list[dict[str, Any]]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = self.items.index(item)
        events = []
        if item["type"] == "reasoning":
            text = item["summary"][0]["text"]
            events.append(
                self.event(
                    "response.reasoning_summary_text.done",
                    item_id=item["id"], output_index=index, summary_index=0, text=text,
                )
            )  # fmt: skip
        elif item["type"] == "message":
            part = item["content"][0]
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(
                self.event("response.output_text.done", **common, text=part["text"], logprobs=[])
            )
            events.append(self.event("response.content_part.done", **common, part=part))
        item["status"] = "completed"
        events.append(self.event("response.output_item.done", output_index=index, item=item))
        return events

    def _start(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.items.append(item)
        self.open = item
        shown = {**item, "status": "in_progress"}
        if item["type"] == "message":
            shown["content"] = []
        if item["type"] == "reasoning":
            shown["summary"] = []
        events.append(
            self.event("response.output_item.added", output_index=self._index(), item=shown)
        )
        return events

    def thinking(self, text: str) -> list[dict[str, Any]]:
        events = []
        if self.open is None or self.open["type"] != "reasoning":
            item = {
                "id": f"rs_{self.ident}_{len(self.items)}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": ""}],
            }
            events += self._start(item)
            part = {"type": "summary_text", "text": ""}
            events.append(
                self.event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"], output_index=self._index(), summary_index=0, part=part,
                )
            )  # fmt: skip
        assert self.open is not None
        self.open["summary"][0]["text"] += text
        events.append(
            self.event(
                "response.reasoning_summary_text.delta",
                item_id=self.open["id"], output_index=self._index(), summary_index=0, delta=text,
            )
        )  # fmt: skip
        return events

    def text(self, text: str) -> list[dict[str, Any]]:
        events = []
        if self.open is None or self.open["type"] != "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item = {
                "id": f"msg_{self.ident}_{len(self.items)}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
            events += self._start(item)
            common = {"item_id": item["id"], "output_index": self._index(), "content_index": 0}
            events.append(self.event("response.content_part.added", **common, part=dict(part)))
        assert self.open is not None
        self.open["content"][0]["text"] += text
        common = {"item_id": self.open["id"], "output_index": self._index(), "content_index": 0}
        events.append(self.event("response.output_text.delta", **common, delta=text, logprobs=[]))
        return events

    def call(self, call: common_pb2.ToolCall) -> list[dict[str, Any]]:
        arguments = call.arguments_json or "{}"
        item = {
            "id": f"fc_{self.ident}_{self.calls}",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_{self.ident[-12:]}_{self.calls}",
            "name": call.name,
            "arguments": arguments,
        }
        self.calls += 1
        events = self._start({**item, "arguments": ""})
        self.items[-1] = self.open = item
        common = {"item_id": item["id"], "output_index": self._index()}
        events.append(
            self.event("response.function_call_arguments.delta", **common, delta=arguments)
        )
        events.append(
            self.event("response.function_call_arguments.done", **common, arguments=arguments)
        )
        return events + self._close()

    def piece(self, piece: inference.Piece) -> list[dict[str, Any]]:
        events = self.thinking(piece.thinking) if piece.thinking else []
        if piece.text:
            events += self.text(piece.text)
        for call in piece.tool_calls:
            events += self.call(call)
        return events

    def end(self) -> list[dict[str, Any]]:
        return self._close()


def _response(
    body: ResponsesRequest,
    ident: str,
    created: int,
    output: list[dict[str, Any]],
    result: common_pb2.TaskResult | None,
) -> dict[str, Any]:
    """The response object; ``result`` None while it is still running."""
    status = "in_progress"
    incomplete = None
    if result is not None:
        status = "completed"
        if result.done_reason == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    text_format: dict[str, Any] = {"type": "text"}
    if body.text is not None and body.text.format is not None:
        text_format = body.text.format.model_dump(by_alias=True, exclude_none=True)
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": body.model,
        "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {"effort": body.reasoning.effort if body.reasoning else None, "summary": None},
        "store": False,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "text": {"format": text_format},
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": body.tools or [],
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "truncation": "disabled",
        "usage": _usage(result) if result is not None else None,
        "metadata": {},
    }


def router(upstream: Upstream) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["openai"], dependencies=[CHECKED_BODY])

    async def events(
        body: ResponsesRequest, generation: inference.Generation, ident: str, created: int
    ) -> AsyncIterator[bytes]:
        output = _Output(ident.removeprefix("resp_"))
        running = _response(body, ident, created, [], None)
        for kind in ("response.created", "response.in_progress"):
            yield inference.sse_event(output.event(kind, response=running))
        try:
            async for piece in generation.pieces():
                if piece.result is None:
                    for event in output.piece(piece):
                        yield inference.sse_event(event)
                    continue
                for event in output.end():
                    yield inference.sse_event(event)
                done = _response(body, ident, created, output.items, piece.result)
                kind = (
                    "response.completed" if done["status"] == "completed" else "response.incomplete"
                )
                yield inference.sse_event(output.event(kind, response=done))
        except grpc.aio.AioRpcError as err:
            failed = _response(body, ident, created, output.items, None)
            failed["status"] = "failed"
            failed["error"] = {"code": "server_error", "message": err.details() or err.code().name}
            yield inference.sse_event(output.event("response.failed", response=failed))

    @api.post("/responses", response_model=None)
    async def responses(
        body: Annotated[ResponsesRequest, Body()],
    ) -> StreamingResponse | dict[str, Any]:
        """A model's response on the best node for it (OpenAI's /v1/responses)."""
        if body.previous_response_id or body.conversation:
            raise OpenAIError(
                400,
                "stored responses are not kept: send the whole conversation in input "
                "instead of previous_response_id or conversation",
                param="previous_response_id" if body.previous_response_id else "conversation",
            )
        tools = _tools(body)
        choice = _tool_choice(body, tools)
        request = inference_pb2.ChatRequest(
            model=body.model,
            messages=chat_messages(body),
            tools=tools,
            whole=not body.stream,
        )
        if body.reasoning is not None and body.reasoning.effort is not None:
            request.think = REASONING[body.reasoning.effort]
        fmt = body.text.format if body.text is not None else None
        if fmt is not None and fmt.type != "text":
            request.format = json.dumps(fmt.schema_) if fmt.schema_ else "json"
        options: dict[str, Any] = {}
        for ours, theirs in (
            ("max_output_tokens", "num_predict"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
        ):
            if (value := getattr(body, ours)) is not None:
                options[theirs] = value
        if options:
            request.options.update(options)
        try:
            generation = await inference.chat(upstream, request, choice)
        except grpc.aio.AioRpcError as err:
            raise await refusal(upstream, err, body.model) from err
        except inference.ToolChoiceUnmet as err:
            raise unmet_error(err) from err
        ident = "resp_" + (generation.task_id or uuid.uuid4().hex).replace("-", "")
        created = int(time.time())
        if body.stream:
            return StreamingResponse(
                events(body, generation, ident, created), media_type="text/event-stream"
            )
        try:
            got = await inference.collect(generation)
        except grpc.aio.AioRpcError as err:
            raise await refusal(upstream, err, body.model) from err
        output = _Output(ident.removeprefix("resp_"))
        output.piece(inference.Piece(got.text, None, got.tool_calls, got.thinking))
        output.end()
        return _response(body, ident, created, output.items, got.result)

    return api
