"""The web dashboard (gateway/web): the committed build matches its sources, the gateway
serves it at ``/`` without shadowing any API route, and in headless Chromium it submits
a workflow, follows it live, and shows a node lost when its agent stops.

The end-to-end test runs the seed cluster in this process and the browser script
(``gateway/web/e2e/run.mjs``) as a subprocess; when the script prints
``HIVE-E2E stop-node NAME`` the test stops that agent. Screenshots go to a temporary
directory, or to ``$HIVE_DASHBOARD_SCREENSHOTS`` (``docs`` refreshes the README's).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway import dashboard
from gateway.app import create_app
from hive.cli.dev import DevCluster
from tests.conftest import fast_cluster

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "gateway" / "web"
DIST = WEB / "dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ("dashboard-workflows.png", "dashboard-cluster.png", "dashboard-performance.png")
STOP_MARKER = "HIVE-E2E stop-node "
E2E_TIMEOUT_SECONDS = 180


def source_hash(web: Path = WEB) -> str:
    """The hash ``gateway/web/scripts/source-hash.mjs`` writes to dist/source-hash.txt.

    sha256 over "path\\n" + sha256(content) + "\\n" for each build input (fixed files plus
    src/ without tests and src/test/), sorted by path. Keep in step with the script.
    """
    files = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"]
    for path in (web / "src").rglob("*"):
        rel = path.relative_to(web)
        if path.is_file() and "test" not in rel.parts[1:-1]:
            if not re.search(r"\.test\.[jt]sx?$", path.name):
                files.append(rel.as_posix())
    outer = hashlib.sha256()
    for rel_path in sorted(files):
        inner = hashlib.sha256((web / rel_path).read_bytes()).hexdigest()
        outer.update(f"{rel_path}\n{inner}\n".encode())
    return outer.hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "source-hash.txt"
    }


def node_tools_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / ".bin" / "vite").exists():
        return "gateway/web/node_modules is missing: run `npm ci` in gateway/web"
    return None


# --- the committed build -------------------------------------------------------------


def test_committed_dist_was_built_from_these_sources() -> None:
    """Needs no Node: dist/source-hash.txt, written by `npm run build`, names the sources."""
    recorded = (DIST / "source-hash.txt").read_text().strip()
    assert recorded == source_hash(), (
        "gateway/web/dist is stale: run `npm run build` in gateway/web and commit dist/"
    )


def test_committed_dist_equals_a_fresh_build(tmp_path: Path) -> None:
    """Vite's output is deterministic: a fresh build is byte for byte the committed one."""
    missing = node_tools_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "dist"
    subprocess.run(
        [
            str(WEB / "node_modules" / ".bin" / "vite"),
            "build",
            "--outDir",
            str(out),
            "--emptyOutDir",
            "--logLevel",
            "warn",
        ],
        cwd=WEB,
        check=True,
        timeout=120,
    )
    assert tree_hashes(out) == tree_hashes(DIST), (
        "gateway/web/dist differs from a fresh build: run `npm run build` in gateway/web"
    )


# --- served by the gateway -----------------------------------------------------------


async def test_gateway_serves_the_dashboard_and_keeps_its_routes() -> None:
    app = create_app("127.0.0.1:1")  # no coordinator needed for static files
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        index = await client.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert index.headers["cache-control"] == "no-cache"
        assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index.text)
        assert assets, index.text
        for asset in assets:
            response = await client.get(f"/{asset}")
            assert response.status_code == 200, asset
            assert "immutable" in response.headers["cache-control"]
        assert (await client.get("/assets/nope.js")).status_code == 404
        # The API keeps its own paths and error shapes.
        missing = await client.get("/api/distributed/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert (await client.get("/docs")).status_code == 200
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/" not in paths and "/api/distributed/workflows" in paths
        assert (await client.get("/metrics")).status_code == 200


def test_gateway_without_a_build_serves_no_dashboard(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    assert dashboard.install(app, dist=tmp_path) is False
    with TestClient(app) as client:
        # Still answers Ollama's CLI, which checks a server with HEAD / first.
        assert client.head("/").status_code == 200
        assert "dashboard not built" in client.get("/").text


# --- end to end in Chromium --------------------------------------------------------


@pytest.mark.timeout(E2E_TIMEOUT_SECONDS + 60)
async def test_dashboard_end_to_end_in_chromium(tmp_path: Path) -> None:
    missing = node_tools_missing()
    if missing:
        pytest.skip(missing)
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed: run `npm ci` in gateway/web")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: run scripts/install-system-deps.sh (Debian chromium)"
        )
    wanted = os.environ.get("HIVE_DASHBOARD_SCREENSHOTS")
    screenshots = Path(wanted) if wanted else tmp_path / "shots"
    if not screenshots.is_absolute():
        screenshots = ROOT / screenshots
    # Screenshots for people get a longer run of load, so the charts have a history.
    settle = "20" if wanted else "0"
    # Small time scale: stages take a visible moment, the run stays short.
    dev = DevCluster(
        fast_cluster(), coordinator_listen="127.0.0.1:0", gateway_port=0, time_scale=0.05
    )
    lines: list[str] = []
    try:
        await dev.start()
        await dev.wait_registered(timeout=20)
        assert dev.gateway is not None
        process = await asyncio.create_subprocess_exec(
            "node",
            "e2e/run.mjs",
            f"{dev.gateway.url}/",
            "--screenshots",
            str(screenshots),
            "--settle",
            settle,
            cwd=WEB,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(E2E_TIMEOUT_SECONDS):
                async for raw in process.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    lines.append(line)
                    print(line, file=sys.stderr)
                    if line.startswith(STOP_MARKER):
                        await dev.stop_node(line.removeprefix(STOP_MARKER).strip())
                returncode = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    finally:
        await dev.stop()
    output = "\n".join(lines)
    assert returncode == 0, f"the browser test failed:\n{output}"
    assert "HIVE-E2E ok" in output
    assert any(line.startswith(STOP_MARKER) for line in lines)
    for name in SCREENSHOTS:
        assert (screenshots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
