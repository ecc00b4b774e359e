"""One emulated Ollama instance: an in-process uvicorn server plus the state routing reads.

``OllamaEmulator`` owns its uvicorn task from ``start()`` to ``stop()``; many of them can
share one event loop (the demo cluster runs one per endpoint). Besides HTTP it exposes what
a node agent would otherwise get from NVML and ``/api/ps``: counters, resident models, and
per-GPU activity.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple

from hive import hardware
from hive.asgi import AsgiServer
from ollama_emulator.activity import GpuActivity, gpu_activity
from ollama_emulator.api import OllamaApi
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.scheduler import EmulatorStats, Scheduler


class LoadedModel(NamedTuple):
    name: str
    vram_bytes: int
    # On the emulator's clock (time.monotonic unless injected); math.inf = never expires.
    expires_at: float


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
            load_bytes_per_second=config.model_load_gbps * hardware.GB,
        )
        self._api = OllamaApi(
            config=config, scheduler=self._scheduler, stats=self._stats, clock=clock
        )
        self._server: AsgiServer | None = None
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
        if self._server is not None:
            raise RuntimeError("OllamaEmulator.start: already started")
        server = AsgiServer(self._api.app(), host, port)
        await server.start()
        self._server = server
        self._port = server.port
        self._url = server.url
        return server.port

    async def stop(self) -> None:
        """Stop serving; in-flight requests get a second to finish, then are cut off."""
        server, self._server = self._server, None
        self._url = self._port = None
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> OllamaEmulator:
        if self._server is None:
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
