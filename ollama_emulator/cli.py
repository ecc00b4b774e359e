"""``hive emulator`` (or ``python -m ollama_emulator``): one standalone emulated Ollama
instance until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from hive import hardware
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.server import OllamaEmulator


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the Ollama HTTP API (/api/generate, /api/chat, /api/embed, "
        "/api/tags, /api/ps, /api/pull, ...) over emulated GPUs: models load in the time "
        "their size takes on the modelled disk, take VRAM, answer at the speed the GPUs' "
        "memory bandwidth gives, and share num_parallel slots, as a real Ollama does. For "
        "trying Hive without GPUs, tests and benchmarks; point an agent's endpoint url at it.",
        epilog=f"example: {prog} --port 11434 --gpu 'NVIDIA GeForce RTX 3070' "
        "--model llama3.1:8b --model qwen2.5-coder:7b --time-scale 0.1",
    )
    d = EmulatorConfig(gpus=[next(iter(hardware.GPU_CATALOG.values()))])  # the defaults
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=11434, help="port to listen on (11434, Ollama's); 0: a free one"
    )
    parser.add_argument(
        "--gpu",
        action="append",
        required=True,
        help="a GPU this instance spans, repeatable (their memory adds up); one of: "
        + ", ".join(hardware.GPU_CATALOG),
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a model on disk, repeatable (others can be pulled); one of: "
        + ", ".join(hardware.MODEL_CATALOG),
    )
    # Left unset so that EmulatorConfig's defaults apply.
    parser.add_argument(
        "--num-parallel",
        type=int,
        help=f"requests served at once per loaded model, OLLAMA_NUM_PARALLEL ({d.num_parallel})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        help="requests that may wait for a slot before one more is refused with 503, "
        f"OLLAMA_MAX_QUEUE ({d.max_queue})",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        help="multiplies every modelled duration (loading, prompt reading, each token): 1 "
        "is the modelled GPU's real speed, 0.1 ten times faster, 0 instant (benchmarks "
        f"measuring the mesh's own overhead) ({d.time_scale:g})",
    )
    parser.add_argument(
        "--model-load-gbps",
        type=float,
        help=f"GB/s the disk reads models at, the load time ({d.model_load_gbps:g})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help=f"mixed into every answer's text: two instances differ, each repeatably ({d.seed})",
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        dest="default_keep_alive",
        help="seconds an idle model stays loaded when a request does not say, "
        f"OLLAMA_KEEP_ALIVE ({d.default_keep_alive:g})",
    )
    parser.add_argument(
        "--version",
        dest="version",
        help=f"the Ollama version /api/version reports ({d.version})",
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m ollama_emulator") -> int:
    """Run the emulator until SIGINT or SIGTERM; ``hive emulator`` passes its own name."""
    args = _parser(prog).parse_args(argv)
    overrides: dict[str, Any] = {
        key: getattr(args, key)
        for key in (
            "num_parallel",
            "max_queue",
            "time_scale",
            "model_load_gbps",
            "seed",
            "default_keep_alive",
            "version",
        )
        if getattr(args, key) is not None
    }
    try:
        config = EmulatorConfig(
            gpus=[hardware.gpu_kind(name) for name in args.gpu],
            models=list(args.model),
            **overrides,
        )
    except (KeyError, ValueError) as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.host, args.port))
    except KeyboardInterrupt:
        # Ctrl-C before the signal handler was installed (or on a platform without one).
        pass
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    emulator = OllamaEmulator(config)
    await emulator.start(host=host, port=port)
    try:
        gpus = ", ".join(g.name for g in config.gpus)
        print(f"Ollama emulator on {emulator.url} ({gpus})", flush=True)
        await stop.wait()
    finally:
        await emulator.stop()
