"""What a request needs of its model, checked before routing against what the nodes say
the model can do (Ollama's ``/api/show`` capabilities, reported with each model in the
agents' registrations and heartbeats).

A node's Ollama refuses a request its model cannot serve (an embedding model asked to
chat, tools for a model whose template has none, ``think`` for a model that does not
reason), but only after routing: the refusal carried a node's name and counted as a failed
task. Found here, the coordinator refuses it up front (INVALID_ARGUMENT: each API answers
400 in its own shape) naming the model and the capability, and nothing reaches a node.

A model is judged by the union of what its endpoints report: if any can, the request is
routed (it may differ between Ollama versions). A model none of whose endpoints reports
capabilities (an Ollama too old to say) is not judged at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.registry import Registry
from hive.v1 import inference_pb2

# Each capability as Ollama's refusal names it ("does not support insert"), and what it
# is for, as ours adds. "completion" is named by the call: generate or chat.
WORDS = {
    "tools": ("tools", "its template has no tool calls"),
    "vision": ("vision", "images"),
    "thinking": ("thinking", "think: it does not reason apart from its answer"),
    "insert": ("insert", "suffix, fill-in-the-middle"),
}
# think values that ask for reasoning (empty is the model's default, "false" none).
THINKS = frozenset({"true", "low", "medium", "high"})


class ModelCapabilities:
    """Each model's capabilities across the cluster, rebuilt when some node's models change
    (``Registry.models_version``), not at every heartbeat."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._version = -1
        self._by_model: dict[str, frozenset[str]] = {}

    def of(self, model: str) -> frozenset[str] | None:
        """What ``model`` can do on some endpoint; None when no endpoint says (or none has
        it: routing answers that)."""
        if self._version != self.registry.models_version:
            by_model: dict[str, set[str]] = {}
            for record in self.registry:
                for endpoint in record.info.endpoints:
                    for info in endpoint.models:
                        if info.capabilities:
                            by_model.setdefault(info.name, set()).update(info.capabilities)
            self._by_model = {name: frozenset(caps) for name, caps in by_model.items()}
            self._version = self.registry.models_version
        return self._by_model.get(model)

    def refusal(self, model: str, needs: Iterable[str], call: str) -> str:
        """Why ``model`` cannot serve a ``call`` ("generate", "chat") that needs ``needs``,
        in Ollama's words and then ours, or "" when it can (or nothing is known of it)."""
        can = self.of(model)
        if can is None:
            return ""
        for need in needs:
            if need in can:
                continue
            if need == "completion":
                word, why = call, "it is an embedding model: use it with /api/embed"
            else:
                word, why = WORDS.get(need, (need, need))
            return f'"{model}" does not support {word} ({why}); it can: {", ".join(sorted(can))}'
        return ""


def generate_needs(request: inference_pb2.GenerateRequest) -> list[str]:
    needs = ["completion"]
    if request.suffix:
        needs.append("insert")
    if request.images:
        needs.append("vision")
    if request.think in THINKS:
        needs.append("thinking")
    return needs


def chat_needs(request: inference_pb2.ChatRequest) -> list[str]:
    needs = ["completion"]
    if request.tools:
        needs.append("tools")
    if any(m.images for m in request.messages):
        needs.append("vision")
    if request.think in THINKS:
        needs.append("thinking")
    return needs
