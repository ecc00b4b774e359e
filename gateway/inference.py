"""Streams of one LLM request through InferenceService, shared by the Ollama- and
OpenAI-compatible APIs.

A stream is opened and read up to its first piece of output before the HTTP response
starts, so that a refusal (unknown model, no capacity) still becomes a proper HTTP
status; later failures can only be reported inside the body. Closing the stream
cancels the RPC, which cancels the request at the node's Ollama.

A chat whose ``tool_choice`` demands a call (``hive.tool_calls.ToolChoice``) is read whole
before the HTTP response starts, streamed or not, so that an answer without the call is
asked again, and one that still has none is the API's error, never text that pretends to
comply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from gateway.problems import ApiError
from gateway.upstream import UNARY_TIMEOUT_SECONDS, Upstream
from hive import limits
from hive.agent_channels import AgentChannels
from hive.coordinators import COORDINATOR_TRAILER, LEADER_TRAILER, CoordinatorChannel
from hive.models import tagged
from hive.serving import trailer_keys
from hive.tool_calls import ToolChoice, tool_name
from hive.v1 import common_pb2, inference_pb2, node_agent_pb2

Event = inference_pb2.GenerateResponse | inference_pb2.ChatResponse

# The longest a single generation may run through the gateway.
GENERATION_TIMEOUT_SECONDS = 3600.0
# A whole answer cut by a coordinator failover is asked again this many times at most.
WHOLE_ANSWER_RETRIES = 2

log = logging.getLogger("hive.gateway.inference")


@dataclass
class Piece:
    """One step of a generation: text (and tool calls), or the final result (never both)."""

    text: str = ""
    result: common_pb2.TaskResult | None = None
    tool_calls: list[common_pb2.ToolCall] = field(default_factory=list)
    thinking: str = ""
    logprobs: list[common_pb2.TokenLogprob] = field(default_factory=list)


@dataclass
class Generation:
    """One call's events as pieces of output. A direct call (``agents`` set) reads its
    output from the agent each assignment names (FollowTask) and only assignments from the
    coordinator's stream: an assignment that moves (a retry elsewhere) before any output
    was handed out is followed there; once the agent's stream has given the result the
    coordinator's is drained in the background (its task's accounting), not cancelled, and
    an answer whose agent keeps streaming outlives a coordinator that went away."""

    call: Any  # grpc.aio.UnaryStreamCall of GenerateResponse or ChatResponse
    assigned: inference_pb2.TaskAssignment | None = None
    _ahead: list[Piece] = field(default_factory=list)
    # Makes the same call again (a whole answer cut by a coordinator failover), on the
    # channel that follows the leader (moved first: the call's coordinator went away).
    again: Callable[[], Any] | None = None
    channel: CoordinatorChannel | None = None
    moves: int = 0  # the channel's generation when the call was made
    # Direct: the agents' channels, the FollowTask call under way, whether a piece was
    # handed out (no other attempt may be followed after that) and whether the result was.
    agents: AgentChannels | None = None
    _follow: Any = None
    _handed: bool = False
    _finished: bool = False
    _ended: bool = False
    # At most one tool call is handed out (parallel calls turned off): the first.
    one_call: bool = False
    _calls_out: int = 0

    def retry(self) -> Generation:
        assert self.again is not None
        moves = self.channel.generation if self.channel is not None else 0
        return Generation(
            self.again(),
            again=self.again,
            channel=self.channel,
            moves=moves,
            agents=self.agents,
            one_call=self.one_call,
        )

    async def leave(self, err: grpc.aio.AioRpcError) -> None:
        """Move the channel off the coordinator that dropped this call (unless it moved
        since), so that the call made again goes to the new leader."""
        if self.channel is not None:
            await self.channel.move(err, self.moves)

    async def _next(self) -> Piece | None:
        """The next chunk or result; assignments (and re-assignments) are recorded. None
        once the answer has ended (and again after that: a held answer is read to its end
        before it is handed out)."""
        if self._ended:
            return None
        piece = await self._next_piece()
        if piece is None:
            self._ended = True
        else:
            self._handed = True
        return piece

    async def _next_piece(self) -> Piece | None:
        while True:
            if self._finished:
                return None
            if self._follow is not None:
                try:
                    followed: Any = await self._follow.read()
                except grpc.aio.AioRpcError as err:
                    self._follow = None
                    if self._handed:
                        raise
                    log.info("task %s: lost its agent's stream (%s)", self.task_id, err.details())
                    continue  # the coordinator's stream says what comes next
                if followed is grpc.aio.EOF:
                    self._follow, self._finished = None, True
                    return None
                if followed.HasField("chunk"):
                    return _piece(followed.chunk)
                if followed.HasField("result"):
                    self._finished = True
                    return Piece(result=followed.result)
                continue  # TaskStarted
            event: Event | Any = await self.call.read()
            if event is grpc.aio.EOF:
                return None
            if event.HasField("assigned"):
                self.assigned = event.assigned
                if self.agents is not None and event.assigned.follow_token:
                    self._follow_agent(event.assigned)
            elif event.HasField("chunk"):
                return _piece(event.chunk)
            elif event.HasField("result"):
                if self.agents is not None and not self._handed:
                    # The answer went to an agent stream this gateway lost: say so, never
                    # an empty answer.
                    raise _unavailable("the answer's output stream from its node was lost")
                return Piece(result=event.result)

    def _follow_agent(self, assigned: inference_pb2.TaskAssignment) -> None:
        if self._follow is not None:
            self._follow.cancel()
        assert self.agents is not None
        stub = self.agents.stub(assigned.agent_address, assigned.node)
        self._follow = stub.FollowTask(
            node_agent_pb2.FollowTaskRequest(
                task_id=assigned.task_id,
                attempt=assigned.attempt,
                follow_token=assigned.follow_token,
            ),
            timeout=GENERATION_TIMEOUT_SECONDS,
        )

    async def prefetch(self) -> None:
        """Read until the first output, raising the RPC's error if it fails before that."""
        piece = await self._next()
        if piece is not None:
            self._ahead.append(piece)

    async def hold(self) -> None:
        """Read the whole answer now; ``pieces`` hands it out afterwards. Closed (the call
        cancelled) if reading fails."""
        try:
            while (piece := await self._next()) is not None:
                self._ahead.append(piece)
        except BaseException:
            self.close()
            raise

    def held_calls(self) -> list[common_pb2.ToolCall]:
        """The tool calls among the pieces read ahead (all of them, after ``hold``)."""
        return [c for p in self._ahead for c in p.tool_calls]

    async def pieces(self) -> AsyncIterator[Piece]:
        try:
            while self._ahead:
                yield self._trimmed(self._ahead.pop(0))
            while (piece := await self._next()) is not None:
                yield self._trimmed(piece)
        finally:
            self.close()

    def _trimmed(self, piece: Piece) -> Piece:
        """``piece`` without the tool calls past the first, when only one may be made."""
        if self.one_call and piece.tool_calls:
            piece.tool_calls = piece.tool_calls[: max(0, 1 - self._calls_out)]
            self._calls_out += len(piece.tool_calls)
        return piece

    def close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            self._follow = None
        if self._finished:
            # The agent gave the whole answer; the coordinator's stream ends with the same
            # result in a moment: read it out, so the task counts as succeeded, not as
            # cancelled.
            task = asyncio.create_task(_drain(self.call))
            _DRAINING.add(task)
            task.add_done_callback(_DRAINING.discard)
        else:
            self.call.cancel()

    @property
    def task_id(self) -> str:
        return self.assigned.task_id if self.assigned is not None else ""


async def generate(upstream: Upstream, request: inference_pb2.GenerateRequest) -> Generation:
    request.direct = upstream.direct and not request.whole

    def call() -> Any:
        return upstream.inference.Generate(request, timeout=GENERATION_TIMEOUT_SECONDS)

    return await _started(_first(upstream, call, request.direct))


async def chat(
    upstream: Upstream, request: inference_pb2.ChatRequest, choice: ToolChoice | None = None
) -> Generation:
    """A chat of ``request`` (whose ``tools`` are all the caller's), honouring ``choice``:
    the model is offered the tools it allows; with a choice that demands a call the
    answer is read whole (``whole``, streamed or not) and, when it makes no call the
    choice takes, asked once more with the demand added as a last system message (a
    model that ignored the tools is told; the same question alone would mostly get the
    same answer). ToolChoiceUnmet if that answer makes none either.

    The second asking is routed like the first: the contract has no way to ask for the
    same node, and the router puts it where the model is loaded, mostly the first's."""
    choice = choice or ToolChoice()
    offered = choice.offered(request.tools)
    del request.tools[:]
    request.tools.extend(offered)
    if not choice.demands_call:
        generation = await _open_chat(upstream, request)
        generation.one_call = choice.single
        return generation
    names = [name for t in offered if (name := tool_name(t))]
    request.whole = True
    generation = await _held(await _open_chat(upstream, request))
    if choice.honoured_by(generation.held_calls(), names):
        generation.one_call = choice.single
        return generation
    log.info(
        "task %s: tool_choice %s: %s; asking again",
        generation.task_id or "?",
        choice.said,
        choice.unmet(generation.held_calls(), names),
    )
    generation.close()
    again = inference_pb2.ChatRequest()
    again.CopyFrom(request)
    again.messages.append(common_pb2.ChatMessage(role="system", content=choice.reask(names)))
    second = await _held(await _open_chat(upstream, again))
    if choice.honoured_by(second.held_calls(), names):
        second.one_call = choice.single
        return second
    second.close()
    why = choice.unmet(second.held_calls(), names)
    log.warning(
        "tasks %s, %s: tool_choice %s: %s, asked twice; refused",
        generation.task_id or "?",
        second.task_id or "?",
        choice.said,
        why,
    )
    raise ToolChoiceUnmet(choice, why, (generation.task_id, second.task_id))


class ToolChoiceUnmet(Exception):
    """The model answered without the call ``tool_choice`` demands, twice (the second
    time told to make it); ``why`` says what it did instead."""

    def __init__(self, choice: ToolChoice, why: str, tasks: tuple[str, str]) -> None:
        self.choice = choice
        self.why = why
        self.tasks = tasks
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return (
            f"tool_choice {self.choice.said} could not be honoured: {self.why}, "
            "asked twice (the second time told to call it)"
        )


async def _open_chat(upstream: Upstream, request: inference_pb2.ChatRequest) -> Generation:
    request.direct = upstream.direct and not request.whole

    def call() -> Any:
        return upstream.inference.Chat(request, timeout=GENERATION_TIMEOUT_SECONDS)

    return await _started(_first(upstream, call, request.direct))


def _first(upstream: Upstream, call: Callable[[], Any], direct: bool) -> Generation:
    channel = upstream.channel
    return Generation(
        call(),
        again=call,
        channel=channel,
        moves=channel.generation,
        agents=upstream.agents if direct else None,
    )


def _piece(chunk: common_pb2.OutputChunk) -> Piece:
    return Piece(chunk.text, None, list(chunk.tool_calls), chunk.thinking, list(chunk.logprobs))


# Coordinator streams of direct answers, read out after the agent gave the result.
_DRAINING: set[asyncio.Task[None]] = set()
DRAIN_SECONDS = 30.0


async def _drain(call: Any) -> None:
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while await call.read() is not grpc.aio.EOF:
                pass
    except (grpc.aio.AioRpcError, TimeoutError):
        pass  # the coordinator went away, or never ended it: nothing to read out
    finally:
        call.cancel()


def _unavailable(details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details
    )


async def embed(
    upstream: Upstream, request: inference_pb2.EmbedRequest
) -> inference_pb2.EmbedResponse:
    """Embeddings of ``request.input``, routed like any task (unary: vectors come at once)."""
    reply: inference_pb2.EmbedResponse = await upstream.inference.Embed(
        request, timeout=GENERATION_TIMEOUT_SECONDS
    )
    return reply


async def _started(generation: Generation) -> Generation:
    """``generation`` once its first event is in; closed (the call cancelled) if that fails.
    Until then the client has been sent nothing, so a call its coordinator dropped by going
    away (``coordinator_went``) is made again, on the new leader (``_ask_again``)."""
    retries = 0
    while True:
        try:
            await generation.prefetch()
        except grpc.aio.AioRpcError as err:
            generation.close()
            generation = await _ask_again(generation, err, retries, "before the first output")
            retries += 1
            continue
        except BaseException:
            generation.close()
            raise
        return generation


async def _ask_again(
    generation: Generation, err: grpc.aio.AioRpcError, retries: int, when: str
) -> Generation:
    """The same call, made again on the new leader, when ``err`` says the coordinator went
    away (``when`` in the answer) and fewer than ``WHOLE_ANSWER_RETRIES`` were made; else
    ``err`` is the caller's and is raised."""
    if generation.again is None or retries >= WHOLE_ANSWER_RETRIES or not coordinator_went(err):
        raise err
    log.warning(
        "task %s: the coordinator went away %s (%s); asking the leader again",
        generation.task_id or "?",
        when,
        err.details(),
    )
    await generation.leave(err)
    return generation.retry()


@dataclass
class Collected:
    """A whole generation: its text, the tools it called and its final result."""

    text: str
    tool_calls: list[common_pb2.ToolCall]
    result: common_pb2.TaskResult
    thinking: str = ""
    logprobs: list[common_pb2.TokenLogprob] = field(default_factory=list)


async def collect(generation: Generation) -> Collected:
    """The whole text, tool calls and final result of a generation.

    A whole answer has sent its client nothing yet, so when the coordinator running it
    goes away mid-answer (a failover among several coordinators: the stream ends
    UNAVAILABLE from a transport that broke, or a standby) it is asked again, of the new
    leader, at most ``WHOLE_ANSWER_RETRIES`` times; the partial answer is dropped. The
    leader's own refusals are the caller's, as before."""
    retries = 0
    while True:
        try:
            return await _collect_once(generation)
        except grpc.aio.AioRpcError as err:
            generation = await _started(await _ask_again(generation, err, retries, "mid-answer"))
            retries += 1


async def _held(generation: Generation) -> Generation:
    """``generation`` read whole (``Generation.hold``), its pieces kept to be handed out;
    asked again of the new leader when its coordinator goes away mid-answer, as
    ``collect`` does."""
    retries = 0
    while True:
        try:
            await generation.hold()
            return generation
        except grpc.aio.AioRpcError as err:
            generation = await _started(await _ask_again(generation, err, retries, "mid-answer"))
            retries += 1


def coordinator_went(err: grpc.aio.AioRpcError) -> bool:
    """The call failed because its coordinator went away (or is a standby now), not by
    its own refusal: UNAVAILABLE without the coordinator's own trailer."""
    if err.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    keys = trailer_keys(err)
    return LEADER_TRAILER in keys or COORDINATOR_TRAILER not in keys


async def _collect_once(generation: Generation) -> Collected:
    parts: list[str] = []
    thought: list[str] = []
    calls: list[common_pb2.ToolCall] = []
    probs: list[common_pb2.TokenLogprob] = []
    result = common_pb2.TaskResult()
    async for piece in generation.pieces():
        if piece.result is not None:
            result = piece.result
        else:
            parts.append(piece.text)
            thought.append(piece.thinking)
            calls.extend(piece.tool_calls)
            probs.extend(piece.logprobs)
    return Collected("".join(parts), calls, result, "".join(thought), probs)


def logprobs_json(
    entries: Sequence[common_pb2.TokenLogprob], *, openai: bool = False
) -> list[dict[str, Any]]:
    """Tokens' log probabilities as Ollama's ``logprobs`` entries, or, with ``openai``, as
    OpenAI's ``logprobs.content`` entries (which always carry ``top_logprobs``)."""

    def one(e: common_pb2.TokenLogprob, top: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"token": e.token, "logprob": e.logprob, "bytes": list(e.bytes)}
        if top and (openai or e.top_logprobs):
            out["top_logprobs"] = [one(t, False) for t in e.top_logprobs]
        return out

    return [one(e, True) for e in entries]


def sse_event(data: dict[str, Any]) -> bytes:
    """A server-sent event named by its data's ``type`` (Anthropic's and the Responses
    API's streams name every event so)."""
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def function_tool(name: str, description: str, parameters: dict[str, Any]) -> str:
    """A tool as the contract carries it: Ollama's ``{"type": "function", "function":
    {...}}``, as JSON text."""
    function = {"name": name, "description": description, "parameters": parameters}
    return json.dumps({"type": "function", "function": function})


def data_url_base64(url: str) -> str | None:
    """The base64 data of a ``data:...;base64,...`` URL (images as Ollama takes them); None
    for any other URL, which neither Ollama nor the gateway fetches."""
    if not url.startswith("data:") or ";base64," not in url:
        return None
    return url.split(";base64,", 1)[1]


def think(value: bool | str | None) -> str:
    """Ollama's ``think`` as the contract carries it ("" when the caller left it out)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def tool_arguments(call: common_pb2.ToolCall) -> Any:
    """A call's arguments as an object (what Ollama's API shows)."""
    try:
        return json.loads(call.arguments_json or "{}")
    except ValueError:
        return {}


async def _cluster_model(upstream: Upstream, model: str) -> inference_pb2.ClusterModel | None:
    """What the nodes report of ``model`` (None: no node has it); AioRpcError if the
    coordinator cannot be asked."""
    reply = await upstream.inference.ListModels(
        inference_pb2.ListModelsRequest(), timeout=UNARY_TIMEOUT_SECONDS
    )
    wanted = tagged(model)
    return next((m for m in reply.models if m.info.name == wanted), None)


async def model_is_unknown_now(upstream: Upstream, model: str) -> bool:
    """No node reports ``model``; AioRpcError if the coordinator cannot be asked."""
    return await _cluster_model(upstream, model) is None


async def thinks(upstream: Upstream, model: str) -> bool:
    """Whether the nodes report ``model`` as a thinking model (Ollama's "thinking"
    capability); False when they do not say, or cannot be asked."""
    try:
        found = await _cluster_model(upstream, model)
    except grpc.aio.AioRpcError:
        return False
    return found is not None and "thinking" in found.info.capabilities


async def model_is_unknown(upstream: Upstream, err: grpc.aio.AioRpcError, model: str) -> bool:
    """Whether an RPC failed because no node has ``model`` (checked only on the error path)."""
    if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
        return False
    try:
        return await _cluster_model(upstream, model) is None
    except grpc.aio.AioRpcError:
        return err.code() == grpc.StatusCode.NOT_FOUND


_Error = TypeVar("_Error", bound=ApiError)


async def refusal(
    api: type[_Error], upstream: Upstream, err: grpc.aio.AioRpcError, model: str
) -> _Error:
    """The coordinator's refusal of a request for ``model`` as ``api``'s error: its
    "model not found" when no node has the model, else the row of ``problems.REFUSALS``
    for the gRPC status."""
    if await model_is_unknown(upstream, err, model):
        return api.model_not_found(model)
    return api.from_rpc(err)


# A duration of zero as Go writes one: "0", "0s", "0.0m", "0h0m0s", ...
_ZERO_DURATION = re.compile(r"^[+-]?(?:0+(?:\.0*)?(?:ns|us|µs|ms|s|m|h)?)+$")


def unloads(value: str | float | None) -> bool:
    """Whether ``keep_alive`` is zero: with no prompt, Ollama then unloads the model."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(_ZERO_DURATION.match(value.strip()))
    return value == 0


async def unload(upstream: Upstream, model: str) -> inference_pb2.UnloadResponse:
    """Unload ``model`` from every endpoint that has it loaded."""
    reply: inference_pb2.UnloadResponse = await upstream.inference.Unload(
        inference_pb2.UnloadRequest(model=model), timeout=GENERATION_TIMEOUT_SECONDS
    )
    return reply


def keep_alive(value: str | float | None) -> str:
    """Ollama's keep_alive (a duration string, or a number of seconds) as the contract
    carries it: a Go duration string ("" for none). OutOfRange past Ollama's bounds."""
    return limits.keep_alive(value)
