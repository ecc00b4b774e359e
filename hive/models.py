"""Model names as Ollama spells them, shared by the coordinator, the gateway and the
emulator (Ollama's bounds on a request are ``hive.limits``)."""

from __future__ import annotations


def tagged(name: str) -> str:
    """``name`` as the nodes' Ollamas list it: a name without a tag means ``:latest``
    (``nomic-embed-text`` is ``nomic-embed-text:latest``; a registry host's port is not a
    tag, so only the part after the last ``/`` is looked at)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
