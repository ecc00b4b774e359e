"""The web dashboard: the built single-page app in ``gateway/web/dist`` served at ``/``.

The app is built by ``npm run build`` in ``gateway/web`` and committed, so installing the
package needs no Node. It routes with URL fragments (``/#/cluster``), so the gateway
serves only ``/`` (``index.html``) and ``/assets/*``: every other path stays the API's.
Asset names carry a content hash and are cached for good; ``index.html`` is revalidated.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

DIST = Path(__file__).parent / "web" / "dist"


class _HashedAssets(StaticFiles):
    """Static files whose names change with their content: cacheable forever."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def install(app: FastAPI, dist: Path = DIST) -> bool:
    """Serve the dashboard from ``dist``; False (nothing mounted) when it is not built."""
    index = dist / "index.html"
    if not index.is_file():
        # Ollama's CLI checks a server with HEAD / before every command.
        @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
        async def running() -> PlainTextResponse:
            return PlainTextResponse("Hive mesh gateway is running (dashboard not built)")

        return False

    # HEAD too: Ollama's CLI checks a server with HEAD / before every command.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard() -> FileResponse:
        """The dashboard's single page."""
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount("/assets", _HashedAssets(directory=dist / "assets"), name="dashboard-assets")
    return True
