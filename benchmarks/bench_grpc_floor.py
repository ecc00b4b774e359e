"""The floor under the token path: what Python's gRPC (grpc.aio) costs per streamed message
with none of Hive's code, no protobuf and no TLS, in separate processes.

Three processes, as a relay has them: a **source** (an agent: a server-streaming method
that sends ``--streams`` concurrent streams, each a message every ``--interval`` seconds,
like the agent's chunk window), a **relay** (the coordinator or the gateway: a server
whose every call opens a call to the source and forwards each message as it comes) and a
**sink** (the client: opens the streams on the relay and counts what arrives). Messages
are ``--size`` raw bytes with identity serializers. Each process's CPU time (user +
system, ``/proc/PID/stat``) is read over the measured seconds, its idle CPU (the same
seconds with no streams) taken out, and divided by the messages carried.

First, a hop's added latency: ``--calls`` sequential one-message calls through a relay in
front of a source that answers at once, interleaved with the same calls straight to it.

A relay forwards a message for at least the sum of what a receiver and a sender pay; a
message carries every token of its window, so the CPU per token of a hop is at least
``relay µs per message / tokens per message``. Prints one JSON object.

    python benchmarks/bench_grpc_floor.py [--streams 200] [--interval 0.1] [--seconds 10]
        [--size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from harness import cpu_seconds, free_port, summary

METHOD = "/floor.Floor/Stream"


def _identity(b: bytes) -> bytes:
    return b


async def _serve(port: int, handler: Any) -> None:
    server = grpc.aio.server()
    rpc = grpc.unary_stream_rpc_method_handler(
        handler, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("floor.Floor", {"Stream": rpc}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def source(port: int, interval: float, size: int) -> None:
    """Each call: ``count`` messages (the request's decimal), one every ``interval`` s (at
    once when 0)."""
    payload = b"x" * size

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(int(request)):
            if interval > 0:
                await asyncio.sleep(interval)
            yield payload

    await _serve(port, stream)


async def relay(port: int, upstream: str) -> None:
    """Each call: the same call on ``upstream``, every message forwarded as it comes."""
    channel = grpc.aio.insecure_channel(upstream)
    call = channel.unary_stream(
        METHOD, request_serializer=_identity, response_deserializer=_identity
    )

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        async for message in call(request):
            yield message

    await _serve(port, stream)


async def sink(target: str, streams: int, count: int) -> int:
    """``streams`` concurrent calls of ``count`` messages each; the messages received."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream(
            METHOD, request_serializer=_identity, response_deserializer=_identity
        )

        async def one() -> int:
            return sum([1 async for _ in call(str(count).encode())])

        return sum(await asyncio.gather(*(one() for _ in range(streams))))


async def round_trips(target: str, calls: int) -> list[float]:
    """``calls`` sequential one-message calls (the source answers at once): seconds each."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream(
            METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            async for _ in call(b"1"):
                pass
            seconds.append(time.perf_counter() - started)
        return seconds


def child(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{args[0]} did not start")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["source", "relay"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    ap.add_argument("--streams", type=int, default=200, help="concurrent streams")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between messages")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long each stream runs")
    ap.add_argument("--size", type=int, default=64, help="bytes a message")
    ap.add_argument(
        "--calls", type=int, default=1000, help="sequential calls for a hop's added latency"
    )
    args = ap.parse_args()
    if args.role == "source":
        asyncio.run(source(args.port, args.interval, args.size))
        return
    if args.role == "relay":
        asyncio.run(relay(args.port, args.upstream))
        return
    source_port, relay_port = free_port(), free_port()
    instant_port, hop_port = free_port(), free_port()
    procs = {
        "source": child(
            "--role",
            "source",
            "--port",
            str(source_port),
            "--interval",
            str(args.interval),
            "--size",
            str(args.size),
        ),
        # The same source answering at once, and a relay to it: the latency check.
        "instant": child("--role", "source", "--port", str(instant_port), "--interval", "0"),
    }
    procs["relay"] = child(
        "--role", "relay", "--port", str(relay_port), "--upstream", f"127.0.0.1:{source_port}"
    )
    procs["instant_relay"] = child(
        "--role", "relay", "--port", str(hop_port), "--upstream", f"127.0.0.1:{instant_port}"
    )
    try:
        # A hop's added latency: one-message calls through a relay, interleaved in rounds
        # of 100 with the same calls straight to the source.
        via: list[float] = []
        straight: list[float] = []
        asyncio.run(round_trips(f"127.0.0.1:{hop_port}", 50))
        asyncio.run(round_trips(f"127.0.0.1:{instant_port}", 50))
        hop_cpu = 0.0
        for _ in range(max(1, args.calls // 100)):
            before_hop = cpu_seconds(procs["instant_relay"].pid)
            via += asyncio.run(round_trips(f"127.0.0.1:{hop_port}", 100))
            hop_cpu += cpu_seconds(procs["instant_relay"].pid) - before_hop
            straight += asyncio.run(round_trips(f"127.0.0.1:{instant_port}", 100))
        via_ms, straight_ms = summary(via)["p50_ms"], summary(straight)["p50_ms"]
        latency = {
            "calls": len(via),
            "straight_p50_ms": straight_ms,
            "through_a_relay_p50_ms": via_ms,
            "added_by_the_hop_p50_ms": round(via_ms - straight_ms, 3),
            # A call in and a call out, one message each way: the least a request costs
            # a process that relays it.
            "relay_cpu_us_per_call": round(hop_cpu / len(via) * 1e6, 1),
        }
        pids = {name: procs[name].pid for name in ("source", "relay")}
        # A few streams first: channels connected, code paths warm.
        asyncio.run(sink(f"127.0.0.1:{relay_port}", 4, 5))
        idle_from = {n: cpu_seconds(pid) for n, pid in pids.items()}
        time.sleep(2.0)
        idle = {n: (cpu_seconds(pid) - idle_from[n]) / 2.0 for n, pid in pids.items()}
        count = max(1, round(args.seconds / args.interval))
        before = {n: cpu_seconds(pid) for n, pid in pids.items()}
        sink_before = time.process_time()
        started = time.perf_counter()
        received = asyncio.run(sink(f"127.0.0.1:{relay_port}", args.streams, count))
        wall = time.perf_counter() - started
        sink_cpu = time.process_time() - sink_before
        used = {n: cpu_seconds(pid) - before[n] - idle[n] * wall for n, pid in pids.items()}
        used["sink"] = sink_cpu
        expected = args.streams * count
        out: dict[str, Any] = {
            "benchmark": "bench_grpc_floor",
            "grpc": grpc.__version__,
            "python": sys.version.split()[0],
            "streams": args.streams,
            "interval_seconds": args.interval,
            "message_bytes": args.size,
            "messages": received,
            "messages_expected": expected,
            "wall_seconds": round(wall, 2),
            "messages_per_second": round(received / wall, 1),
            "cpu_seconds": {n: round(v, 3) for n, v in used.items()},
            "cpu_us_per_message": {n: round(v / received * 1e6, 1) for n, v in used.items()},
            "idle_cpu_share": {n: round(v, 4) for n, v in idle.items()},
            "latency": latency,
        }
        print(json.dumps(out, indent=2))
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(10)


if __name__ == "__main__":
    main()
