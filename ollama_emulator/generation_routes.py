"""The generation routes: ``/api/generate``, ``/api/chat``, ``/api/embed`` and the older
``/api/embeddings``, each answer run on a scheduler slot by a ``Generation``.

A route checks the request (``requests``), makes the text (``text``), waits for a slot
(a client that leaves while waiting is counted cancelled and gets nothing), then streams
the answer as NDJSON or sends it whole. Whatever ends a stream, the slot is released.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from itertools import islice
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from hive import hardware
from ollama_emulator import text
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.generation import Generation
from ollama_emulator.model_facts import capabilities
from ollama_emulator.requests import (
    IMAGE_TEXT,
    ApiError,
    image_count,
    int_option,
    json_body,
    model_name,
    output_format,
    parse_keep_alive,
    thinking_pieces,
    top_logprobs,
)
from ollama_emulator.scheduler import (
    EmulatorStats,
    Lease,
    ModelTooLarge,
    Scheduler,
    ServerBusy,
)
from ollama_emulator.wire import NDJSON, line, now, ns

T = TypeVar("T")

# Status code nobody reads: the client is gone (nginx's "client closed request").
_CLIENT_GONE = 499


class _ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    # Once the body has been read, uvicorn's receive() blocks until the client goes away.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` but cancel it, raising _ClientGone, if the client disconnects first."""
    task = asyncio.create_task(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        raise _ClientGone()
    return task.result()


class _GenerationStream(StreamingResponse):
    """NDJSON lines of one generation; whatever ends the stream, the slot is released.

    Starlette cancels the body when the client disconnects; the ``finally`` closes the
    line generator right away (rather than whenever it is garbage collected) and then the
    generation, which counts the request as cancelled unless it had finished.
    """

    def __init__(self, run: Generation, lines: AsyncGenerator[bytes, None]) -> None:
        super().__init__(lines, media_type=NDJSON)
        self._run = run
        self._lines = lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._lines.aclose()
            self._run.close()


# Renders one streamed piece, and the final object given the full text (or "" when streaming).


PieceRenderer = Callable[[str], dict[str, Any] | None]
FinalRenderer = Callable[[Generation, str], dict[str, Any]]


class GenerationRoutes:
    """Generate, chat and embed on the models ``on_disk`` finds, over one scheduler."""

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        scheduler: Scheduler,
        stats: EmulatorStats,
        clock: Callable[[], float],
        on_disk: Callable[[str], hardware.ModelKind | None],
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._stats = stats
        self._clock = clock
        self._on_disk = on_disk

    async def generate(self, request: Request) -> Response:
        self._stats.requests_total += 1
        body = await json_body(request)
        name = model_name(body)
        kind = self._require(name, "generate")
        keep_alive = parse_keep_alive(body.get("keep_alive"), self._config.default_keep_alive)
        prompt = body.get("prompt") or ""
        system = body.get("system") or ""
        suffix = body.get("suffix") or ""
        if not all(isinstance(v, str) for v in (prompt, system, suffix)):
            raise ApiError(400, "prompt, system and suffix must be strings")
        if suffix and "insert" not in capabilities(kind):
            raise ApiError(400, f'"{name}" does not support insert')
        images = image_count(name, kind, body.get("images"))
        if not prompt:
            return await self._load_only(request, kind, name, keep_alive, body, chat=False)
        source = f"{system}\n{prompt}" if system else prompt
        source += IMAGE_TEXT * images
        if suffix:
            source = f"{source}\n<fill>\n{suffix}"
        output = self._output(kind, source, body, thinking_pieces(name, kind, body.get("think")))
        top = top_logprobs(body)
        seen = itertools.count()

        def piece(p: str) -> dict[str, Any]:
            i = next(seen)
            said = {"response": "", "thinking": p} if i < output.thinking else {"response": p}
            logprobs = _logprobs(output, top, [p], i)
            return {"model": name, "created_at": now(), **said, **logprobs, "done": False}

        def final(run: Generation, answer: str) -> dict[str, Any]:
            seed = hashlib.sha256(source.encode()).digest()
            context = [int(b) * 251 + i for i, b in enumerate(seed[:16])]
            thinking, answer = _split(run.output, answer)
            return {
                "model": name,
                "created_at": now(),
                "response": answer,
                **({"thinking": thinking} if thinking else {}),
                **(_logprobs(run.output, top, list(run.output.pieces()), 0) if answer else {}),
                "done": True,
                "done_reason": run.output.done_reason,
                "context": context,
                **_durations(run),
            }

        return await self._answer(request, kind, keep_alive, source, output, body, piece, final)

    async def chat(self, request: Request) -> Response:
        self._stats.requests_total += 1
        body = await json_body(request)
        name = model_name(body)
        kind = self._require(name, "chat")
        keep_alive = parse_keep_alive(body.get("keep_alive"), self._config.default_keep_alive)
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "messages must be a list of objects")
        if not messages:
            return await self._load_only(request, kind, name, keep_alive, body, chat=True)
        tools = body.get("tools") or []
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise ApiError(400, "tools must be a list of objects")
        if tools and "tools" not in capabilities(kind):
            raise ApiError(400, f'"{name}" does not support tools')
        source = "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages)
        source += IMAGE_TEXT * sum(image_count(name, kind, m.get("images")) for m in messages)
        made: list[dict[str, Any]] = []
        users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
        declined = any(map(text.declines_tools, users))
        if tools and messages[-1].get("role") != "tool" and not declined:
            # Offered tools and not yet given a result: the model calls the ones asked for
            # (the last message's words; a user who said not to use tools gets words).
            last = str(messages[-1].get("content") or "")
            made = text.tool_calls(tools, last, self._config.seed)
        calls = [{"function": call} for call in made]
        if calls:
            pieces = text.call_pieces(*made)
            output = text.Output(len(pieces), "stop", source, 0, False, pieces)
        else:
            output = self._output(
                kind, source, body, thinking_pieces(name, kind, body.get("think"))
            )
        top = top_logprobs(body)
        seen = itertools.count()

        def piece(p: str) -> dict[str, Any] | None:
            if calls:
                return None  # a call is sent whole, once written (``call_line``)
            i = next(seen)
            said = {"content": "", "thinking": p} if i < output.thinking else {"content": p}
            return {
                **head(),
                "message": {"role": "assistant", **said},
                **_logprobs(output, top, [p], i),
            }

        def call_line() -> dict[str, Any]:
            return {**head(), "message": {"role": "assistant", "content": "", "tool_calls": calls}}

        def head() -> dict[str, Any]:
            return {"model": name, "created_at": now(), "done": False}

        def final(run: Generation, answer: str) -> dict[str, Any]:
            thinking, answer = _split(run.output, answer)
            message: dict[str, Any] = {"role": "assistant", "content": "" if calls else answer}
            if thinking:
                message["thinking"] = thinking
            if calls and body.get("stream", True) is False:
                message["tool_calls"] = calls
            whole = answer or thinking
            return {
                "model": name,
                "created_at": now(),
                "message": message,
                **(_logprobs(run.output, top, list(run.output.pieces()), 0) if whole else {}),
                "done_reason": run.output.done_reason,
                "done": True,
                **_durations(run),
            }

        return await self._answer(
            request,
            kind,
            keep_alive,
            source,
            output,
            body,
            piece,
            final,
            call_line if calls else None,
        )

    def _require(self, name: str, use: str = "") -> hardware.ModelKind:
        kind = self._on_disk(name)
        if kind is None:
            raise ApiError(404, f'model "{name}" not found, try pulling it first')
        if use in ("generate", "chat") and kind.embeds_only:
            raise ApiError(400, f'"{name}" does not support {use}')
        return kind

    async def embed(self, request: Request) -> Response:
        """Ollama's /api/embed: one L2-normalised vector per input, after a prompt pass."""
        answer = await self._embed(request, await json_body(request))
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    async def embeddings(self, request: Request) -> Response:
        """The older /api/embeddings: one ``prompt`` in, one ``embedding`` out."""
        body = await json_body(request)
        prompt = body.pop("prompt", "")
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        answer = await self._embed(request, {**body, "input": [prompt] if prompt else []})
        if isinstance(answer, Response):
            return answer
        vectors = answer["embeddings"]
        return JSONResponse({"embedding": vectors[0] if vectors else []})

    async def _embed(self, request: Request, body: dict[str, Any]) -> Response | dict[str, Any]:
        self._stats.requests_total += 1
        name = model_name(body)
        kind = self._require(name)
        keep_alive = parse_keep_alive(body.get("keep_alive"), self._config.default_keep_alive)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw if raw is not None else []
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ApiError(400, "input must be a string or a list of strings")
        if inputs == [""]:
            inputs = []
        size = hardware.embedding_length(kind)
        dims = body.get("dimensions") or 0
        if isinstance(dims, bool) or not isinstance(dims, int) or not 0 <= dims <= size:
            raise ApiError(400, f"dimensions must be an integer from 1 to {size} for {name}")
        truncate = body.get("truncate", True) is not False
        tokens = []
        for piece in inputs:
            n = text.prompt_tokens(piece)
            if n > kind.context_length:
                if not truncate:
                    raise ApiError(400, "input exceeds maximum context length")
                n = kind.context_length
            tokens.append(n)
        if not inputs:
            # No input loads the model, as Ollama does.
            loaded = await self._load_only(request, kind, name, keep_alive, body, chat=False)
            if loaded.status_code != 200:
                return loaded
            return {"model": name, "embeddings": []}
        run = await self._start(
            request, kind, keep_alive, sum(tokens), text.Output(0, "stop", "", 0, False)
        )
        if run is None:
            return Response(status_code=_CLIENT_GONE)
        try:
            await _unless_disconnected(request, _collect(run.pieces()))
        except _ClientGone:
            return Response(status_code=_CLIENT_GONE)
        finally:
            run.close()
        vectors = [text.embedding(model=kind.name, text=i, size=size) for i in inputs]
        if dims:
            vectors = [_normalised(v[:dims]) for v in vectors]
        timings = run.timings
        return {
            "model": name,
            "embeddings": vectors,
            "total_duration": ns(timings.total),
            "load_duration": ns(timings.load),
            "prompt_eval_count": run.prompt_tokens,
        }

    def _output(
        self, kind: hardware.ModelKind, source: str, body: dict[str, Any], thinking: int = 0
    ) -> text.Output:
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ApiError(400, "options must be an object")
        return text.generate(
            seed=self._config.seed,
            model=kind.name,
            prompt=source,
            num_predict=int_option(options, "num_predict"),
            options_seed=int_option(options, "seed"),
            format=output_format(body.get("format")),
            thinking=thinking,
            ignore_eos=options.get("ignore_eos") is True,
        )

    async def _acquire(
        self, request: Request, kind: hardware.ModelKind, keep_alive: float
    ) -> Lease | None:
        """A slot on ``kind``, or None if the client left while waiting (counted cancelled)."""
        try:
            return await _unless_disconnected(request, self._scheduler.acquire(kind, keep_alive))
        except ModelTooLarge as e:
            raise ApiError(500, str(e)) from None
        except ServerBusy as e:
            raise ApiError(503, str(e)) from None
        except _ClientGone:
            self._stats.cancelled_total += 1
            return None

    async def _load_only(
        self,
        request: Request,
        kind: hardware.ModelKind,
        name: str,
        keep_alive: float,
        body: dict[str, Any],
        *,
        chat: bool,
    ) -> Response:
        """An empty prompt loads the model (or, with keep_alive 0, unloads it), as Ollama does."""
        if keep_alive == 0 and body.get("keep_alive") is not None:
            self._scheduler.unload(kind)
            reason = "unload"
        else:
            lease = await self._acquire(request, kind, keep_alive)
            if lease is None:
                return Response(status_code=_CLIENT_GONE)
            self._scheduler.release(lease)
            self._stats.completed_total += 1
            reason = "load"
        answer: dict[str, Any] = {"model": name, "created_at": now()}
        if chat:
            answer["message"] = {"role": "assistant", "content": ""}
        else:
            answer["response"] = ""
        answer.update(done=True, done_reason=reason)
        return JSONResponse(answer)

    async def _start(
        self,
        request: Request,
        kind: hardware.ModelKind,
        keep_alive: float,
        prompt_tokens: int,
        output: text.Output,
    ) -> Generation | None:
        """A run of ``output`` on a slot of ``kind``; None if the client left while waiting."""
        lease = await self._acquire(request, kind, keep_alive)
        if lease is None:
            return None
        return Generation(
            scheduler=self._scheduler,
            lease=lease,
            stats=self._stats,
            clock=self._clock,
            prompt_tokens=prompt_tokens,
            output=output,
        )

    async def _answer(
        self,
        request: Request,
        kind: hardware.ModelKind,
        keep_alive: float,
        source: str,
        output: text.Output,
        body: dict[str, Any],
        piece: PieceRenderer,
        final: FinalRenderer,
        calls: Callable[[], dict[str, Any]] | None = None,
    ) -> Response:
        """Run the answer on a slot; stream it (a line per piece ``piece`` renders) or send
        it whole. ``calls``: the line with the tool calls the pieces wrote, streamed last."""
        run = await self._start(request, kind, keep_alive, text.prompt_tokens(source), output)
        if run is None:
            return Response(status_code=_CLIENT_GONE)
        if body.get("stream", True) is not False:

            async def lines() -> AsyncGenerator[bytes, None]:
                async for p in run.pieces():
                    if (shown := piece(p)) is not None:
                        yield line(shown)
                if calls is not None:
                    # Ollama sends the calls once the model has finished writing them.
                    yield line(calls())
                yield line(final(run, ""))

            return _GenerationStream(run, lines())
        try:
            pieces = await _unless_disconnected(request, _collect(run.pieces()))
        except _ClientGone:
            return Response(status_code=_CLIENT_GONE)
        finally:
            run.close()
        return JSONResponse(final(run, "".join(pieces)))


def _logprobs(
    output: text.Output, top: int | None, pieces: list[str], start: int
) -> dict[str, Any]:
    """The ``logprobs`` of ``pieces`` (the output's from position ``start``), or nothing
    when the request did not ask for them."""
    if top is None:
        return {}
    return {
        "logprobs": [text.logprob(p, start + k, output.rng_seed, top) for k, p in enumerate(pieces)]
    }


def _split(output: text.Output, whole: str) -> tuple[str, str]:
    """A whole answer's reasoning and the answer proper (both "" for a streamed one)."""
    if not whole or not output.thinking:
        return "", whole
    reasoning = "".join(islice(output.pieces(), output.thinking))
    return reasoning, whole[len(reasoning) :]


def _normalised(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def _collect(pieces: AsyncIterator[str]) -> list[str]:
    return [p async for p in pieces]


def _durations(run: Generation) -> dict[str, int]:
    timings = run.timings
    return {
        "total_duration": ns(timings.total),
        "load_duration": ns(timings.load),
        "prompt_eval_count": run.prompt_tokens,
        "prompt_eval_duration": ns(timings.prompt_eval),
        "eval_count": run.eval_count,
        "eval_duration": ns(timings.eval),
    }
