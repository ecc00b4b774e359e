"""What Ollama says about a model it has: digest, details, parameter count, capabilities.

Pure functions of a ``hive.hardware.ModelKind``; ``/api/tags``, ``/api/ps`` and
``/api/show`` print them, and the request checks refuse what a model's capabilities rule out.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hive import hardware


def digest(name: str) -> str:
    return hashlib.sha256(f"ollama-emulator/{name}".encode()).hexdigest()


def details(kind: hardware.ModelKind) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": kind.family,
        "families": [kind.family],
        "parameter_size": kind.parameter_size,
        "quantization_level": kind.quantization_level,
    }


def parameter_count(kind: hardware.ModelKind) -> int:
    size = kind.parameter_size.upper()
    scale = {"B": 1e9, "M": 1e6}.get(size[-1:], 1.0)
    try:
        return int(float(size.rstrip("BM")) * scale)
    except ValueError:
        return 0


def capabilities(kind: hardware.ModelKind) -> list[str]:
    """What ``ollama show`` lists: embedding models embed only; code models can insert
    (fill-in-the-middle); llama, mistral and qwen models call tools (qwen2.5-coder too),
    but not codellama or deepseek-coder, whose templates have no tools."""
    if kind.embeds_only:
        return ["embedding"]
    out = ["completion"]
    if "llava" in kind.name:
        return [*out, "vision"]
    no_tools = ("codellama", "deepseek-coder")
    if kind.family in ("llama", "qwen2", "qwen3") and not kind.name.startswith(no_tools):
        out.append("tools")
    if kind.family == "qwen3":
        out.append("thinking")
    if "coder" in kind.name or "starcoder" in kind.name or "codellama" in kind.name:
        out.append("insert")
    return out
