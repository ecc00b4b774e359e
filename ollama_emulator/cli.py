"""``python -m ollama_emulator``: one standalone emulated Ollama instance until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from hive import hardware
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.server import OllamaEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ollama_emulator",
        description="Serve the Ollama HTTP API over emulated GPUs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port")
    parser.add_argument(
        "--gpu",
        action="append",
        required=True,
        help=f"a GPU of this instance, repeatable; one of: {', '.join(hardware.GPU_CATALOG)}",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help=f"a model on disk, repeatable; one of: {', '.join(hardware.MODEL_CATALOG)}",
    )
    # Left unset so that EmulatorConfig's defaults apply.
    parser.add_argument("--num-parallel", type=int)
    parser.add_argument("--max-queue", type=int)
    parser.add_argument("--time-scale", type=float)
    parser.add_argument(
        "--model-load-gbps", type=float, help="GB/s the disk reads models at (load time)"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--keep-alive", type=float, dest="default_keep_alive", help="seconds")
    parser.add_argument("--version", dest="version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
