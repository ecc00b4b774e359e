"""An async client for one local Ollama instance, over its HTTP API (httpx, NDJSON)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx


class OllamaError(Exception):
    """Ollama answered with an error status; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OllamaClient:
    """``token``: sent as a bearer token on every request, and ``verify``: how an https
    server is checked (httpx's: True for the system's CAs, or an SSLContext) — both for an
    endpoint that is another Hive cluster's gateway; Ollama itself takes neither."""

    def __init__(
        self,
        url: str,
        connect_timeout: float = 5.0,
        token: str | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        # No read timeout: a generation may legitimately take minutes; the RPC's
        # deadline bounds it instead.
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(None, connect=connect_timeout),
            # An idle connection is dropped after 2 s, before any server closes it: a
            # request sent on a connection the server is closing fails (ReadError), and
            # uvicorn (a peer Hive gateway, the emulator) closes idle ones after 5 s,
            # httpx's own expiry.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64, keepalive_expiry=2.0
            ),
            headers={"Authorization": f"Bearer {token}"} if token else None,
            verify=verify,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> dict[str, Any]:
        return _object(path, await self._http.get(path, timeout=5.0))

    async def version(self) -> dict[str, Any]:
        """/api/version: Ollama's ``version``; a Hive gateway adds its cluster's name."""
        return await self._get("/api/version")

    async def tags(self) -> list[dict[str, Any]]:
        return list((await self._get("/api/tags")).get("models", []))

    async def ps(self) -> list[dict[str, Any]]:
        return list((await self._get("/api/ps")).get("models", []))

    async def capabilities(self, model: str) -> list[str]:
        """What ``model`` can do (/api/show's ``capabilities``; [] from an Ollama too old
        to say)."""
        shown = await self.post("/api/show", {"model": model}, timeout=5.0)
        return [str(c) for c in shown.get("capabilities") or []]

    async def stream(
        self, path: str, payload: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """POST a streaming request and yield each NDJSON object; closing the iterator aborts it.

        The body is read to its end before the final (``done``) object is yielded: a
        consumer that stops at ``done`` would otherwise close a response with unread bytes
        (the chunked terminator), and httpx then drops the connection instead of reusing
        it, so every task would pay a new TCP connection to Ollama.
        """
        async with self._http.stream(
            "POST", path, json={**payload, "stream": True}, headers=headers
        ) as response:
            if response.status_code != 200:
                body = await response.aread()
                raise OllamaError(response.status_code, _error_text(body.decode(errors="replace")))
            # Lines split from the raw bytes (Ollama's NDJSON is UTF-8; json.loads takes
            # bytes): httpx's aiter_lines decodes and re-splits text, a few µs a token more.
            data = response.aiter_bytes()
            pending = b""
            async for piece in data:
                pending += piece
                if b"\n" not in pending:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item.get("done"):
                        async for _ in data:
                            pass
                    yield item
            if pending.strip():
                yield json.loads(pending)

    async def post(
        self,
        path: str,
        payload: dict[str, Any],
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a request Ollama answers with one JSON object (``/api/embed``, ``/api/show``,
        a non-streamed generate); ``timeout`` in seconds, else the client's (no read limit)."""
        response = await self._http.post(
            path,
            json=payload,
            headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        return _object(path, response)

    async def delete(self, model: str) -> None:
        """Remove ``model`` from this Ollama's disk (``ollama rm``)."""
        response = await self._http.request("DELETE", "/api/delete", json={"model": model})
        if response.status_code != 200:
            raise OllamaError(response.status_code, _error_text(response.text))

    async def load(self, model: str, keep_alive: str = "") -> None:
        """Load a model into VRAM without generating (Ollama's empty-prompt generate)."""
        payload: dict[str, Any] = {"model": model, "prompt": "", "stream": False}
        if keep_alive:
            payload["keep_alive"] = keep_alive
        await self.post("/api/generate", payload)


def _object(path: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object Ollama answered ``path`` with; OllamaError for an error status or
    any other answer."""
    if response.status_code != 200:
        raise OllamaError(response.status_code, _error_text(response.text))
    answer = response.json()
    if not isinstance(answer, dict):
        raise OllamaError(502, f"{path} answered {type(answer).__name__}, not an object")
    return answer


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        return body.strip() or "no error text"
