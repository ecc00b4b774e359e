"""Model names as Ollama spells them, and Ollama's bounds on a request, shared by the
coordinator, the gateway and the emulator."""

from __future__ import annotations

# The most top_logprobs Ollama gives (it refuses a request for more).
MAX_TOP_LOGPROBS = 20


def tagged(name: str) -> str:
    """``name`` as the nodes' Ollamas list it: a name without a tag means ``:latest``
    (``nomic-embed-text`` is ``nomic-embed-text:latest``; a registry host's port is not a
    tag, so only the part after the last ``/`` is looked at)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
