"""What the benchmarks share: a one-node cluster, a server child process, a process's
CPU time and a free port.

A benchmark that measures a server runs it in a child process (``--serve``) so the
client's work and the server's do not share an event loop; the child prints one JSON
line of addresses when it is ready and serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def nodeless_cluster(
    routing: dict[str, Any] | None = None,
    optimizer: dict[str, Any] | None = None,
    **settings: Any,
) -> Any:
    """A benchmark coordinator's cluster file (a ``hive.config.ClusterConfig``): no nodes
    declared (agents register as they come), listening on a free port, its state in a
    fresh temporary directory; ``settings`` over CoordinatorSettings' defaults."""
    from hive.config import ClusterConfig, CoordinatorSettings

    state = Path(tempfile.mkdtemp(prefix="hive-bench-")) / "state.sqlite"
    return ClusterConfig(
        "bench",
        CoordinatorSettings(listen="127.0.0.1:0", state_path=str(state), **settings),
        nodes=(),
        routing=routing or {},
        optimizer=optimizer or {},
    )


async def serve_one_node(
    model: str, state_path: str, gateway: bool = False, also: tuple[str, ...] = ()
) -> None:
    """Run a one-node cluster (a zero-delay emulator with ``model`` and the models ``also``
    on an RTX 3070, its agent, the coordinator, optionally the gateway); print its
    addresses; serve forever."""
    from hive.cli.dev import DevCluster
    from hive.config import ClusterConfig, CoordinatorSettings, EndpointSpec, GpuSpec, NodeSpec

    cluster = ClusterConfig(
        source="bench",
        coordinator=CoordinatorSettings(listen="127.0.0.1:0"),
        nodes=(
            NodeSpec(
                name="BENCH",
                gpus=(GpuSpec("NVIDIA GeForce RTX 3070", "nvidia", 8 << 30),),
                endpoints=(
                    EndpointSpec(id="gpu0", gpus=(0,), num_parallel=4, models=(model, *also)),
                ),
            ),
        ),
    )
    dev = DevCluster(
        cluster,
        coordinator_listen="127.0.0.1:0",
        gateway_port=0 if gateway else None,
        time_scale=0.0,
        state_path=state_path,
    )
    await dev.start()
    await dev.wait_registered()
    addresses = {
        "coordinator": dev.coordinator_address,
        "emulator": dev.emulators["BENCH/gpu0"].url,
    }
    if dev.gateway is not None:
        addresses["gateway"] = dev.gateway.url
    print(json.dumps(addresses), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await dev.stop()


async def http_ttft(http: Any, url: str, body: dict[str, Any]) -> float:
    """Seconds from sending a streaming Ollama ``/api/generate`` (``body``) to ``url`` until
    the first line with text; the rest of the answer is read too (0.0: no text came)."""
    start = time.perf_counter()
    first = 0.0
    async with http.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if not first and line and json.loads(line).get("response"):
                first = time.perf_counter() - start
    return first


async def mesh_ttft(stub: Any, model: str, prompt: str, tokens: int) -> float:
    """Seconds from a gRPC ``InferenceService.Generate`` until its first output chunk;
    the rest of the stream is read too (0.0: no chunk came)."""
    from hive.v1 import inference_pb2

    start = time.perf_counter()
    first = 0.0
    request = inference_pb2.GenerateRequest(model=model, prompt=prompt)
    request.options.update({"num_predict": tokens})
    async for event in stub.Generate(request):
        if not first and event.HasField("chunk"):
            first = time.perf_counter() - start
    return first


@contextlib.contextmanager
def server_child(script: str, *args: str) -> Iterator[dict[str, Any]]:
    """Start ``script --serve <state path> *args`` as a child; yield the JSON line it
    prints when ready; terminate it afterwards. Its state lives in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen(
            [sys.executable, script, "--serve", str(Path(tmp) / "state.sqlite"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        try:
            assert child.stdout is not None
            yield json.loads(child.stdout.readline())
        finally:
            child.terminate()
            child.wait(20)


def summary(values: list[float]) -> dict[str, float]:
    """Median and 99th percentile of ``values`` (seconds), in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
    }


def client_server_main(
    script: str,
    serve: Callable[[str], Coroutine[Any, Any, None]],
    measure: Callable[[dict[str, Any], int], Coroutine[Any, Any, dict[str, Any]]],
    default_requests: int,
) -> int:
    """The command line of a benchmark whose server runs in a child process: with
    ``--serve STATE`` this is the child and runs ``serve(STATE)``; otherwise it starts the
    child, runs ``measure(addresses, --requests)`` against it and prints the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=default_requests)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    with server_child(script) as addresses:
        result = asyncio.run(measure(addresses, args.requests))
    print(json.dumps(result, indent=2))
    return 0
