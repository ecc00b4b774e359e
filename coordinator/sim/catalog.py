"""What the simulator knows about GPUs and models, and the checks that refuse to guess.

The numbers come from ``hive/hardware.py``; a workload file may add to them (or
override them) in its ``catalog`` section, for hardware and models that catalog lacks:

```yaml
catalog:
  gpus:                       # by the name the cluster file gives the GPU
    Mystery Card: {memory_gb: 12, bandwidth_gbs: 360, vendor: other}
  models:                     # by the name the workload and the endpoints use
    my-model:1b: {size_gb: 0.8, parameters: 1B}
    my-embedder:latest: {size_gb: 0.3, parameters: 110M, embedding_length: 768}
```

A GPU needs its memory and its memory bandwidth (decode speed is bandwidth bound); a
model its size on disk and in VRAM and its parameter count; ``embedding_length`` makes
it an embedding model. A GPU or model found in neither place is an error naming the
file, the key and the name: the simulator used to size unknown models at 4 GB and run
unknown GPUs at 300 GB/s, which made its answers up.

``check_cluster`` refuses the cluster shapes that cannot be simulated (no nodes, a node
without endpoints, an endpoint without GPUs, endpoints that share some but not all of
their GPUs) and resolves every endpoint's GPUs; ``homeless`` says which of a workload's
models no endpoint can run, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hive import hardware
from hive.config import ClusterConfig, ConfigError

GPU_KEYS = ("memory_gb", "bandwidth_gbs", "vendor")
MODEL_KEYS = (
    "size_gb",
    "parameters",
    "family",
    "quantization",
    "context_length",
    "embedding_length",
)


@dataclass(frozen=True, slots=True)
class Catalog:
    """``hive/hardware.py``'s catalogs, with a workload file's additions taking precedence."""

    source: str = "<catalog>"
    gpus: Mapping[str, hardware.GpuKind] = field(default_factory=dict)
    models: Mapping[str, hardware.ModelKind] = field(default_factory=dict)

    def gpu(self, name: str) -> hardware.GpuKind | None:
        return self.gpus.get(name) or hardware.GPU_CATALOG.get(name)

    def model(self, name: str) -> hardware.ModelKind | None:
        kind = self.models.get(name)
        if kind is not None:
            return kind
        try:
            return hardware.model_kind(name)
        except KeyError:
            return None


@dataclass(frozen=True, slots=True)
class EndpointHardware:
    """One endpoint's resolved GPUs, and the endpoints (indexes in cluster order) that
    run on the same GPUs and so share their memory and bandwidth."""

    gpus: tuple[hardware.GpuKind, ...]
    peers: tuple[int, ...] = ()


def _number(source: str, key: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(source, key, f"expected a number > 0, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(source, key, f"expected an integer, got {value!r}")
    return float(value)


def _entry(source: str, key: str, value: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, f"expected a mapping, got {type(value).__name__}")
    for k in value:
        if k not in allowed:
            raise ConfigError(
                source, f"{key}.{k}", f"unknown key; expected one of {', '.join(allowed)}"
            )
    return value


def _required(source: str, key: str, data: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in data:
        raise ConfigError(source, f"{key}.{name}", f"required: {what}")
    return data[name]


def parse_catalog(source: str, value: Any) -> Catalog:
    """The workload file's ``catalog`` section."""
    top = _entry(source, "catalog", value or {}, ("gpus", "models"))
    gpus: dict[str, hardware.GpuKind] = {}
    raw_gpus = top.get("gpus") or {}
    if not isinstance(raw_gpus, Mapping):
        raise ConfigError(source, "catalog.gpus", "expected a mapping of GPU name to numbers")
    for name, raw in raw_gpus.items():
        k = f"catalog.gpus.{name}"
        g = _entry(source, k, raw, GPU_KEYS)
        memory = _number(
            source,
            f"{k}.memory_gb",
            _required(source, k, g, "memory_gb", "the GPU's memory in GiB"),
        )
        bandwidth = _number(
            source,
            f"{k}.bandwidth_gbs",
            _required(source, k, g, "bandwidth_gbs", "the GPU's memory bandwidth in GB/s"),
        )
        vendor = g.get("vendor", "other")
        if vendor not in ("nvidia", "amd", "other"):
            raise ConfigError(source, f"{k}.vendor", f"{vendor!r} is not one of nvidia, amd, other")
        gpus[str(name)] = hardware.GpuKind(
            str(name), vendor, int(memory * hardware.GIB), bandwidth * hardware.GB, 0.0
        )
    raw_models = top.get("models") or {}
    if not isinstance(raw_models, Mapping):
        raise ConfigError(source, "catalog.models", "expected a mapping of model name to numbers")
    models: dict[str, hardware.ModelKind] = {}
    for name, raw in raw_models.items():
        k = f"catalog.models.{name}"
        m = _entry(source, k, raw, MODEL_KEYS)
        size = _number(
            source, f"{k}.size_gb", _required(source, k, m, "size_gb", "the model's size in GB")
        )
        params = _required(source, k, m, "parameters", "the parameter count, e.g. 7B or 137M")
        if not isinstance(params, str) or not params[:-1] or params[-1] not in "BM":
            raise ConfigError(
                source, f"{k}.parameters", f"expected a count like 7B or 137M, got {params!r}"
            )
        ctx = _number(source, f"{k}.context_length", m.get("context_length", 8192), integer=True)
        dims = m.get("embedding_length", 0)
        if dims != 0:
            dims = _number(source, f"{k}.embedding_length", dims, integer=True)
        models[str(name)] = hardware.ModelKind(
            str(name),
            str(m.get("family", str(name).split(":")[0])),
            params,
            str(m.get("quantization", "F16" if dims else "Q4_K_M")),
            int(size * hardware.GB),
            int(ctx),
            int(dims),
        )
    return Catalog(source, gpus, models)


def _gb(n: float) -> str:
    return f"{n / hardware.GB:.1f} GB"


def check_cluster(cluster: ClusterConfig, catalog: Catalog) -> list[EndpointHardware]:
    """Every endpoint's hardware, in cluster order; a ConfigError naming the cluster file
    and key for what the simulator cannot model."""
    src = cluster.source
    if not cluster.nodes:
        raise ConfigError(src, "nodes", "the cluster has no nodes; the simulator needs one")
    out: list[EndpointHardware] = []
    for n, node in enumerate(cluster.nodes):
        if not node.endpoints:
            raise ConfigError(
                src,
                f"nodes[{n}].endpoints",
                f"node {node.name!r} has no endpoints; the simulator runs models only on "
                "endpoints (give it one with its GPUs and models, or remove the node)",
            )
        kinds: list[hardware.GpuKind] = []
        for g, spec in enumerate(node.gpus):
            kind = catalog.gpu(spec.name)
            if kind is None:
                raise ConfigError(
                    src,
                    f"nodes[{n}].gpus[{g}]",
                    f"GPU {spec.name!r} is not in the catalog (hive/hardware.py) and "
                    f"{catalog.source} does not give its numbers: add it under "
                    "catalog.gpus with memory_gb and bandwidth_gbs",
                )
            if spec.name in catalog.gpus and kind.memory_bytes != spec.memory_bytes:
                raise ConfigError(
                    src,
                    f"nodes[{n}].gpus[{g}]",
                    f"GPU {spec.name!r} has {spec.memory_bytes / hardware.GIB:g} GiB here but "
                    f"{kind.memory_bytes / hardware.GIB:g} GiB in {catalog.source} "
                    f"catalog.gpus.{spec.name}",
                )
            kinds.append(kind)
        first = len(out)
        for e, ep in enumerate(node.endpoints):
            key = f"nodes[{n}].endpoints[{e}]"
            if not ep.gpus:
                raise ConfigError(
                    src, f"{key}.gpus", f"endpoint {ep.id!r} names no GPU of node {node.name!r}"
                )
            for m, model in enumerate(ep.models):
                if catalog.model(model) is None:
                    raise ConfigError(
                        src,
                        f"{key}.models[{m}]",
                        f"model {model!r} is not in the catalog (hive/hardware.py) and "
                        f"{catalog.source} does not give its numbers: add it under "
                        "catalog.models with size_gb and parameters",
                    )
            peers = []
            for o, other in enumerate(node.endpoints):
                if o == e or not set(ep.gpus) & set(other.gpus):
                    continue
                if set(ep.gpus) != set(other.gpus):
                    shared = sorted(set(ep.gpus) & set(other.gpus))
                    raise ConfigError(
                        src,
                        f"{key}.gpus",
                        f"endpoint {ep.id!r} shares GPU {shared[0]} with endpoint {other.id!r} "
                        "but not all its GPUs; endpoints that share a GPU must list the same "
                        "GPUs (they then share its memory and bandwidth)",
                    )
                peers.append(first + o)
            out.append(EndpointHardware(tuple(kinds[i] for i in ep.gpus), tuple(peers)))
    return out


def homeless(cluster: ClusterConfig, catalog: Catalog, models: list[str]) -> dict[str, str]:
    """Of ``models``, those no endpoint can ever run, each with the reason."""
    out: dict[str, str] = {}
    hw = check_cluster(cluster, catalog)
    for m in models:
        kind = catalog.model(m)
        size = kind.size_bytes if kind is not None else 0
        listed: list[tuple[int, str]] = []
        i = 0
        for n, node in enumerate(cluster.nodes):
            for e, ep in enumerate(node.endpoints):
                if m in ep.models:
                    vram = sum(g.memory_bytes for g in hw[i].gpus)
                    listed.append((vram, f"nodes[{n}].endpoints[{e}] ({node.name}/{ep.id})"))
                i += 1
        if not listed:
            out[m] = f"no endpoint of {cluster.source} lists it"
            continue
        vram, where = max(listed)
        if vram < size:
            out[m] = (
                f"it needs {_gb(size)} and the largest endpoint of {cluster.source} that lists "
                f"it, {where}, has {_gb(vram)}"
            )
    return out
