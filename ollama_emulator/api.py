"""The HTTP edge: Ollama's REST API translated to scheduler and generation calls and back.

``OllamaApi`` puts the routes together: the model-management ones (``model_routes``: tags,
ps, show, pull, delete, and the models on disk) and the generation ones
(``generation_routes``: generate, chat, embed). Routes only unpack JSON (``requests``, which
also refuses what Ollama refuses), call the scheduler / ``Generation`` / ``text``, and pack
Ollama's response shapes (``wire``, ``model_facts``); errors are raised as ``ApiError`` and
turned into Ollama's ``{"error": "..."}`` bodies in one handler here. Wall-clock timestamps
(``created_at``, ``expires_at``) exist only in the routes; the scheduler runs on the
injected monotonic clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hive import hardware
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.generation_routes import GenerationRoutes
from ollama_emulator.model_routes import ModelRoutes
from ollama_emulator.requests import ApiError, parse_keep_alive
from ollama_emulator.scheduler import EmulatorStats, Scheduler

__all__ = ["ApiError", "OllamaApi", "parse_keep_alive"]


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
        self._stats = stats
        self._models = ModelRoutes(config=config, scheduler=scheduler, clock=clock)
        self._generation = GenerationRoutes(
            config=config,
            scheduler=scheduler,
            stats=stats,
            clock=clock,
            on_disk=self._models.on_disk,
        )

    @property
    def disk(self) -> dict[str, tuple[hardware.ModelKind, datetime]]:
        """Models on disk by canonical name, with when they were "pulled"."""
        return self._models.disk

    def app(self) -> Starlette:
        models, generation = self._models, self._generation
        routes = [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/tags", models.tags, methods=["GET"]),
            Route("/api/ps", models.ps, methods=["GET"]),
            Route("/api/show", models.show, methods=["POST"]),
            Route("/api/pull", models.pull, methods=["POST"]),
            Route("/api/delete", models.delete, methods=["DELETE"]),
            Route("/api/generate", generation.generate, methods=["POST"]),
            Route("/api/chat", generation.chat, methods=["POST"]),
            Route("/api/embed", generation.embed, methods=["POST"]),
            Route("/api/embeddings", generation.embeddings, methods=["POST"]),
        ]
        return Starlette(routes=routes, exception_handlers={ApiError: self._error})

    async def _error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        self._stats.errors_total += 1
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": self._config.version})
