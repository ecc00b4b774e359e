"""Serving an ASGI app (FastAPI, Starlette) with uvicorn inside a running event loop.

The socket is bound here, so port 0 works and the real port is known before
anyone connects. Used by the gateway and the Ollama emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

START_TIMEOUT_SECONDS = 10.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: the process that embeds it owns Ctrl-C.

    uvicorn's ``serve()`` swaps SIGINT/SIGTERM handlers for its lifetime and re-raises
    captured signals afterwards; with many servers in one process those swaps interleave.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0 = any free port).

    The protocol is given explicitly: asyncio only sets TCP_NODELAY on accepted
    sockets whose listening socket says IPPROTO_TCP, and without it a response's
    body segment waits for the client's delayed ACK (40 ms on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class AsgiServer:
    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful_seconds: float = 1.0,
        https: tuple[str, str] | None = None,
    ) -> None:
        """``https``: (certificate PEM file, key PEM file) to serve HTTPS; None: HTTP."""
        self._app = app
        self._https = https
        self._host = host
        self._port = port
        self._graceful = graceful_seconds
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._host, self._host)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._https else 'http'}://{shown}:{self.port}"

    async def start(self) -> int:
        if self._task is not None:
            raise RuntimeError("already started")
        sock = bind_tcp(self._host, self._port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            # In-flight streams get this long to finish on stop(), then are cut off.
            timeout_graceful_shutdown=max(1, round(self._graceful)),
            # Idle keep-alive connections stay open 75 s (nginx's default; Ollama's Go
            # server keeps them longer), not uvicorn's 5 s: a client whose pool keeps them
            # 5 s too (httpx's default) would otherwise send on one being closed.
            timeout_keep_alive=75,
            ssl_certfile=self._https[0] if self._https else None,
            ssl_keyfile=self._https[1] if self._https else None,
        )
        server = _EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name=f"asgi:{self.port}")
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                while not server.started and not self._task.done():  # noqa: ASYNC110 - uvicorn exposes only a flag
                    await asyncio.sleep(0.002)
        finally:
            if not server.started:
                await self.stop()
                sock.close()
        if not server.started:
            raise RuntimeError(f"uvicorn failed to serve on {self._host}:{self.port}")
        return self.port

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        except SystemExit:
            pass  # uvicorn exits this way when start-up failed; start() reports that
