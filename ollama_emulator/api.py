"""The HTTP edge: Ollama's REST API translated to scheduler and generation calls and back.

Routes only unpack JSON, call the scheduler / ``Generation`` / ``text``, and pack Ollama's
response shapes; errors are raised as ``ApiError`` and turned into Ollama's
``{"error": "..."}`` bodies in one handler. Wall-clock timestamps (``created_at``,
``expires_at``) exist only here; the scheduler runs on the injected monotonic clock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hive import hardware, limits
from hive.limits import MAX_KEEP_ALIVE_SECONDS, MAX_TOP_LOGPROBS
from ollama_emulator import text
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.generation import Generation
from ollama_emulator.scheduler import (
    EmulatorStats,
    Lease,
    ModelTooLarge,
    Scheduler,
    ServerBusy,
)

T = TypeVar("T")

NDJSON = "application/x-ndjson"
# A network pull from the registry, for the pull progress to take a plausible time.
PULL_BYTES_PER_SECOND = 200_000_000
# Status code nobody reads: the client is gone (nginx's "client closed request").
_CLIENT_GONE = 499
# What Ollama prints for keep_alive < 0 ("forever"): Go's maximum time.Duration.
_FOREVER = timedelta(hours=2562047)
_FOREVER_SECONDS = _FOREVER.total_seconds()


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def parse_keep_alive(value: object, default: float) -> float:
    """Seconds an idle model stays loaded; math.inf for "forever".

    Accepts what Ollama accepts: a number of seconds, or a Go duration string ("5m",
    "1h30m", "300ms", "0"); also a plain number in a string. Negative means forever, and
    so does a number past Go's longest duration (about 292 years), where Ollama's own
    conversion overflows; a longer string is refused, as Go's parser refuses it. Nothing
    accepted is NaN or beyond what ``/api/ps`` can show.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        raise ApiError(400, f"json: cannot unmarshal bool into keep_alive: {value}")
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise ApiError(400, f"invalid keep_alive: {value!r}")
        seconds = float(value) if abs(value) <= MAX_KEEP_ALIVE_SECONDS else math.inf
    elif isinstance(value, str):
        try:
            seconds = limits.duration_seconds(value.strip())
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    else:
        raise ApiError(400, f"invalid keep_alive: {value!r}")
    return math.inf if seconds < 0 or seconds > MAX_KEEP_ALIVE_SECONDS else seconds


def _now() -> str:
    return _rfc3339(datetime.now(UTC))


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _digest(name: str) -> str:
    return hashlib.sha256(f"ollama-emulator/{name}".encode()).hexdigest()


def _details(kind: hardware.ModelKind) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": kind.family,
        "families": [kind.family],
        "parameter_size": kind.parameter_size,
        "quantization_level": kind.quantization_level,
    }


def _parameter_count(kind: hardware.ModelKind) -> int:
    size = kind.parameter_size.upper()
    scale = {"B": 1e9, "M": 1e6}.get(size[-1:], 1.0)
    try:
        return int(float(size.rstrip("BM")) * scale)
    except ValueError:
        return 0


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except ValueError as e:
        raise ApiError(400, f"invalid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "json: cannot unmarshal request body into an object")
    return body


def _not_json(name: str) -> object:
    """NaN and Infinity, which Python's decoder takes and Go's (Ollama's) refuses."""
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _model_name(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "model is required")
    return name


def _int_option(options: dict[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"option {key!r} must be of type integer")
    return int(value)


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


class OllamaApi:
    """The routes of one emulated Ollama instance, over its scheduler and models on disk."""

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        scheduler: Scheduler,
        stats: EmulatorStats,
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._stats = stats
        self._clock = clock
        started = datetime.now(UTC)
        # Models on disk by canonical name, with when they were "pulled".
        self.disk: dict[str, tuple[hardware.ModelKind, datetime]] = {}
        for name in config.models:
            kind = hardware.model_kind(name)
            self.disk[kind.name] = (kind, started)

    def app(self) -> Starlette:
        routes = [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/tags", self.tags, methods=["GET"]),
            Route("/api/ps", self.ps, methods=["GET"]),
            Route("/api/show", self.show, methods=["POST"]),
            Route("/api/pull", self.pull, methods=["POST"]),
            Route("/api/delete", self.delete, methods=["DELETE"]),
            Route("/api/generate", self.generate, methods=["POST"]),
            Route("/api/chat", self.chat, methods=["POST"]),
            Route("/api/embed", self.embed, methods=["POST"]),
            Route("/api/embeddings", self.embeddings, methods=["POST"]),
        ]
        return Starlette(routes=routes, exception_handlers={ApiError: self._error})

    async def _error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        self._stats.errors_total += 1
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    def _on_disk(self, name: str) -> hardware.ModelKind | None:
        try:
            kind = hardware.model_kind(name)
        except KeyError:
            return None
        return kind if kind.name in self.disk else None

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": self._config.version})

    async def tags(self, request: Request) -> Response:
        models = [
            {
                "name": kind.name,
                "model": kind.name,
                "modified_at": _rfc3339(modified),
                "size": kind.size_bytes,
                "digest": _digest(kind.name),
                "details": _details(kind),
            }
            for kind, modified in self.disk.values()
        ]
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        wall, mono = datetime.now(UTC), self._clock()
        models = []
        for runner in self._scheduler.runners():
            if not runner.ready:
                continue
            # Never later than Ollama's "for ever", so no keep_alive a client sent can make
            # this answer (the agents' health probe) fail.
            left = runner.expires_at - mono
            expires = wall + (timedelta(seconds=left) if left < _FOREVER_SECONDS else _FOREVER)
            kind = runner.kind
            models.append(
                {
                    "name": kind.name,
                    "model": kind.name,
                    "size": kind.size_bytes,
                    "digest": _digest(kind.name),
                    "details": _details(kind),
                    "expires_at": _rfc3339(expires),
                    "size_vram": kind.size_bytes,
                    "context_length": kind.context_length,
                }
            )
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        name = _model_name(await _json_body(request))
        kind = self._on_disk(name)
        if kind is None:
            raise ApiError(404, f"model '{name}' not found")
        _, modified = self.disk[kind.name]
        capabilities = _capabilities(kind)
        return JSONResponse(
            {
                "license": "",
                "modelfile": (
                    '# Modelfile generated by "ollama show"\n'
                    f"FROM {kind.name}\n"
                    'TEMPLATE """{{ .Prompt }}"""\n'
                    'PARAMETER stop "<|eot_id|>"\n'
                ),
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": _details(kind),
                "model_info": {
                    "general.architecture": kind.family,
                    "general.parameter_count": _parameter_count(kind),
                    "general.file_type": 15,
                    "general.quantization_version": 2,
                    f"{kind.family}.context_length": kind.context_length,
                },
                "capabilities": capabilities,
                "modified_at": _rfc3339(modified),
            }
        )

    async def pull(self, request: Request) -> Response:
        body = await _json_body(request)
        name = _model_name(body)
        try:
            kind: hardware.ModelKind | None = hardware.model_kind(name)
        except KeyError:
            kind = None
        if body.get("stream", True) is not False:
            return StreamingResponse(
                (_line(s) async for s in self._pull_statuses(kind)), media_type=NDJSON
            )
        last: dict[str, Any] = {}
        async for status in self._pull_statuses(kind):
            last = status
        if "error" in last:
            raise ApiError(500, str(last["error"]))
        return JSONResponse(last)

    async def _pull_statuses(
        self, kind: hardware.ModelKind | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Ollama's pull progress; the model lands on disk only after "success"."""
        yield {"status": "pulling manifest"}
        if kind is None:
            yield {"error": "pull model manifest: file does not exist"}
            return
        digest = _digest(kind.name)
        total = kind.size_bytes
        # Already on disk: Ollama finds every layer present and finishes at once.
        steps = 1 if kind.name in self.disk else 8
        for step in range(1, steps + 1):
            await self._scheduler.sleep(total / PULL_BYTES_PER_SECOND / steps)
            yield {
                "status": f"pulling {digest[:12]}",
                "digest": f"sha256:{digest}",
                "total": total,
                "completed": total * step // steps,
            }
        for status in ("verifying sha256 digest", "writing manifest"):
            yield {"status": status}
        self.disk.setdefault(kind.name, (kind, datetime.now(UTC)))
        yield {"status": "success"}

    async def delete(self, request: Request) -> Response:
        """Remove a model from disk (Ollama's /api/delete); a loaded copy leaves VRAM as
        soon as it is idle, as after keep_alive 0."""
        name = _model_name(await _json_body(request))
        kind = self._on_disk(name)
        if kind is None:
            raise ApiError(404, f"model '{name}' not found")
        del self.disk[kind.name]
        self._scheduler.unload(kind)
        return Response(status_code=200)

    async def generate(self, request: Request) -> Response:
        self._stats.requests_total += 1
        body = await _json_body(request)
        name = _model_name(body)
        kind = self._require(name, "generate")
        keep_alive = parse_keep_alive(body.get("keep_alive"), self._config.default_keep_alive)
        prompt = body.get("prompt") or ""
        system = body.get("system") or ""
        suffix = body.get("suffix") or ""
        if not all(isinstance(v, str) for v in (prompt, system, suffix)):
            raise ApiError(400, "prompt, system and suffix must be strings")
        if suffix and "insert" not in _capabilities(kind):
            raise ApiError(400, f'"{name}" does not support insert')
        images = _images(name, kind, body.get("images"))
        if not prompt:
            return await self._load_only(request, kind, name, keep_alive, body, chat=False)
        source = f"{system}\n{prompt}" if system else prompt
        source += _IMAGE_TEXT * images
        if suffix:
            source = f"{source}\n<fill>\n{suffix}"
        output = self._output(kind, source, body, _thinking(name, kind, body.get("think")))
        top = _top_logprobs(body)
        seen = itertools.count()

        def piece(p: str) -> dict[str, Any]:
            i = next(seen)
            said = {"response": "", "thinking": p} if i < output.thinking else {"response": p}
            logprobs = _logprobs(output, top, [p], i)
            return {"model": name, "created_at": _now(), **said, **logprobs, "done": False}

        def final(run: Generation, answer: str) -> dict[str, Any]:
            seed = hashlib.sha256(source.encode()).digest()
            context = [int(b) * 251 + i for i, b in enumerate(seed[:16])]
            thinking, answer = _split(run.output, answer)
            return {
                "model": name,
                "created_at": _now(),
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
        body = await _json_body(request)
        name = _model_name(body)
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
        if tools and "tools" not in _capabilities(kind):
            raise ApiError(400, f'"{name}" does not support tools')
        source = "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages)
        source += _IMAGE_TEXT * sum(_images(name, kind, m.get("images")) for m in messages)
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
            output = self._output(kind, source, body, _thinking(name, kind, body.get("think")))
        top = _top_logprobs(body)
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
            return {"model": name, "created_at": _now(), "done": False}

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
                "created_at": _now(),
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
        answer = await self._embed(request, await _json_body(request))
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    async def embeddings(self, request: Request) -> Response:
        """The older /api/embeddings: one ``prompt`` in, one ``embedding`` out."""
        body = await _json_body(request)
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
        name = _model_name(body)
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
            "total_duration": _ns(timings.total),
            "load_duration": _ns(timings.load),
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
            num_predict=_int_option(options, "num_predict"),
            options_seed=_int_option(options, "seed"),
            format=_format(body.get("format")),
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
        answer: dict[str, Any] = {"model": name, "created_at": _now()}
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
                        yield _line(shown)
                if calls is not None:
                    # Ollama sends the calls once the model has finished writing them.
                    yield _line(calls())
                yield _line(final(run, ""))

            return _GenerationStream(run, lines())
        try:
            pieces = await _unless_disconnected(request, _collect(run.pieces()))
        except _ClientGone:
            return Response(status_code=_CLIENT_GONE)
        finally:
            run.close()
        return JSONResponse(final(run, "".join(pieces)))


# What an image costs a vision model's prompt: llava's 576 image tokens (4 characters each).
_IMAGE_TEXT = " " * (576 * 4)


def _images(name: str, kind: hardware.ModelKind, images: object) -> int:
    """How many images a request carries, refused as Ollama refuses them: not base64, or
    for a model without vision."""
    if not images:
        return 0
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ApiError(400, "images must be a list of base64 strings")
    for image in images:
        try:
            base64.b64decode(image, validate=True)
        except binascii.Error as exc:
            raise ApiError(400, f"illegal base64 data: {exc}") from None
    if "vision" not in _capabilities(kind):
        raise ApiError(400, f'"{name}" does not support vision')
    return len(images)


# Pieces of reasoning a thinking model writes before its answer, by Ollama's think value.
_THINKING_PIECES = {True: 48, "low": 24, "medium": 48, "high": 96}


def _thinking(name: str, kind: hardware.ModelKind, think: object) -> int:
    """How much a request makes the model reason: a thinking model does by default (as
    Ollama's thinking models do); ``false`` turns it off; ``true`` or a level on a model
    that cannot think is refused, as Ollama refuses it."""
    can = "thinking" in _capabilities(kind)
    if think is None:
        return _THINKING_PIECES[True] if can else 0
    if think is False:
        return 0
    if think is not True and think not in ("low", "medium", "high"):
        raise ApiError(
            400, f'invalid think value: {json.dumps(think)} (true, false, "low", "medium", "high")'
        )
    if not can:
        raise ApiError(400, f'"{name}" does not support thinking')
    return _THINKING_PIECES[think if isinstance(think, str) else True]


def _top_logprobs(body: dict[str, Any]) -> int | None:
    """How many most likely tokens a request wants with each token's log probability;
    None when it asks for no logprobs. Refused as Ollama refuses it."""
    top = body.get("top_logprobs") or 0
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return top if body.get("logprobs") is True else None


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


def _capabilities(kind: hardware.ModelKind) -> list[str]:
    """What ``ollama show`` lists: embedding models embed only; code models can insert
    (fill-in-the-middle); llama, mistral and qwen models call tools (qwen2.5-coder too),
    but not codellama or deepseek-coder, whose templates have no tools."""
    if kind.embeds_only:
        return ["embedding"]
    out = ["completion"]
    if "llava" in kind.name:
        return [*out, "vision"]
    no_tools = ("codellama", "deepseek-coder")
    if kind.family in ("llama", "qwen2", "qwen3") and not kind.name.startswith(no_tools):
        out.append("tools")
    if kind.family == "qwen3":
        out.append("thinking")
    if "coder" in kind.name or "starcoder" in kind.name or "codellama" in kind.name:
        out.append("insert")
    return out


def _format(value: object) -> str | dict[str, Any] | None:
    """Ollama's ``format``: absent, "", "json" or a JSON Schema object; anything else is
    refused as Ollama refuses it."""
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise ApiError(
        400, f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object'
    )


def _normalised(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def _collect(pieces: AsyncIterator[str]) -> list[str]:
    return [p async for p in pieces]


def _durations(run: Generation) -> dict[str, int]:
    timings = run.timings
    return {
        "total_duration": _ns(timings.total),
        "load_duration": _ns(timings.load),
        "prompt_eval_count": run.prompt_tokens,
        "prompt_eval_duration": _ns(timings.prompt_eval),
        "eval_count": run.eval_count,
        "eval_duration": _ns(timings.eval),
    }
