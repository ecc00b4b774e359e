"""The performance model of GPUs and models that the emulator and the simulator share.

Token generation on a GPU is memory-bandwidth bound: every generated token reads
the whole model's weights once, so decode speed is about
``bandwidth / model_bytes * efficiency``. Prompt evaluation is compute bound and
batched, modelled as a fixed multiple of decode speed. Loading a model reads it
from disk into VRAM at ``LOAD_BYTES_PER_SECOND`` plus a fixed start-up cost.
The numbers are public spec-sheet figures; they are a model, not a measurement,
and only their ratios matter to routing.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1_000_000_000
GIB = 1 << 30

# Fraction of peak memory bandwidth llama.cpp reaches when decoding.
DECODE_EFFICIENCY = 0.55
# Prompt tokens are evaluated in batches, this many times faster than decoding.
PROMPT_SPEEDUP = 12.0
# Disk to VRAM, and the fixed cost of starting a runner.
LOAD_BYTES_PER_SECOND = 1.5 * GB
LOAD_FIXED_SECONDS = 0.8
# A model spread over several GPUs pays for the hop between them (per extra GPU).
MULTI_GPU_PENALTY = 0.08


@dataclass(frozen=True, slots=True)
class GpuKind:
    name: str
    vendor: str  # "nvidia" | "amd" | "other"
    memory_bytes: int
    bandwidth_bytes_per_second: float
    tdp_watts: float


@dataclass(frozen=True, slots=True)
class ModelKind:
    name: str
    family: str
    parameter_size: str
    quantization_level: str
    # Bytes the weights take on disk and, with a small KV cache, in VRAM.
    size_bytes: int
    context_length: int = 8192
    # An embedding model's vector size (it embeds but cannot generate); 0: a generative
    # model, which embeds too, with its hidden size (``embedding_length``).
    embedding_length: int = 0

    @property
    def embeds_only(self) -> bool:
        return self.embedding_length > 0


def _gpu(name: str, vendor: str, memory_gib: float, bandwidth_gbs: float, tdp: float) -> GpuKind:
    return GpuKind(name, vendor, int(memory_gib * GIB), bandwidth_gbs * GB, tdp)


GPU_CATALOG: dict[str, GpuKind] = {
    g.name: g
    for g in (
        _gpu("NVIDIA GeForce GTX 1070", "nvidia", 8, 256, 150),
        _gpu("NVIDIA Tesla P4", "nvidia", 8, 192, 75),
        _gpu("NVIDIA GeForce RTX 2080 SUPER", "nvidia", 8, 496, 250),
        _gpu("NVIDIA GeForce RTX 3070", "nvidia", 8, 448, 220),
        _gpu("AMD Radeon RX 9060 XT", "amd", 16, 320, 160),
        _gpu("NVIDIA GeForce GTX 1080", "nvidia", 8, 320, 180),
        _gpu("AMD Radeon RX 6600", "amd", 8, 224, 132),
        _gpu("NVIDIA GeForce RTX 4090", "nvidia", 24, 1008, 450),
        _gpu("NVIDIA H100 80GB HBM3", "nvidia", 80, 3350, 700),
    )
}


def _model(name: str, family: str, params: str, size_gb: float, quant: str = "Q4_K_M") -> ModelKind:
    return ModelKind(name, family, params, quant, int(size_gb * GB))


def _embedder(
    name: str, family: str, params: str, size_gb: float, dims: int, ctx: int
) -> ModelKind:
    return ModelKind(name, family, params, "F16", int(size_gb * GB), ctx, dims)


MODEL_CATALOG: dict[str, ModelKind] = {
    m.name: m
    for m in (
        _model("llama3.2:3b", "llama", "3.2B", 2.0),
        _model("llama3.1:8b", "llama", "8.0B", 4.9),
        _model("codellama:7b", "llama", "7B", 3.8),
        _model("codellama:13b", "llama", "13B", 7.4),
        _model("deepseek-coder:6.7b", "llama", "7B", 3.8),
        _model("deepseek-coder-v2:16b", "deepseek2", "15.7B", 8.9),
        _model("qwen2.5-coder:7b", "qwen2", "7.6B", 4.7),
        _model("qwen2.5-coder:14b", "qwen2", "14.8B", 9.0),
        _model("starcoder2:15b", "starcoder2", "16B", 9.1),
        _model("mistral:7b", "llama", "7.2B", 4.1),
        _model("phi3:mini", "phi3", "3.8B", 2.2),
        _model("gemma2:9b", "gemma2", "9.2B", 5.4),
        _model("llava:7b", "llama", "7B", 4.7),
        _model("qwen3:8b", "qwen3", "8.2B", 5.2),
        _embedder("nomic-embed-text:latest", "nomic-bert", "137M", 0.27, 768, 2048),
        _embedder("mxbai-embed-large:latest", "bert", "334M", 0.67, 1024, 512),
        _embedder("all-minilm:latest", "bert", "23M", 0.046, 384, 512),
    )
}


def embedding_length(model: ModelKind) -> int:
    """The size of ``model``'s embeddings: an embedding model's own, else a generative
    model's hidden size, which grows with its parameter count."""
    if model.embedding_length:
        return model.embedding_length
    billions = float(model.parameter_size.rstrip("B")) if model.parameter_size.endswith("B") else 7
    return 3072 if billions < 5 else 4096 if billions < 10 else 5120


def decode_tokens_per_second(gpus: list[GpuKind], model: ModelKind) -> float:
    """Generation speed of ``model`` on an endpoint spanning ``gpus``.

    Layers are split across the GPUs and run one after another, so the time
    per token is the model's bytes spread over the GPUs in proportion to their
    memory, each read at its own bandwidth, plus a hop penalty per extra GPU.
    """
    if not gpus:
        raise ValueError("an endpoint needs at least one GPU")
    total_memory = sum(g.memory_bytes for g in gpus)
    seconds = 0.0
    for g in gpus:
        share = model.size_bytes * g.memory_bytes / total_memory
        seconds += share / (g.bandwidth_bytes_per_second * DECODE_EFFICIENCY)
    seconds *= 1.0 + MULTI_GPU_PENALTY * (len(gpus) - 1)
    return 1.0 / seconds


def prompt_tokens_per_second(gpus: list[GpuKind], model: ModelKind) -> float:
    return decode_tokens_per_second(gpus, model) * PROMPT_SPEEDUP


def load_seconds(model: ModelKind, bytes_per_second: float = LOAD_BYTES_PER_SECOND) -> float:
    return LOAD_FIXED_SECONDS + model.size_bytes / bytes_per_second


def gpu_kind(name: str) -> GpuKind:
    """Look up a GPU by its marketing name; unknown names raise KeyError with the choices."""
    try:
        return GPU_CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown GPU {name!r}; known: {', '.join(sorted(GPU_CATALOG))}") from None


def model_kind(name: str) -> ModelKind:
    """Look up a model; a missing ':tag' means ':latest', which maps to the first of its family."""
    if name in MODEL_CATALOG:
        return MODEL_CATALOG[name]
    base = name.removesuffix(":latest")
    for known in MODEL_CATALOG.values():
        if known.name.split(":")[0] == base:
            return known
    raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_CATALOG))}")
