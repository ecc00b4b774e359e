"""NodeAgentService: runs one task on a local Ollama endpoint and streams it back.

Output is batched: the first piece of text goes out at once (time to first
token matters), later pieces are gathered until ``chunk_max_chars`` or
``chunk_max_seconds`` so a fast model does not cost a gRPC message per token.
Each task runs apart from its RPC (node_agent/attempts.py): a coordinator that
cancels it on purpose closes the HTTP stream, which aborts the request at Ollama; a
coordinator that dies leaves it running for the next leader to adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import httpx
from google.protobuf import json_format

from hive.federation import via_headers
from hive.serving import AGENT_TRAILER
from hive.tool_calls import tool_call
from hive.v1 import common_pb2, node_agent_pb2, node_agent_pb2_grpc
from node_agent.attempts import Attempt, AttemptFailed
from node_agent.ollama import OllamaError

if TYPE_CHECKING:
    from hive.config import AgentConfig
    from node_agent.attempts import Attempts
    from node_agent.endpoints import LocalEndpoint
    from node_agent.metrics import AgentMetrics

log = logging.getLogger("hive.agent")


class AgentView(Protocol):
    """What the service needs of its agent (``node_agent.agent.Agent`` is one): a view, so
    that this module does not import the agent that imports it."""

    @property
    def name(self) -> str: ...
    @property
    def attempts(self) -> Attempts: ...
    @property
    def endpoints(self) -> Mapping[str, LocalEndpoint]: ...
    @property
    def config(self) -> AgentConfig: ...
    @property
    def metrics(self) -> AgentMetrics: ...
    def node_info(self) -> common_pb2.NodeInfo: ...
    async def telemetry(self) -> common_pb2.NodeTelemetry: ...
    def models_changed(self) -> int: ...


# How long FollowTask waits for the attempt it names to start (the gateway is told of the
# assignment as the coordinator calls RunTask, and may ask first).
FOLLOW_WAIT_SECONDS = 5.0

_OLLAMA_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def ollama_failure(
    endpoint: LocalEndpoint, exc: OllamaError | httpx.TransportError, otherwise: grpc.StatusCode
) -> AttemptFailed:
    """What went wrong with ``endpoint``'s Ollama as a gRPC status: its refusal (HTTP
    status as a gRPC code, ``otherwise`` for the rest), or UNAVAILABLE when unreachable."""
    if isinstance(exc, OllamaError):
        code = _OLLAMA_STATUS.get(exc.status, otherwise)
        if exc.status == 503 and endpoint.hive_cluster:
            # Another Hive cluster's 503 is "no endpoint can take it now", not Ollama's
            # "queue full": the caller should see 503 too, not 429.
            code = grpc.StatusCode.UNAVAILABLE
        return AttemptFailed(code, f"ollama {endpoint.id} ({exc.status}): {exc.message}")
    return AttemptFailed(
        grpc.StatusCode.UNAVAILABLE,
        f"ollama endpoint {endpoint.id} at {endpoint.client.url} unreachable: {exc!r}",
    )


async def _abort_for(
    context: grpc.aio.ServicerContext[Any, Any],
    endpoint: LocalEndpoint,
    exc: OllamaError | httpx.TransportError,
    otherwise: grpc.StatusCode,
) -> None:
    """End the RPC for what went wrong with ``endpoint``'s Ollama (``ollama_failure``)."""
    failure = ollama_failure(endpoint, exc, otherwise)
    await context.abort(failure.code, failure.message)


def token_logprobs(line: dict[str, Any]) -> list[common_pb2.TokenLogprob]:
    """The ``logprobs`` entries of one line of Ollama's answer, as the contract's."""
    return [_token_logprob(e) for e in line.get("logprobs") or () if isinstance(e, dict)]


def _token_logprob(entry: dict[str, Any]) -> common_pb2.TokenLogprob:
    token = str(entry.get("token", ""))
    raw = entry.get("bytes")
    ok = isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw)
    return common_pb2.TokenLogprob(
        token=token,
        logprob=float(entry.get("logprob", 0.0)),
        bytes=bytes(raw) if ok and raw else token.encode(),
        top_logprobs=[
            _token_logprob(t) for t in entry.get("top_logprobs") or () if isinstance(t, dict)
        ],
    )


def ollama_payload(request: node_agent_pb2.RunTaskRequest) -> tuple[str, dict[str, Any]]:
    """The Ollama API path and JSON body for a task."""
    payload: dict[str, Any] = {"model": request.model}
    if request.HasField("options"):
        payload["options"] = {
            k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in json_format.MessageToDict(request.options).items()
        }
    if request.keep_alive:
        payload["keep_alive"] = request.keep_alive
    if request.think:
        payload["think"] = {"true": True, "false": False}.get(request.think, request.think)
    if request.logprobs:
        payload["logprobs"] = True
        if request.top_logprobs:
            payload["top_logprobs"] = request.top_logprobs
    kind = request.WhichOneof("input")
    if kind == "embed":
        payload["input"] = list(request.embed.input)
        if request.embed.HasField("truncate"):
            payload["truncate"] = request.embed.truncate
        if request.embed.dimensions:
            payload["dimensions"] = request.embed.dimensions
        return "/api/embed", payload
    if kind == "chat":
        payload["messages"] = [_ollama_message(m) for m in request.chat.messages]
        if request.chat.tools:
            payload["tools"] = [json.loads(t) for t in request.chat.tools]
        if request.chat.format:
            payload["format"] = ollama_format(request.chat.format)
        return "/api/chat", payload
    payload["prompt"] = request.generate.prompt
    if request.generate.system:
        payload["system"] = request.generate.system
    if request.generate.format:
        payload["format"] = ollama_format(request.generate.format)
    if request.generate.raw:
        payload["raw"] = True
    if request.generate.suffix:
        payload["suffix"] = request.generate.suffix
    if request.generate.images:
        payload["images"] = list(request.generate.images)
    return "/api/generate", payload


def _ollama_message(m: common_pb2.ChatMessage) -> dict[str, Any]:
    message: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        message["tool_calls"] = [
            {"function": {"name": c.name, "arguments": json.loads(c.arguments_json or "{}")}}
            for c in m.tool_calls
        ]
    if m.tool_name:
        message["tool_name"] = m.tool_name
    if m.images:
        message["images"] = list(m.images)
    return message


def tool_calls(line: dict[str, Any]) -> list[common_pb2.ToolCall]:
    """The tool calls on one of Ollama's chat lines (``message.tool_calls``)."""
    calls = (line.get("message") or {}).get("tool_calls") or []
    functions = [call.get("function") or {} for call in calls]
    return [tool_call(str(f.get("name", "")), f.get("arguments")) for f in functions]


def ollama_format(value: str) -> str | Any:
    """The task's ``format`` as Ollama takes it: "json", or a JSON Schema as an object.

    The contract carries a schema as its JSON text; sent on as a string, Ollama would refuse
    it ("invalid format ... expected "json" or a valid JSON Schema object").
    """
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value  # Ollama's own error names what is wrong with it
    return value


def final_result(
    final: dict[str, Any], stats: common_pb2.TaskStats
) -> node_agent_pb2.RunTaskResponse:
    """The result event of Ollama's last (``done``) object: its counts and done_reason."""
    return node_agent_pb2.RunTaskResponse(
        result=common_pb2.TaskResult(stats=stats, done_reason=str(final.get("done_reason", "")))
    )


def task_stats(final: dict[str, Any]) -> common_pb2.TaskStats:
    return common_pb2.TaskStats(
        prompt_eval_count=int(final.get("prompt_eval_count", 0)),
        eval_count=int(final.get("eval_count", 0)),
        total_duration_ns=int(final.get("total_duration", 0)),
        load_duration_ns=int(final.get("load_duration", 0)),
        prompt_eval_duration_ns=int(final.get("prompt_eval_duration", 0)),
        eval_duration_ns=int(final.get("eval_duration", 0)),
    )


class NodeAgentServicer(node_agent_pb2_grpc.NodeAgentServiceServicer):
    def __init__(self, agent: AgentView) -> None:
        self.agent = agent

    async def RunTask(
        self,
        request: node_agent_pb2.RunTaskRequest,
        context: grpc.aio.ServicerContext[
            node_agent_pb2.RunTaskRequest, node_agent_pb2.RunTaskResponse
        ],
    ) -> AsyncIterator[node_agent_pb2.RunTaskResponse]:
        """Start the attempt (or, with ``adopt``, find the one already running) and follow
        it (node_agent/attempts.py): a caller that goes away with its coordinator leaves
        it running for the next leader."""
        agent = self.agent
        # Sent with whatever status ends this call, aborts included: the coordinator tells
        # an answer of this agent's from a broken transport by it.
        context.set_trailing_metadata(((AGENT_TRAILER, agent.name),))
        if request.adopt:
            attempt = agent.attempts.get(request.task_id, request.attempt)
            if attempt is None:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"node {agent.name} has no attempt {request.attempt} of task "
                    f"{request.task_id} (it ended, was stopped or never ran here)",
                )
            assert attempt is not None
            agent.attempts.adopt(attempt)
        else:
            endpoint = await self._endpoint(
                request.endpoint_id, context, grpc.StatusCode.INVALID_ARGUMENT
            )
            if request.WhichOneof("input") is None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "task has no generate, chat or embed input"
                )
            try:
                path, payload = ollama_payload(request)
            except ValueError as exc:  # tools or tool-call arguments that are not JSON
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"task input: {exc}")
            attempt = agent.attempts.start(
                request, functools.partial(self._produce, endpoint, path, payload)
            )
        # A direct attempt's output goes to its FollowTask caller, not on this call.
        async for event in self._follow(attempt, context, not attempt.request.follow_token):
            yield event

    async def FollowTask(
        self,
        request: node_agent_pb2.FollowTaskRequest,
        context: grpc.aio.ServicerContext[
            node_agent_pb2.FollowTaskRequest, node_agent_pb2.FollowTaskResponse
        ],
    ) -> AsyncIterator[node_agent_pb2.FollowTaskResponse]:
        """A direct attempt's events for the holder of its follow token (a gateway)."""
        agent = self.agent
        context.set_trailing_metadata(((AGENT_TRAILER, agent.name),))
        attempt = await agent.attempts.find(request.task_id, request.attempt, FOLLOW_WAIT_SECONDS)
        if attempt is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"node {agent.name} has no attempt {request.attempt} of task {request.task_id}",
            )
        assert attempt is not None
        token = attempt.request.follow_token
        if not token or not hmac.compare_digest(token, request.follow_token):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the follow token of task {request.task_id} attempt {request.attempt} "
                "does not match",
            )
        async for event in self._follow(attempt, context):
            yield node_agent_pb2.FollowTaskResponse(
                started=event.started if event.HasField("started") else None,
                chunk=event.chunk if event.HasField("chunk") else None,
                result=event.result if event.HasField("result") else None,
            )

    async def _follow(
        self,
        attempt: Attempt,
        context: grpc.aio.ServicerContext[Any, Any],
        output: bool = True,
    ) -> AsyncIterator[node_agent_pb2.RunTaskResponse]:
        """``attempt``'s events for one call (``Attempts.follow``); the call ends with the
        attempt's own status when it failed."""
        try:
            async with contextlib.aclosing(self.agent.attempts.follow(attempt, output)) as events:
                async for event in events:
                    yield event
        except AttemptFailed as exc:
            await context.abort(exc.code, exc.message)

    async def _produce(
        self, endpoint: LocalEndpoint, path: str, payload: dict[str, Any], attempt: Attempt
    ) -> None:
        """Run ``attempt`` on ``endpoint``'s Ollama, emitting its events; raise
        AttemptFailed for how it failed."""
        agent = self.agent
        request = attempt.request
        chunk_chars = agent.config.chunk_max_chars
        chunk_seconds = agent.config.chunk_max_seconds
        loop = asyncio.get_running_loop()
        endpoint.in_flight += 1
        began = loop.time()
        outcome = "failed"
        stats = common_pb2.TaskStats()
        try:
            # The task is running here from now on: a model load, if one is needed, is
            # part of running it, not of assigning it.
            attempt.emit(
                node_agent_pb2.RunTaskResponse(
                    started=node_agent_pb2.TaskStarted(
                        node=agent.name, endpoint_id=endpoint.id, model=request.model
                    )
                )
            )
            if request.WhichOneof("input") == "embed":
                answer = await endpoint.client.post(path, payload, headers=via_headers(request.via))
                stats = task_stats(answer)
                outcome = "succeeded"
                attempt.emit(
                    node_agent_pb2.RunTaskResponse(
                        result=common_pb2.TaskResult(
                            stats=stats,
                            embeddings=[
                                common_pb2.Embedding(values=v) for v in answer.get("embeddings", [])
                            ],
                        )
                    )
                )
                return
            if request.whole:
                answer = await endpoint.client.post(
                    path, {**payload, "stream": False}, headers=via_headers(request.via)
                )
                if "error" in answer:
                    raise AttemptFailed(grpc.StatusCode.INTERNAL, f"ollama: {answer['error']}")
                message = answer.get("message") or {}
                attempt.emit(
                    node_agent_pb2.RunTaskResponse(
                        chunk=common_pb2.OutputChunk(
                            text=answer.get("response") or message.get("content") or "",
                            tool_calls=tool_calls(answer),
                            thinking=answer.get("thinking") or message.get("thinking") or "",
                            logprobs=token_logprobs(answer),
                        )
                    )
                )
                stats = task_stats(answer)
                outcome = "succeeded"
                attempt.emit(final_result(answer, stats))
                return
            answer_stream = endpoint.client.stream(path, payload, via_headers(request.via))
            async with contextlib.aclosing(answer_stream) as stream:
                seq = 0
                buffer: list[str] = []
                thought: list[str] = []
                probs: list[common_pb2.TokenLogprob] = []
                buffered = 0
                last_flush = loop.time()
                async for line in stream:
                    if "error" in line:
                        raise AttemptFailed(grpc.StatusCode.INTERNAL, f"ollama: {line['error']}")
                    message = line.get("message") or {}
                    text = line.get("response") or message.get("content") or ""
                    if text:
                        buffer.append(text)
                        buffered += len(text)
                    thinking = line.get("thinking") or message.get("thinking") or ""
                    if thinking:
                        thought.append(thinking)
                        buffered += len(thinking)
                    probs.extend(token_logprobs(line))
                    calls = tool_calls(line)
                    now = loop.time()
                    done = bool(line.get("done"))
                    if calls or (
                        (buffer or thought or probs)
                        and (
                            done
                            or seq == 0
                            or buffered >= chunk_chars
                            or now - last_flush >= chunk_seconds
                        )
                    ):
                        attempt.emit(
                            node_agent_pb2.RunTaskResponse(
                                chunk=common_pb2.OutputChunk(
                                    text="".join(buffer),
                                    seq=seq,
                                    tool_calls=calls,
                                    thinking="".join(thought),
                                    logprobs=probs,
                                )
                            )
                        )
                        thought.clear()
                        probs.clear()
                        seq += 1
                        buffer.clear()
                        buffered = 0
                        last_flush = now
                    if done:
                        stats = task_stats(line)
                        outcome = "succeeded"
                        attempt.emit(final_result(line, stats))
                        return
                raise AttemptFailed(
                    grpc.StatusCode.INTERNAL,
                    f"ollama at {endpoint.client.url} ended the stream early",
                )
        except (OllamaError, httpx.TransportError) as exc:
            raise ollama_failure(endpoint, exc, grpc.StatusCode.INTERNAL) from None
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            endpoint.in_flight -= 1
            agent.metrics.task_ended(
                endpoint.id,
                request.model,
                outcome,
                loop.time() - began,
                stats.eval_count,
                stats.eval_duration_ns,
            )

    async def _endpoint(
        self,
        endpoint_id: str,
        context: grpc.aio.ServicerContext[Any, Any],
        missing: grpc.StatusCode = grpc.StatusCode.NOT_FOUND,
    ) -> LocalEndpoint:
        """The node's endpoint ``endpoint_id``; the RPC ends with ``missing`` if there is
        none."""
        agent = self.agent
        endpoint = agent.endpoints.get(endpoint_id)
        if endpoint is None:
            await context.abort(
                missing,
                f"node {agent.name} has no endpoint {endpoint_id!r}; "
                f"it has {', '.join(agent.endpoints)}",
            )
        assert endpoint is not None
        return endpoint

    async def PullModel(
        self,
        request: node_agent_pb2.PullModelRequest,
        context: grpc.aio.ServicerContext[
            node_agent_pb2.PullModelRequest, node_agent_pb2.PullModelResponse
        ],
    ) -> AsyncIterator[node_agent_pb2.PullModelResponse]:
        """Ollama's /api/pull on one endpoint, line by line. Its "success" comes last, once
        the endpoint's models have been read again, with the seq of the heartbeat that
        announces them (sent at once): the coordinator answers success when it has it."""
        endpoint = await self._endpoint(request.endpoint_id, context)
        payload: dict[str, Any] = {"model": request.model}
        if request.insecure:
            payload["insecure"] = True
        log.info("agent %s: pulling %s onto %s", self.agent.name, request.model, endpoint.id)
        succeeded = False
        try:
            async with contextlib.aclosing(endpoint.client.stream("/api/pull", payload)) as lines:
                async for line in lines:
                    if "error" in line:
                        await context.abort(
                            grpc.StatusCode.FAILED_PRECONDITION, f"ollama: {line['error']}"
                        )
                    if line.get("status") == "success":
                        succeeded = True
                        continue  # said below, once the models are read again
                    yield node_agent_pb2.PullModelResponse(
                        status=str(line.get("status", "")),
                        digest=str(line.get("digest", "")),
                        total=int(line.get("total") or 0),
                        completed=int(line.get("completed") or 0),
                    )
        except (OllamaError, httpx.TransportError) as exc:
            await _abort_for(context, endpoint, exc, grpc.StatusCode.FAILED_PRECONDITION)
        if not succeeded:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"ollama {endpoint.id} at {endpoint.client.url} ended the pull before its success",
            )
        yield node_agent_pb2.PullModelResponse(
            status="success", announced_seq=await self._models_changed(endpoint)
        )

    async def DeleteModel(
        self,
        request: node_agent_pb2.DeleteModelRequest,
        context: grpc.aio.ServicerContext[
            node_agent_pb2.DeleteModelRequest, node_agent_pb2.DeleteModelResponse
        ],
    ) -> node_agent_pb2.DeleteModelResponse:
        """Ollama's /api/delete on one endpoint; its models are read again and announced
        at once, the answer carrying the seq of the heartbeat that does. A model Ollama did
        not have (its 404) is ``absent``, not an error: the endpoint is as asked."""
        endpoint = await self._endpoint(request.endpoint_id, context)
        log.info("agent %s: removing %s from %s", self.agent.name, request.model, endpoint.id)
        absent = ""
        try:
            await endpoint.client.delete(request.model)
        except OllamaError as exc:
            if exc.status != 404:
                await _abort_for(context, endpoint, exc, grpc.StatusCode.FAILED_PRECONDITION)
            absent = f"ollama {endpoint.id} ({exc.status}): {exc.message}"
        except httpx.TransportError as exc:
            await _abort_for(context, endpoint, exc, grpc.StatusCode.FAILED_PRECONDITION)
        return node_agent_pb2.DeleteModelResponse(
            announced_seq=await self._models_changed(endpoint), absent=absent
        )

    async def _models_changed(self, endpoint: LocalEndpoint) -> int:
        """Read ``endpoint``'s models again and have them announced now; the seq of the
        heartbeat that announces them (Agent.models_changed)."""
        await endpoint.refresh(full=True)
        return self.agent.models_changed()

    async def GetNode(
        self,
        request: node_agent_pb2.GetNodeRequest,
        context: grpc.aio.ServicerContext[
            node_agent_pb2.GetNodeRequest, node_agent_pb2.GetNodeResponse
        ],
    ) -> node_agent_pb2.GetNodeResponse:
        return node_agent_pb2.GetNodeResponse(
            node=self.agent.node_info(),
            telemetry=await self.agent.telemetry(),
            running_task_ids=self.agent.attempts.running_ids(),
        )
