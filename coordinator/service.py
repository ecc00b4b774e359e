"""gRPC servicers of the coordinator: the agents' sessions (AgentSessionService) and
inference with model management (InferenceService: checked by ``coordinator.requests`` and
``coordinator.capabilities``, then relayed through the dispatcher). ClusterService is in
``coordinator.cluster_service``.

Domain errors become gRPC statuses here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from coordinator.access import AccessBook
from coordinator.capabilities import ModelCapabilities, chat_needs, generate_needs
from coordinator.dispatch import (
    Assigned,
    AttemptsExhausted,
    Dispatcher,
    NoCapacity,
    Overloaded,
    RoutingLoop,
    UnknownModel,
)
from coordinator.registry import (
    ConflictingRegistration,
    InvalidRegistration,
    NodeRecord,
    NodeState,
    Registry,
)
from coordinator.requests import (
    MAX_EMBED_INPUTS,
    check_limits,
    check_model,
    check_size,
    check_think,
    check_top_logprobs,
    tools_problem,
)
from hive import __version__
from hive.config import CLUSTER_NAME
from hive.coordinators import COORDINATOR_TRAILER
from hive.limits import MAX_DIMENSIONS
from hive.tls import peer_name
from hive.v1 import (
    agent_session_pb2,
    agent_session_pb2_grpc,
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    node_agent_pb2,
)

log = logging.getLogger("hive.coordinator")

REGISTER_TIMEOUT_SECONDS = 10.0
# Federated clusters a request may have passed through.
MAX_VIA = 16


class AgentSessionServicer(agent_session_pb2_grpc.AgentSessionServiceServicer):
    """Agent sessions. With ``verify_names`` (mTLS on) a node may register only under the
    name its certificate carries; a node in ``access``'s revoked list may not register.
    Of the tasks a Register re-reports, those ``keeps`` says no to are named abandoned in
    the Welcome (the agent stops them)."""

    def __init__(
        self,
        registry: Registry,
        heartbeat_interval: float,
        *,
        access: AccessBook | None = None,
        verify_names: bool = False,
        keeps: Callable[[str], bool] = lambda task_id: False,
    ) -> None:
        self.registry = registry
        self.heartbeat_interval = heartbeat_interval
        self.access = access
        self.verify_names = verify_names
        self.keeps = keeps

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_session_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[
            agent_session_pb2.ConnectRequest, agent_session_pb2.ConnectResponse
        ],
    ) -> AsyncIterator[agent_session_pb2.ConnectResponse]:
        try:
            async with asyncio.timeout(REGISTER_TIMEOUT_SECONDS):
                first = await anext(aiter(request_iterator))
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"no Register message within {REGISTER_TIMEOUT_SECONDS:.0f}s of connecting",
            )
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "register":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message of a session must be register, "
                f"got {first.WhichOneof('message')}",
            )
        name = first.register.node.name
        if self.verify_names:
            certified = peer_name(context)
            if certified != name:
                log.warning(
                    "refused a session from %s: certificate is for %s, not %s",
                    context.peer(),
                    certified,
                    name,
                )
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"certificate is for {certified}, not {name}",
                )
        if self.access is not None and self.access.node_revoked(name):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"node {name} is revoked")
        try:
            record = self.registry.attach(first.register, context.peer())
        except InvalidRegistration as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ConflictingRegistration as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        yield agent_session_pb2.ConnectResponse(
            welcome=agent_session_pb2.Welcome(
                session_id=record.session_id,
                heartbeat_interval_seconds=self.heartbeat_interval,
                lost_after_seconds=self.registry.lost_after,
                coordinator_version=__version__,
                draining=record.draining,
                abandoned_task_ids=[
                    t for t in first.register.running_task_ids if not self.keeps(t)
                ],
            )
        )
        reader = asyncio.create_task(self._read(record, request_iterator))
        reason = "stream closed"
        try:
            while True:
                message = await record.outbound.get()
                if message is None:
                    break
                yield message
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                reason = await reader
            self.registry.detach(record, reason)

    async def _read(
        self, record: NodeRecord, requests: AsyncIterator[agent_session_pb2.ConnectRequest]
    ) -> str:
        """Consume the agent's messages; end the session when its side closes or breaks."""
        reason = "agent closed the session"
        try:
            async for message in requests:
                kind = message.WhichOneof("message")
                if kind == "heartbeat":
                    self.registry.heartbeat(record, message.heartbeat)
                elif kind == "ack":
                    self.registry.acknowledged(message.ack)
                    if not message.ack.ok:
                        log.warning(
                            "node %s: control %s failed: %s",
                            record.name,
                            message.ack.request_id,
                            message.ack.error,
                        )
                else:
                    reason = f"unexpected {kind} after register"
                    break
        except grpc.aio.AioRpcError as err:
            reason = f"stream broken: {err.code().name}"
        except asyncio.CancelledError:
            reason = "session ended"
            raise
        finally:
            record.outbound.put_nowait(None)
        return reason


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, registry: Registry, dispatcher: Dispatcher) -> None:
        self.registry = registry
        self.dispatcher = dispatcher
        self.capabilities = ModelCapabilities(registry)

    async def _check_capable(
        self,
        model: str,
        needs: Sequence[str],
        call: str,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Refuse, before routing, what no endpoint's Ollama says the model can do."""
        if problem := self.capabilities.refusal(model, needs, call):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    async def _route(
        self, via: Sequence[str], context: grpc.aio.ServicerContext[Any, Any]
    ) -> list[str]:
        """Federation: the clusters a request has passed through (the dispatcher adds this
        one); a request that has been here already is a routing loop, refused."""
        name = self.dispatcher.cluster_name
        if len(via) > MAX_VIA:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"via names {len(via)} clusters; at most {MAX_VIA} (a routing loop?)",
            )
        for passed in via:
            if not CLUSTER_NAME.match(passed):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"via: {passed[:140]!r} is not a cluster name ({CLUSTER_NAME.pattern})",
                )
        if name and name in via:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"routing loop: this request has already passed through Hive cluster "
                f"{name!r} (via {' -> '.join(via)}); a federated cluster's node leads back here",
            )
        return list(via)

    async def Generate(
        self,
        request: inference_pb2.GenerateRequest,
        context: grpc.aio.ServicerContext[
            inference_pb2.GenerateRequest, inference_pb2.GenerateResponse
        ],
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        context.set_trailing_metadata(((COORDINATOR_TRAILER, "1"),))
        model = await check_model(request.model, context)
        size = len(request.prompt) + len(request.system) + len(request.suffix)
        size += sum(map(len, request.images))
        await check_size(size, "prompt is", context)
        await check_think(request.think, context)
        await check_top_logprobs(request.top_logprobs, context)
        keep_alive = await check_limits(request.keep_alive, request.options, context)
        await self._check_capable(model, generate_needs(request), "generate", context)
        run = node_agent_pb2.RunTaskRequest(
            task_id=_task_id(),
            model=model,
            type=request.task_type or common_pb2.TASK_TYPE_INFERENCE,
            generate=node_agent_pb2.GenerateInput(
                prompt=request.prompt,
                system=request.system,
                format=request.format,
                raw=request.raw,
                suffix=request.suffix,
                images=request.images,
            ),
            options=request.options,
            keep_alive=keep_alive,
            think=request.think,
            logprobs=request.logprobs,
            top_logprobs=request.top_logprobs,
            via=await self._route(request.via, context),
            whole=request.whole,
        )
        relay = self._relay(run, request.priority, context, request.direct)
        async for assigned, chunk, result in relay:
            yield inference_pb2.GenerateResponse(assigned=assigned, chunk=chunk, result=result)

    async def Chat(
        self,
        request: inference_pb2.ChatRequest,
        context: grpc.aio.ServicerContext[inference_pb2.ChatRequest, inference_pb2.ChatResponse],
    ) -> AsyncIterator[inference_pb2.ChatResponse]:
        context.set_trailing_metadata(((COORDINATOR_TRAILER, "1"),))
        model = await check_model(request.model, context)
        if not request.messages:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "messages must not be empty")
        size = sum(len(m.content) + sum(map(len, m.images)) for m in request.messages)
        size += sum(map(len, request.tools))
        await check_size(size, "messages and tools hold", context)
        if problem := tools_problem(request):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        await check_think(request.think, context)
        await check_top_logprobs(request.top_logprobs, context)
        keep_alive = await check_limits(request.keep_alive, request.options, context)
        await self._check_capable(model, chat_needs(request), "chat", context)
        run = node_agent_pb2.RunTaskRequest(
            task_id=_task_id(),
            model=model,
            type=request.task_type or common_pb2.TASK_TYPE_INFERENCE,
            chat=node_agent_pb2.ChatInput(
                messages=request.messages, format=request.format, tools=request.tools
            ),
            options=request.options,
            keep_alive=keep_alive,
            think=request.think,
            logprobs=request.logprobs,
            top_logprobs=request.top_logprobs,
            via=await self._route(request.via, context),
            whole=request.whole,
        )
        relay = self._relay(run, request.priority, context, request.direct)
        async for assigned, chunk, result in relay:
            yield inference_pb2.ChatResponse(assigned=assigned, chunk=chunk, result=result)

    async def Embed(
        self,
        request: inference_pb2.EmbedRequest,
        context: grpc.aio.ServicerContext[inference_pb2.EmbedRequest, inference_pb2.EmbedResponse],
    ) -> inference_pb2.EmbedResponse:
        model = await check_model(request.model, context)
        # No input is a load of the model where the router puts it, as Ollama's /api/embed
        # loads the model for an empty input and answers no vectors.
        if len(request.input) > MAX_EMBED_INPUTS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(request.input)} inputs; the limit is {MAX_EMBED_INPUTS} per request "
                "(split them into several requests)",
            )
        await check_size(sum(len(text) for text in request.input), "inputs hold", context)
        if request.dimensions > MAX_DIMENSIONS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"dimensions must be between 1 and {MAX_DIMENSIONS}, not {request.dimensions}",
            )
        keep_alive = await check_limits(request.keep_alive, request.options, context)
        embed = node_agent_pb2.EmbedInput(input=request.input, dimensions=request.dimensions)
        if request.HasField("truncate"):
            embed.truncate = request.truncate
        run = node_agent_pb2.RunTaskRequest(
            task_id=_task_id(),
            model=model,
            type=common_pb2.TASK_TYPE_INFERENCE,
            embed=embed,
            options=request.options,
            keep_alive=keep_alive,
            via=await self._route(request.via, context),
        )
        reply = inference_pb2.EmbedResponse()
        async for assigned, _, result in self._relay(run, request.priority, context):
            if assigned is not None:
                reply.assigned.CopyFrom(assigned)
            if result is not None:
                reply.result.CopyFrom(result)
        return reply

    async def _relay(
        self,
        run: node_agent_pb2.RunTaskRequest,
        priority: int,
        context: grpc.aio.ServicerContext[Any, Any],
        direct: bool = False,
    ) -> AsyncIterator[
        tuple[
            inference_pb2.TaskAssignment | None,
            common_pb2.OutputChunk | None,
            common_pb2.TaskResult | None,
        ]
    ]:
        """Run the task; yield (assignment, chunk, result) with exactly one set per step.
        ``direct``: the output is read from the agent (the assignment says where)."""
        try:
            remaining = context.time_remaining()
            async for event in self.dispatcher.run(run, priority, remaining, direct=direct):
                if isinstance(event, Assigned):
                    yield (
                        inference_pb2.TaskAssignment(
                            task_id=event.task_id,
                            node=event.placement.node,
                            endpoint_id=event.placement.endpoint_id,
                            attempt=event.attempt,
                            agent_address=event.placement.agent_address if direct else "",
                            follow_token=event.follow_token,
                        ),
                        None,
                        None,
                    )
                elif event.HasField("chunk"):
                    yield None, event.chunk, None
                elif event.HasField("result"):
                    yield None, None, event.result
        except RoutingLoop as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except UnknownModel as exc:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no node in the cluster has model {exc.args[0]!r}; models available: "
                f"{', '.join(self.registry.summary().models) or 'none'}",
            )
        except NoCapacity as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Overloaded as exc:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                str(exc),
                trailing_metadata=(("retry-after-ms", str(int(exc.retry_after_seconds * 1000))),),
            )
        except AttemptsExhausted as exc:
            await context.abort(exc.code, str(exc))
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or err.code().name)

    async def ListModels(
        self,
        request: inference_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[
            inference_pb2.ListModelsRequest, inference_pb2.ListModelsResponse
        ],
    ) -> inference_pb2.ListModelsResponse:
        models: dict[str, inference_pb2.ClusterModel] = {}
        for record in self.registry:
            loaded = {(e.id, m.name) for e in record.telemetry.endpoints for m in e.loaded_models}
            for endpoint in record.info.endpoints:
                where = f"{record.name}/{endpoint.id}"
                for model in endpoint.models:
                    entry = models.setdefault(model.name, inference_pb2.ClusterModel(info=model))
                    entry.endpoints.append(where)
                    if (endpoint.id, model.name) in loaded:
                        entry.loaded_on.append(where)
        return inference_pb2.ListModelsResponse(models=[models[k] for k in sorted(models)])

    async def Pull(
        self,
        request: inference_pb2.PullRequest,
        context: grpc.aio.ServicerContext[inference_pb2.PullRequest, inference_pb2.PullResponse],
    ) -> AsyncIterator[inference_pb2.PullResponse]:
        """Each endpoint's pull, its progress lines labelled with it. First, before any
        progress, a "pulling manifest" line for every endpoint it acts on (so a client can
        count each layer's bytes on all of them from that layer's first line); an endpoint's
        "success" comes once the registry has its new models (it is routed to from then)."""
        model = await check_model(request.model, context)
        live, targets = await self._targets(request.endpoints, model, False, context)
        if not targets:
            yield inference_pb2.PullResponse(status="success")
            return
        log.info("pull %s onto %s", model, ", ".join(targets))
        for where in targets:
            yield inference_pb2.PullResponse(endpoint=where, status="pulling manifest")
        out: asyncio.Queue[inference_pb2.PullResponse | None] = asyncio.Queue()
        pulls = [
            asyncio.create_task(
                _pull_one(
                    self.dispatcher.channels.stub(record.info.agent_address, record.name),
                    where,
                    node_agent_pb2.PullModelRequest(
                        endpoint_id=endpoint.id, model=model, insecure=request.insecure
                    ),
                    out,
                    functools.partial(self._announced, record, endpoint.id, model, True),
                )
            )
            for where in targets
            for record, endpoint in [live[where]]
        ]
        try:
            running = len(pulls)
            while running:
                line = await out.get()
                if line is None:
                    running -= 1
                else:
                    yield line
        finally:
            for pull in pulls:
                pull.cancel()

    async def Delete(
        self,
        request: inference_pb2.DeleteRequest,
        context: grpc.aio.ServicerContext[
            inference_pb2.DeleteRequest, inference_pb2.DeleteResponse
        ],
    ) -> inference_pb2.DeleteResponse:
        """Remove the model from each endpoint, answering once the registry has every
        endpoint's models as they are after it (it is no longer routed to). NOT_FOUND when
        no endpoint has it: none is known to, or each one's Ollama said so (the endpoints
        were not named)."""
        model = await check_model(request.model, context)
        live, targets = await self._targets(request.endpoints, model, True, context)
        if not targets:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {model!r} not found")

        async def delete(where: str) -> tuple[str, str]:
            """(why it failed, why the model was not there): both "" when removed."""
            record, endpoint = live[where]
            stub = self.dispatcher.channels.stub(record.info.agent_address, record.name)
            ask = node_agent_pb2.DeleteModelRequest(endpoint_id=endpoint.id, model=model)
            try:
                reply = await stub.DeleteModel(ask, timeout=NODE_ANSWER_SECONDS)
            except grpc.aio.AioRpcError as err:
                return err.details() or err.code().name, ""
            return (
                await self._announced(record, endpoint.id, model, False, reply.announced_seq),
                reply.absent,
            )

        outcomes = await asyncio.gather(*(delete(where) for where in targets))
        absent = [where for where, (error, gone) in zip(targets, outcomes, strict=True) if gone]
        if request.endpoints:  # named: an endpoint without the model is not as asked
            errors = [error or gone for error, gone in outcomes]
        else:  # the registry thought it there; its Ollama had lost it: nothing to remove
            errors = [error for error, _ in outcomes]
            if len(absent) == len(targets):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"model {model!r} not found")
        done, failed = _outcomes(targets, errors)
        done = [where for where in done if where not in absent]
        log.info("delete %s: from %s; failed %s; absent %s", model, done, failed, absent)
        return inference_pb2.DeleteResponse(deleted_from=done, failed=failed)

    async def _announced(
        self, record: NodeRecord, endpoint_id: str, model: str, present: bool, seq: int
    ) -> str:
        """Wait until the registry has what ``record``'s agent announced in its heartbeat
        ``seq`` (after a pull onto, or a removal from, ``endpoint_id``): "" then, else why
        not. An agent that gives no seq: until the registry shows the endpoint with (or,
        ``present`` False, without) ``model``."""
        registry = self.registry

        def shown() -> bool:
            if seq:
                return registry.announced(record.name, seq, record)
            now = registry.find(record.name)
            return now is not None and any(
                e.id == endpoint_id and any(m.name == model for m in e.models) == present
                for e in now.info.endpoints
            )

        if await registry.until(shown, ANNOUNCE_SECONDS):
            return ""
        return (
            f"{'pulled' if present else 'removed'}, but node {record.name} did not announce "
            f"its models within {ANNOUNCE_SECONDS:.0f}s, so the cluster does not route by "
            "them yet"
        )

    def _live_endpoints(
        self,
    ) -> dict[str, tuple[NodeRecord, common_pb2.OllamaEndpoint]]:
        """Every endpoint of a connected node, by "NODE/endpoint"."""
        return {
            f"{record.name}/{endpoint.id}": (record, endpoint)
            for record in self.registry
            if record.state is not NodeState.LOST
            for endpoint in record.info.endpoints
        }

    async def _targets(
        self,
        asked: Sequence[str],
        model: str,
        has: bool,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> tuple[dict[str, tuple[NodeRecord, common_pb2.OllamaEndpoint]], list[str]]:
        """The connected endpoints, and those a model command acts on: the ``asked`` ones
        ("NODE/endpoint"; NOT_FOUND ends the RPC if one is not connected), else every one
        that has the model (``has``) or lacks it."""
        live = self._live_endpoints()
        unknown = [w for w in asked if w not in live]
        if unknown:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no connected endpoint {', '.join(unknown)} (NODE/endpoint; "
                f"connected: {', '.join(sorted(live)) or 'none'})",
            )
        if asked:
            return live, list(dict.fromkeys(asked))
        return live, _with_model(live, model, has)

    async def Unload(
        self,
        request: inference_pb2.UnloadRequest,
        context: grpc.aio.ServicerContext[
            inference_pb2.UnloadRequest, inference_pb2.UnloadResponse
        ],
    ) -> inference_pb2.UnloadResponse:
        model = await check_model(request.model, context)
        # Every endpoint that has the model, not only those whose last telemetry showed it
        # loaded: a load in the last heartbeat interval would be missed, and unloading a
        # model that is not loaded costs Ollama nothing.
        live, targets = await self._targets((), model, True, context)
        if not targets:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {model!r} not found")
        acks = await asyncio.gather(
            *(
                self.registry.unload_model(
                    live[w][0].name, live[w][1].id, model, NODE_ANSWER_SECONDS
                )
                for w in targets
            )
        )
        errors = ["" if ack.ok else ack.error or "not unloaded" for ack in acks]
        done, failed = _outcomes(targets, errors)
        log.info("unload %s: from %s; failed %s", model, done, failed)
        return inference_pb2.UnloadResponse(unloaded_from=done, failed=failed)


def _with_model(
    live: Mapping[str, tuple[NodeRecord, common_pb2.OllamaEndpoint]], model: str, has: bool = True
) -> list[str]:
    """The endpoints (of ``live``, by "NODE/endpoint") that have ``model`` on disk, or with
    ``has`` False those that do not. Another Hive cluster's gateway (federation) is never
    one of them: its models are that cluster's to manage (named, it is acted on)."""
    return [
        where
        for where, (_, endpoint) in sorted(live.items())
        if not endpoint.hive_cluster and any(m.name == model for m in endpoint.models) == has
    ]


def _outcomes(targets: Sequence[str], errors: Sequence[str]) -> tuple[list[str], list[str]]:
    """A model command's endpoints that did it, and "NODE/endpoint: why" for those that
    did not (``errors``: one per target, "" for success)."""
    done = [where for where, error in zip(targets, errors, strict=True) if not error]
    failed = [f"{where}: {error}" for where, error in zip(targets, errors, strict=True) if error]
    return done, failed


async def _pull_one(
    stub: Any,
    where: str,
    request: node_agent_pb2.PullModelRequest,
    out: asyncio.Queue[inference_pb2.PullResponse | None],
    announced: Callable[[int], Awaitable[str]],
) -> None:
    """One endpoint's pull, its progress lines (labelled ``where``) put on ``out``; its
    "success" once ``announced`` (given the agent's announced_seq) says the registry has
    the endpoint's new models; a failure is its last line; None says it ended."""
    try:
        async for line in stub.PullModel(request):
            if line.status == "success" and (error := await announced(line.announced_seq)):
                out.put_nowait(inference_pb2.PullResponse(endpoint=where, error=error))
                continue
            out.put_nowait(
                inference_pb2.PullResponse(
                    endpoint=where,
                    status=line.status,
                    digest=line.digest,
                    total=line.total,
                    completed=line.completed,
                )
            )
    except grpc.aio.AioRpcError as err:
        out.put_nowait(
            inference_pb2.PullResponse(endpoint=where, error=err.details() or err.code().name)
        )
    finally:
        out.put_nowait(None)


# How long an unload or a delete waits for each node's answer (Ollama answers at once; an
# unloaded model leaves VRAM when its running requests have finished).
NODE_ANSWER_SECONDS = 30.0
# How long a pull or a delete that a node has done waits for the node's heartbeat that
# announces its new models (sent at once) to be applied, before saying it was not.
ANNOUNCE_SECONDS = 10.0


def _task_id() -> str:
    return "t-" + uuid.uuid4().hex[:16]
