"""Hostile input against the real processes, with a valid token: values that used to
take a node out of rotation (``keep_alive: 1e104``) or answer a text/plain 500 (a lone
surrogate), then schemathesis over the gateway's whole OpenAPI. Nothing may answer 5xx,
and afterwards every node is healthy and every emulated Ollama answers its health probe.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hive.v1 import common_pb2
from tests.faults.conftest import Record
from tests.faults.harness import NodeSpec, ProcessCluster, process_cluster
from tests.test_gateway_fuzz import fuzz_every_operation

NODES = [NodeSpec("NODEA"), NodeSpec("NODEB")]
MODEL = "llama3.2:3b"
# Examples per OpenAPI operation: a quick pass in CI, a long one with --faults-slow.
EXAMPLES = 200 if os.environ.get("HIVE_FAULTS_SLOW") == "1" else 8

# Each: path, body. All must be a 4xx in the API's own shape, never a 5xx or a 200.
OUT_OF_RANGE: list[tuple[str, dict[str, Any]]] = [
    ("/api/generate", {"model": MODEL, "prompt": "x", "keep_alive": 1e104}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "keep_alive": "1e300h"}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"num_ctx": -1}}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"num_predict": 10**30}}),
    ("/api/chat", {"model": MODEL, "messages": [], "options": {"top_k": -5}}),
    (
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**30},
    ),
    (
        "/v1/messages",
        {"model": MODEL, "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]},
    ),
]
SURROGATE = '"\\ud800"'
SURROGATE_BODIES = {
    "/api/generate": '{"model": "%s", "prompt": %s}',
    "/api/chat": '{"model": "%s", "messages": [{"role": "user", "content": %s}]}',
    "/api/embed": '{"model": "%s", "input": %s}',
    "/api/embeddings": '{"model": "%s", "prompt": %s}',
    "/v1/chat/completions": '{"model": "%s", "messages": [{"role": "user", "content": %s}]}',
    "/v1/completions": '{"model": "%s", "prompt": %s}',
    "/v1/embeddings": '{"model": "%s", "input": %s}',
    "/v1/responses": '{"model": "%s", "input": %s}',
    "/v1/messages": '{"model": "%s", "max_tokens": 8, "messages": [{"role": "user", '
    '"content": %s}]}',
}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ProcessCluster]:
    async with process_cluster(tmp_path / "cluster", NODES, time_scale=0.0) as c:
        yield c


async def test_hostile_input_gets_4xx_and_no_node_leaves_rotation(
    cluster: ProcessCluster, figures: Record
) -> None:
    async with cluster.http(timeout=30) as http:
        for path, body in OUT_OF_RANGE:
            r = await http.post(path, json=body)
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        for path, template in SURROGATE_BODIES.items():
            r = await http.post(
                path,
                content=template % (MODEL, SURROGATE),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json"), (path, r.headers)
            # The same keep-alive connection serves the next request.
            ok = await http.post(
                "/api/generate",
                json={
                    "model": MODEL,
                    "prompt": "fine",
                    "stream": False,
                    "options": {"num_predict": 4},
                },
            )
            assert ok.status_code == 200, (path, ok.text)
    started = time.monotonic()
    _, calls, failures = await asyncio.to_thread(
        fuzz_every_operation,
        cluster.gateway_url,
        EXAMPLES,
        {"Authorization": f"Bearer {cluster.admin_token}"},
    )
    fuzz_s = time.monotonic() - started
    assert not failures, "\n".join(failures[:20])
    # Nothing a client sent took a node or an Ollama out: every probe still answers.
    reply = await cluster.status()
    assert all(n.state == common_pb2.NODE_STATE_HEALTHY for n in reply.nodes), reply.nodes
    async with httpx.AsyncClient(timeout=10) as plain:
        for emulator in cluster.emulators.values():
            port = emulator.argv[emulator.argv.index("--port") + 1]
            assert (await plain.get(f"http://127.0.0.1:{port}/api/ps")).status_code == 200
    figures(
        fault="hostile input with a valid token: out-of-range durations and counts, lone "
        f"surrogates on {len(SURROGATE_BODIES)} inference endpoints, schemathesis over "
        "the whole OpenAPI",
        outcome=f"every one a 4xx in its API's shape; {calls} fuzzed calls, 0 5xx; "
        "every node healthy and every Ollama's /api/ps 200 afterwards",
        fuzz_calls=calls,
        fuzz_s=round(fuzz_s, 1),
    )
