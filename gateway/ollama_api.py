"""The cluster as one Ollama: ``/api/generate``, ``/api/chat``, ``/api/embed``, ``/api/tags``,
``/api/ps``, ``/api/show``, ``/api/version`` with Ollama's own JSON shapes, so any Ollama client
pointed at the gateway (``OLLAMA_HOST``) uses the whole cluster, routed by the
coordinator.

Errors are Ollama's ``{"error": "..."}`` with its status codes (404 for an unknown model);
a failure after streaming began is a final ``{"error": ...}`` line, as Ollama does.
``/api/pull`` and ``/api/delete`` act on every node (``InferenceService.Pull`` and
``Delete``); push, create and copy stay with each node's Ollama: those calls answer 501
saying so. ``/api/embed`` and the older ``/api/embeddings`` are routed like any
task. Bodies are read as JSON whatever their Content-Type (``gateway.app.JsonBodies``), as
Ollama reads them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from gateway import inference
from gateway.bodies import CHECKED_BODY
from gateway.problems import ApiError
from gateway.upstream import UNARY_TIMEOUT_SECONDS, Upstream
from hive import __version__, limits
from hive.federation import VERSION_KEY, VIA_HEADER, parse_via
from hive.limits import MAX_DIMENSIONS, MAX_TOP_LOGPROBS
from hive.models import tagged
from hive.tool_calls import tool_call
from hive.v1 import cluster_pb2, common_pb2, inference_pb2

NDJSON = "application/x-ndjson"


class OllamaError(ApiError):
    """Ollama's error: ``{"error": message}``, its meaning in the HTTP status."""

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = OllamaError(status, message).body()
    return JSONResponse(status_code=status, content=body, headers=headers)


def _out_of_range(exc: limits.OutOfRange) -> PydanticCustomError:
    return PydanticCustomError("out_of_range", "{reason}", {"reason": str(exc)})


def _keep_alive(value: object) -> object:
    """keep_alive as a Go duration string every Ollama takes (``hive.limits``); refused
    when it is not one, e.g. longer than Ollama's longest (1e104 once took an endpoint out
    of rotation: issue 17)."""
    try:
        return limits.keep_alive(value) or None
    except limits.OutOfRange as exc:
        raise _out_of_range(exc) from None


def _bounded(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Options whose counts are within what Ollama takes (``hive.limits``)."""
    try:
        limits.check_options(options or {})
    except limits.OutOfRange as exc:
        raise _out_of_range(exc) from None
    return options


KeepAlive = Annotated[str | float | None, BeforeValidator(_keep_alive)]
Options = Annotated[dict[str, Any] | None, AfterValidator(_bounded)]


# Ollama accepts more fields than the mesh uses (images, tools, context, template, think);
# they are accepted and ignored rather than refused, as an Ollama server does.
class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: Options = None
    keep_alive: KeepAlive = None
    # Reasoning for a thinking model: true, false or "low" / "medium" / "high".
    think: bool | Literal["low", "medium", "high"] | None = None
    # Each output token's log probability, and with top_logprobs the likeliest at each.
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] = 0


class GenerateBody(_Request):
    prompt: str = ""
    system: str = ""
    raw: bool = False
    suffix: str = ""
    images: list[str] | None = None


class ToolFunction(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=256)]
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    function: ToolFunction


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Annotated[str, Field(min_length=1, max_length=64)]
    content: str = ""
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    images: list[str] | None = None

    def proto(self) -> common_pb2.ChatMessage:
        return common_pb2.ChatMessage(
            role=self.role,
            content=self.content,
            tool_calls=[
                tool_call(c.function.name, c.function.arguments) for c in self.tool_calls or ()
            ],
            tool_name=self.tool_name or "",
            images=self.images or (),
        )


class ChatBody(_Request):
    messages: list[Message] = Field(default_factory=list)
    # Functions the model may call ({"type": "function", "function": {...}}).
    tools: list[dict[str, Any]] | None = None


def _said(
    chat: bool,
    text: str,
    thinking: str,
    calls: list[common_pb2.ToolCall],
    logprobs: Sequence[common_pb2.TokenLogprob] = (),
) -> dict[str, Any]:
    """What the model said, in Ollama's shape: a chat's ``message`` (with its reasoning and
    tool calls), or a generate's ``response`` (with its reasoning); then its tokens' log
    probabilities, when asked for."""
    if logprobs:
        said = _said(chat, text, thinking, calls)
        return {**said, "logprobs": inference.logprobs_json(logprobs)}
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [
                {"function": {"name": c.name, "arguments": inference.tool_arguments(c)}}
                for c in calls
            ]
        if thinking:
            message["thinking"] = thinking
        return {"message": message}
    return {"response": text, "thinking": thinking} if thinking else {"response": text}


class EmbedBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | list[str] = Field(default_factory=list)
    truncate: bool | None = None
    dimensions: Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)] | None = None
    options: Options = None
    keep_alive: KeepAlive = None


class EmbeddingsBody(BaseModel):
    """The older /api/embeddings: one prompt."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)]
    prompt: str = ""
    options: Options = None
    keep_alive: KeepAlive = None


class ModelBody(BaseModel):
    """A request that names a model, as ``model`` or (older clients) ``name``."""

    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    def named(self) -> str:
        if not (self.model or self.name):
            raise OllamaError(400, "model is required")
        return self.model or self.name or ""


class PullBody(ModelBody):
    insecure: bool = False
    stream: bool = True


class PullProgress:
    """Many endpoints' pull progress as one Ollama pull: each layer's bytes summed over
    the endpoints pulling it, every other status once, and at the end "success" or an
    error naming the endpoints that failed.

    A layer's total is the whole of it from its first line: the coordinator names every
    endpoint of the pull before any progress (InferenceService.Pull), and a layer (by its
    digest) is as large on each of them, so those that have not said yet count with the
    size the first one says. A client's progress bar then never jumps back as more
    endpoints start on it."""

    def __init__(self) -> None:
        self.said: set[str] = set()
        self.layers: dict[str, dict[str, tuple[int, int]]] = {}
        self.failed: list[str] = []
        self.missing = 0  # endpoints whose registry has no such model
        # Every endpoint the pull acts on: those named before the first layer's line.
        self.endpoints: set[str] = set()

    def line(self, step: inference_pb2.PullResponse) -> dict[str, Any] | None:
        if step.endpoint and not self.layers:
            self.endpoints.add(step.endpoint)
        if step.error:
            self.failed.append(f"{step.endpoint}: {step.error}")
            self.missing += "file does not exist" in step.error
            return None
        if step.status == "success":
            return None
        if step.digest:
            layer = self.layers.setdefault(step.digest, {})
            layer[step.endpoint] = (step.total, step.completed)
            total = sum(layer[e][0] if e in layer else step.total for e in self.endpoints)
            total += sum(t for e, (t, _) in layer.items() if e not in self.endpoints)
            done = sum(c for _, c in layer.values())
            return {"status": step.status, "digest": step.digest, "total": total, "completed": done}
        if step.status in self.said:
            return None
        self.said.add(step.status)
        return {"status": step.status}

    def end(self) -> dict[str, Any]:
        if self.failed:
            return {"error": "; ".join(self.failed)}
        return {"status": "success"}

    def status(self) -> int:
        """The HTTP status of a whole (not streamed) pull that failed: 404 when no
        registry has the model, else 502 (a node's Ollama failed)."""
        return 404 if self.missing == len(self.failed) else 502


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _format(value: str | dict[str, Any] | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _stats(result: common_pb2.TaskResult) -> dict[str, Any]:
    s = result.stats
    return {
        "done_reason": result.done_reason or "stop",
        "total_duration": s.total_duration_ns,
        "load_duration": s.load_duration_ns,
        "prompt_eval_count": s.prompt_eval_count,
        "prompt_eval_duration": s.prompt_eval_duration_ns,
        "eval_count": s.eval_count,
        "eval_duration": s.eval_duration_ns,
    }


def _details(info: common_pb2.ModelInfo) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": info.family,
        "families": [info.family] if info.family else None,
        "parameter_size": info.parameter_size,
        "quantization_level": info.quantization_level,
    }


# Federation: the clusters a request from another Hive cluster's agent has passed through.
Via = Annotated[
    str | None,
    Header(
        alias=VIA_HEADER,
        description="Hive clusters this request has passed through (sent by a federated "
        "cluster's node agent; the coordinator refuses one that has been here)",
    ),
]


def _options(body: _Request | EmbedBody | EmbeddingsBody, request: Any) -> None:
    if body.options:
        request.options.update(body.options)


def router(upstream: Upstream) -> APIRouter:
    api = APIRouter(tags=["ollama"], dependencies=[CHECKED_BODY])

    async def open_generation(
        body: _Request, request: inference_pb2.GenerateRequest | inference_pb2.ChatRequest
    ) -> inference.Generation:
        try:
            if isinstance(request, inference_pb2.GenerateRequest):
                return await inference.generate(upstream, request)
            return await inference.chat(upstream, request)
        except grpc.aio.AioRpcError as err:
            raise await inference.refusal(OllamaError, upstream, err, body.model) from err

    async def lines(
        body: _Request, generation: inference.Generation, chat: bool
    ) -> AsyncIterator[bytes]:
        def line(obj: dict[str, Any]) -> bytes:
            return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

        try:
            async for piece in generation.pieces():
                head: dict[str, Any] = {"model": body.model, "created_at": _now()}
                if piece.result is None:
                    said = _said(chat, piece.text, piece.thinking, piece.tool_calls, piece.logprobs)
                    yield line({**head, **said, "done": False})
                else:
                    said = _said(chat, "", "", [])
                    yield line({**head, **said, "done": True, **_stats(piece.result)})
        except grpc.aio.AioRpcError as err:
            yield line(OllamaError.from_rpc(err).body())

    async def whole(body: _Request, generation: inference.Generation, chat: bool) -> JSONResponse:
        try:
            got = await inference.collect(generation)
        except grpc.aio.AioRpcError as err:
            raise await inference.refusal(OllamaError, upstream, err, body.model) from err
        head: dict[str, Any] = {"model": body.model, "created_at": _now()}
        said = _said(chat, got.text, got.thinking, got.tool_calls, got.logprobs)
        return JSONResponse({**head, **said, "done": True, **_stats(got.result)})

    async def unload(body: _Request, chat: bool) -> JSONResponse:
        """No prompt and keep_alive 0 (``ollama stop``): the model leaves every endpoint."""
        try:
            reply = await inference.unload(upstream, body.model)
        except grpc.aio.AioRpcError as err:
            raise await inference.refusal(OllamaError, upstream, err, body.model) from err
        if reply.failed:
            raise OllamaError(502, "could not unload everywhere: " + "; ".join(reply.failed))
        said = _said(chat, "", "", [])
        head = {"model": body.model, "created_at": _now(), **said}
        return JSONResponse({**head, "done": True, "done_reason": "unload"})

    @api.post("/api/generate", response_model=None)
    async def generate(
        body: Annotated[GenerateBody, Body()], via: Via = None
    ) -> StreamingResponse | JSONResponse:
        """Generate a completion on the best node for the model (Ollama's /api/generate)."""
        if not body.prompt and not body.images and inference.unloads(body.keep_alive):
            return await unload(body, chat=False)
        request = inference_pb2.GenerateRequest(
            model=body.model,
            prompt=body.prompt,
            system=body.system,
            keep_alive=inference.keep_alive(body.keep_alive),
            format=_format(body.format),
            raw=body.raw,
            suffix=body.suffix,
            images=body.images or (),
            think=inference.think(body.think),
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs,
            via=parse_via(via),
            whole=not body.stream,
        )
        _options(body, request)
        generation = await open_generation(body, request)
        if body.stream:
            return StreamingResponse(lines(body, generation, chat=False), media_type=NDJSON)
        return await whole(body, generation, chat=False)

    @api.post("/api/chat", response_model=None)
    async def chat(
        body: Annotated[ChatBody, Body()], via: Via = None
    ) -> StreamingResponse | JSONResponse:
        """Chat with a model on the best node for it (Ollama's /api/chat)."""
        if not body.messages and inference.unloads(body.keep_alive):
            return await unload(body, chat=True)
        if not body.messages:
            # Ollama loads the model for an empty chat (``ollama run`` does this before its
            # prompt): an empty generate on the node the router picks does the same.
            load = inference_pb2.GenerateRequest(
                model=body.model,
                keep_alive=inference.keep_alive(body.keep_alive),
                via=parse_via(via),
            )
            generation = await open_generation(body, load)
            if body.stream:
                return StreamingResponse(lines(body, generation, chat=True), media_type=NDJSON)
            return await whole(body, generation, chat=True)
        request = inference_pb2.ChatRequest(
            model=body.model,
            messages=[m.proto() for m in body.messages],
            tools=[json.dumps(t) for t in body.tools or ()],
            think=inference.think(body.think),
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs,
            keep_alive=inference.keep_alive(body.keep_alive),
            format=_format(body.format),
            via=parse_via(via),
            whole=not body.stream,
        )
        _options(body, request)
        generation = await open_generation(body, request)
        if body.stream:
            return StreamingResponse(lines(body, generation, chat=True), media_type=NDJSON)
        return await whole(body, generation, chat=True)

    async def list_models() -> list[inference_pb2.ClusterModel]:
        try:
            reply = await upstream.inference.ListModels(
                inference_pb2.ListModelsRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as err:
            raise OllamaError.from_rpc(err) from err
        return list(reply.models)

    @api.get("/api/tags")
    async def tags() -> dict[str, Any]:
        """Every model on any node of the cluster, once (Ollama's /api/tags)."""
        return {
            "models": [
                {
                    "name": m.info.name,
                    "model": m.info.name,
                    "modified_at": _now(),
                    "size": m.info.size_bytes,
                    "digest": m.info.digest,
                    "details": _details(m.info),
                }
                for m in await list_models()
            ]
        }

    @api.get("/api/ps")
    async def ps() -> dict[str, Any]:
        """Models loaded in VRAM anywhere in the cluster (Ollama's /api/ps).

        A model loaded on several endpoints is listed once; ``size_vram`` is its total
        across them and ``expires_at`` the latest.
        """
        models = {m.info.name: m for m in await list_models() if m.loaded_on}
        try:
            status = await upstream.cluster.GetClusterStatus(
                cluster_pb2.GetClusterStatusRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as err:
            raise OllamaError.from_rpc(err) from err
        vram: dict[str, int] = {}
        expires: dict[str, datetime] = {}
        for node in status.nodes:
            for endpoint in node.telemetry.endpoints:
                for loaded in endpoint.loaded_models:
                    vram[loaded.name] = vram.get(loaded.name, 0) + loaded.size_vram_bytes
                    if loaded.HasField("expires_at"):
                        at = loaded.expires_at.ToDatetime(tzinfo=UTC)
                        expires[loaded.name] = max(at, expires.get(loaded.name, at))
        out = []
        for name, m in models.items():
            out.append(
                {
                    "name": name,
                    "model": name,
                    "size": m.info.size_bytes,
                    "digest": m.info.digest,
                    "details": _details(m.info),
                    "expires_at": (expires[name] if name in expires else datetime.now(UTC))
                    .isoformat()
                    .replace("+00:00", "Z"),
                    "size_vram": vram.get(name, m.info.size_bytes),
                }
            )
        return {"models": out}

    @api.post("/api/show")
    async def show(body: Annotated[ModelBody, Body()]) -> dict[str, Any]:
        """A model's details, as the nodes that have it reported them (Ollama's /api/show)."""
        name = body.named()
        wanted = tagged(name)
        found = next((m for m in await list_models() if m.info.name == wanted), None)
        if found is None:
            raise OllamaError.model_not_found(name)
        return {
            "modelfile": f"FROM {name}\n",
            "parameters": "",
            "template": "",
            "details": _details(found.info),
            "model_info": {"general.architecture": found.info.family},
            "capabilities": list(found.info.capabilities) or ["completion"],
            "hive": {"endpoints": list(found.endpoints), "loaded_on": list(found.loaded_on)},
        }

    @api.get("/api/version")
    async def version() -> dict[str, str]:
        """The oldest Ollama version among the cluster's endpoints (what every node supports),
        and the cluster's name, which tells a federated cluster's agent that this "Ollama"
        is a Hive gateway (hive.federation)."""
        try:
            status = await upstream.cluster.GetClusterStatus(
                cluster_pb2.GetClusterStatusRequest(), timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError:
            return {"version": __version__}
        versions = [e.version for n in status.nodes for e in n.info.endpoints if e.version]
        return {
            "version": min(versions, key=_version_key) if versions else __version__,
            VERSION_KEY: status.cluster_name,
        }

    async def run_embed(
        body: EmbedBody | EmbeddingsBody,
        texts: list[str],
        via: str | None,
        dimensions: int | None = None,
    ) -> inference_pb2.EmbedResponse:
        request = inference_pb2.EmbedRequest(
            model=body.model,
            input=texts,
            keep_alive=inference.keep_alive(body.keep_alive),
            dimensions=dimensions or 0,
            via=parse_via(via),
        )
        if isinstance(body, EmbedBody) and body.truncate is not None:
            request.truncate = body.truncate
        _options(body, request)
        try:
            return await inference.embed(upstream, request)
        except grpc.aio.AioRpcError as err:
            raise await inference.refusal(OllamaError, upstream, err, body.model) from err

    @api.post("/api/embed")
    async def embed(body: Annotated[EmbedBody, Body()], via: Via = None) -> dict[str, Any]:
        """Embeddings of one or more inputs on the best node for the model (Ollama's
        /api/embed): one L2-normalised vector per input, in order."""
        texts = [body.input] if isinstance(body.input, str) else body.input
        if texts == [""]:
            texts = []  # no input: the model loads where the router puts it, as in Ollama
        reply = await run_embed(body, texts, via, body.dimensions)
        stats = reply.result.stats
        return {
            "model": body.model,
            "embeddings": [list(e.values) for e in reply.result.embeddings],
            "total_duration": stats.total_duration_ns,
            "load_duration": stats.load_duration_ns,
            "prompt_eval_count": stats.prompt_eval_count,
        }

    @api.post("/api/embeddings")
    async def embeddings(
        body: Annotated[EmbeddingsBody, Body()], via: Via = None
    ) -> dict[str, Any]:
        """One prompt's embedding (Ollama's older /api/embeddings)."""
        # An empty prompt loads the model where the router puts it, as in Ollama.
        reply = await run_embed(body, [body.prompt] if body.prompt else [], via)
        vectors = reply.result.embeddings
        return {"embedding": list(vectors[0].values) if vectors else []}

    @api.post("/api/pull", response_model=None)
    async def pull(body: Annotated[PullBody, Body()]) -> StreamingResponse | JSONResponse:
        """Pull a model onto every node of the cluster that lacks it (Ollama's /api/pull),
        with the progress of all of them as one (PullProgress). "success" comes once the
        coordinator routes to the model on every one of them: the next call can use it."""
        name = body.named()
        call = upstream.inference.Pull(
            inference_pb2.PullRequest(model=name, insecure=body.insecure)
        )
        try:  # a refusal (no such endpoint, not allowed) is still an HTTP status
            first = await call.read()
        except grpc.aio.AioRpcError as err:
            raise await inference.refusal(OllamaError, upstream, err, name) from err
        progress = PullProgress()

        async def steps() -> AsyncIterator[dict[str, Any]]:
            step = first
            try:
                while isinstance(step, inference_pb2.PullResponse):
                    if (shown := progress.line(step)) is not None:
                        yield shown
                    step = await call.read()
            except grpc.aio.AioRpcError as err:
                progress.failed.append(err.details() or err.code().name)
            finally:
                call.cancel()
            yield progress.end()

        if body.stream:

            async def lines() -> AsyncIterator[bytes]:
                async for step in steps():
                    yield json.dumps(step, separators=(",", ":")).encode() + b"\n"

            return StreamingResponse(lines(), media_type=NDJSON)
        last: dict[str, Any] = {}
        async for step in steps():
            last = step
        if "error" in last:
            raise OllamaError(progress.status(), last["error"])
        return JSONResponse(last)

    @api.delete("/api/delete", response_model=None)
    async def delete(body: Annotated[ModelBody, Body()]) -> Response:
        """Remove a model from every node that has it (Ollama's /api/delete). It answers
        once the coordinator no longer routes to the model there: the next call finds it
        gone. No node has it: 404, ``{"error": "model 'NAME' not found"}`` as Ollama's."""
        name = body.named()
        try:
            reply = await upstream.inference.Delete(
                # Each node has 30 s to answer; they answer together.
                inference_pb2.DeleteRequest(model=name),
                timeout=60.0,
            )
        except grpc.aio.AioRpcError as err:  # no node has it: 404, as for any request
            raise await inference.refusal(OllamaError, upstream, err, name) from err
        if reply.failed:
            raise OllamaError(502, "could not remove everywhere: " + "; ".join(reply.failed))
        return Response(status_code=200)

    async def manage_models() -> JSONResponse:
        raise OllamaError(501, NODE_MANAGED)

    # Ollama's model management calls, answered in its shape with what to do instead of a
    # bare 404 (an Ollama client shows the message to its user).
    for path, method in MODEL_MANAGEMENT:
        api.add_api_route(path, manage_models, methods=[method], include_in_schema=False)
    return api


MODEL_MANAGEMENT = (
    ("/api/push", "POST"),
    ("/api/create", "POST"),
    ("/api/copy", "POST"),
)
NODE_MANAGED = (
    "models are managed on each node's own Ollama (`ollama pull` and `ollama rm` through "
    "the cluster act on every node; push, create and copy are done on the node); the "
    "cluster serves every model any node has: GET /api/tags lists them"
)


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
