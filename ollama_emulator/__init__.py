"""An emulated Ollama server: the real HTTP API over modelled GPUs, for the demo cluster and tests.

``OllamaEmulator(EmulatorConfig(...))`` serves Ollama's REST API well enough for the
official ``ollama`` client, and models what routing depends on: model loads and VRAM,
LRU eviction, keep_alive, per-model parallel slots with a bounded queue, and token speeds
from ``hive.hardware``.
"""

from ollama_emulator.activity import GpuActivity
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.generation import decode_rate
from ollama_emulator.scheduler import EmulatorStats
from ollama_emulator.server import LoadedModel, OllamaEmulator

__all__ = [
    "EmulatorConfig",
    "EmulatorStats",
    "GpuActivity",
    "LoadedModel",
    "OllamaEmulator",
    "decode_rate",
]
