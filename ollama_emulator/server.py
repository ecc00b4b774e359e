"""One emulated Ollama instance: an in-process uvicorn server plus the state routing reads.

``OllamaEmulator`` owns its uvicorn task from ``start()`` to ``stop()``; many of them can
share one event loop (the demo cluster runs one per endpoint). Besides HTTP it exposes what
a node agent would otherwise get from NVML and ``/api/ps``: counters, resident models, and
per-GPU activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import NamedTuple

import uvicorn

from ollama_emulator.activity import GpuActivity, gpu_activity
from ollama_emulator.api import OllamaApi
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.scheduler import EmulatorStats, Scheduler

# How long start() waits for uvicorn to begin serving before giving up.
_START_TIMEOUT_SECONDS = 10.0


class LoadedModel(NamedTuple):
    name: str
    vram_bytes: int
    # On the emulator's clock (time.monotonic unless injected); math.inf = never expires.
    expires_at: float


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: the process that embeds us owns Ctrl-C.

    uvicorn's ``serve()`` swaps SIGINT/SIGTERM handlers for its lifetime and re-raises
    captured signals afterwards; with many emulators in one process those swaps interleave.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OllamaEmulator:
    """An HTTP server speaking the Ollama API over the modelled GPUs of ``config``.

    The official ``ollama`` client works against ``url``. Not thread-safe: use it from the
    event loop that started it.
    """

    def __init__(
        self, config: EmulatorConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._stats = EmulatorStats()
        self._scheduler = Scheduler(
            gpus=config.gpus,
            num_parallel=config.num_parallel,
            max_queue=config.max_queue,
            time_scale=config.time_scale,
            stats=self._stats,
            clock=clock,
        )
        self._api = OllamaApi(
            config=config, scheduler=self._scheduler, stats=self._stats, clock=clock
        )
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._url: str | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("OllamaEmulator.url: the emulator is not started")
        return self._url

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("OllamaEmulator.port: the emulator is not started")
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind ``host:port`` (0 = a free port), serve in a task owned here, return the port."""
        if self._task is not None:
            raise RuntimeError("OllamaEmulator.start: already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        bound_port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            self._api.app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            # In-flight streams get this long to finish on stop(), then are cancelled.
            timeout_graceful_shutdown=1,
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"ollama-emulator:{port}")
        self._server, self._task = server, task
        try:
            async with asyncio.timeout(_START_TIMEOUT_SECONDS):
                while not server.started:
                    if task.done():
                        break
                    await asyncio.sleep(0.001)
        except BaseException:
            await self.stop()
            sock.close()
            raise
        if not server.started:
            await self.stop()
            sock.close()
            raise RuntimeError(f"OllamaEmulator.start: uvicorn failed to serve on {host}:{port}")
        client_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = f"[{client_host}]" if ":" in client_host else client_host
        self._port = bound_port
        self._url = f"http://{shown}:{bound_port}"
        return bound_port

    async def stop(self) -> None:
        """Stop serving and wait for the server task; in-flight requests are cut off."""
        server, task = self._server, self._task
        self._server = self._task = None
        self._url = self._port = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        except SystemExit:
            # uvicorn exits this way when startup failed; start() reports that itself.
            pass

    async def __aenter__(self) -> OllamaEmulator:
        if self._task is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def stats(self) -> EmulatorStats:
        """A snapshot of the counters (a copy: later requests do not change it)."""
        return dataclasses.replace(self._stats)

    def models(self) -> list[str]:
        """Names of the models on disk (configured plus pulled)."""
        return list(self._api.disk)

    def loaded_models(self) -> list[LoadedModel]:
        """Models resident and ready (as ``/api/ps`` lists them); loading ones are not."""
        return [
            LoadedModel(r.kind.name, r.kind.size_bytes, r.expires_at)
            for r in self._scheduler.runners()
            if r.ready
        ]

    def gpu_activity(self) -> list[GpuActivity]:
        """Per GPU of this endpoint: utilization and memory, as ``nvidia-smi`` would show."""
        return gpu_activity(self._scheduler.gpus, self._scheduler.runners())
