"""The simulated hardware: Ollama endpoints on GPUs, as the emulator models them.

Per endpoint (mirroring ``ollama_emulator``): each model is a runner with
``num_parallel`` slots; requests for a model wait FIFO in its own line; a runner is
created by loading the model (``hive.hardware.load_seconds`` at the node's
``model_load_gbps``), evicting idle runners
least recently used first, and only if that makes it fit; a loading runner's first
request holds a slot. A request evaluates its prompt at the prompt speed, then decodes at
``single / (1 + 0.25 * (batch - 1)) / models_decoding`` tokens/s, where ``batch`` is the
number of requests decoding that model and ``models_decoding`` the number of models
decoding on the endpoint. Models stay loaded until evicted (no keep-alive expiry).

Endpoints on the same GPUs (two Ollama instances on one card) share them: each sees the
memory its peers' runners take as used, and ``models_decoding`` counts the models
decoding on all of them, so they split the bandwidth as one endpoint's models do. An
endpoint evicts only its own idle runners, as an Ollama instance does.

In mismatch mode (``coordinator/sim/mismatch.py``) an endpoint's speeds and load times are
the catalog's times seeded factors the router does not know.

Time advances only through ``advance(now)``; ``next_event()`` says when something
happens next on its own (a load or prompt ends, a request finishes).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from coordinator.sim.catalog import Catalog, check_cluster
from coordinator.sim.mismatch import Mismatch
from hive import hardware
from hive.config import ClusterConfig, NodeSpec

BATCH_SLOWDOWN = 0.25
_EPS = 1e-9


@dataclass(eq=False, slots=True)
class Request:
    task_id: str
    attempt: int
    model: str
    prompt_tokens: int
    output_tokens: int
    assigned_at: float
    slot_at: float = -1.0  # when it got a slot (-1: still waiting)
    load_seconds: float = 0.0
    prompt_end: float = 0.0  # while in prompt phase
    decode_left: float = 0.0  # single-stream decode seconds left
    decoding: bool = False
    decode_started: float = 0.0
    decode_single: float = 0.0
    prompt_seconds: float = 0.0
    finished_at: float = 0.0


@dataclass(eq=False, slots=True)
class Runner:
    kind: hardware.ModelKind
    ready_at: float
    ready: bool = False
    last_used: float = 0.0
    slots: list[Request] = field(default_factory=list)


def build_endpoints(
    cluster: ClusterConfig, catalog: Catalog, mismatch: Mismatch | None = None
) -> list[SimEndpoint]:
    """The cluster's endpoints in file order, their hardware from ``catalog`` and GPU
    sharers linked; a ConfigError for what cannot be modelled (``check_cluster``). With
    ``mismatch`` on, their true speeds and load times differ from the catalog's."""
    hw = check_cluster(cluster, catalog)
    places = [(node, i) for node in cluster.nodes for i in range(len(node.endpoints))]
    eps = [
        SimEndpoint(node, i, list(h.gpus), catalog) for (node, i), h in zip(places, hw, strict=True)
    ]
    for e, h in zip(eps, hw, strict=True):
        e.peers = [eps[j] for j in h.peers]
        if mismatch is not None and mismatch.on:
            e.mismatch = mismatch
            e.load_factor = mismatch.load(e.node, e.id)
    return eps


class SimEndpoint:
    def __init__(
        self, node: NodeSpec, index: int, gpus: list[hardware.GpuKind], catalog: Catalog
    ) -> None:
        spec = node.endpoints[index]
        self.node = node.name
        self.id = spec.id
        self.key = (node.name, spec.id)
        self.catalog = catalog
        self.gpus = gpus
        self.gpu_count = max(1, len(spec.gpus))
        self.gpu_names = tuple(g.name for g in self.gpus)
        self.num_parallel = spec.num_parallel
        self.max_queue = spec.max_queue
        self.vram_total = sum(g.memory_bytes for g in self.gpus)
        self.load_bytes_per_second = node.model_load_gbps * hardware.GB
        self.models = {m: self.kind(m).size_bytes for m in spec.models}
        # Endpoints on the same GPUs (set by ``build_endpoints``).
        self.peers: list[SimEndpoint] = []
        self._speed: dict[str, tuple[float, float]] = {}
        # The truth over the catalog (``coordinator.sim.mismatch``; None and 1.0: off).
        self.mismatch: Mismatch | None = None
        self.load_factor = 1.0
        self.runners: dict[str, Runner] = {}
        self.lines: dict[str, deque[Request]] = {}
        self.assigned = 0  # requests on this endpoint (waiting or in a slot)
        self.per_model: dict[str, int] = {}
        self.now = 0.0
        self.busy_seconds = 0.0
        # Slot-seconds in use (at most num_parallel at a time), for the utilisation.
        self.slot_seconds = 0.0
        self.loads = 0
        self.evictions = 0
        # Loads started ahead of demand by ``warm`` (not counted in ``loads``).
        self.warm_loads = 0
        # (time, model, "loaded" | "evicted"), for whoever records history; None: off.
        self.load_log: list[tuple[float, str, str]] | None = None

    def kind(self, model: str) -> hardware.ModelKind:
        kind = self.catalog.model(model)
        if kind is None:  # the workload and the cluster were checked against the catalog
            raise KeyError(f"model {model!r} is not in the catalog")
        return kind

    def vram_used(self) -> int:
        """Bytes resident on this endpoint's GPUs: its runners' and its GPU sharers'."""
        used = sum(r.kind.size_bytes for r in self.runners.values())
        for p in self.peers:
            used += sum(r.kind.size_bytes for r in p.runners.values())
        return used

    def speed(self, model: str) -> tuple[float, float]:
        """(decode, prompt) single-stream tokens/s."""
        s = self._speed.get(model)
        if s is None:
            kind = self.kind(model)
            dec = hardware.decode_tokens_per_second(self.gpus, kind)
            if self.mismatch is not None:
                dec *= self.mismatch.speed(self.node, self.id, model)
            s = (dec, dec * hardware.PROMPT_SPEEDUP)
            self._speed[model] = s
        return s

    # ----- time ------------------------------------------------------------------------

    def _rates(self) -> tuple[dict[str, float], bool]:
        batch: dict[str, int] = {}
        active = False
        for name, r in self.runners.items():
            if r.slots or not r.ready:
                active = True
            n = sum(1 for q in r.slots if q.decoding)
            if n:
                batch[name] = n
        d = len(batch)
        if batch and self.peers:
            d += sum(p._models_decoding() for p in self.peers)
        return {m: 1.0 / ((1.0 + BATCH_SLOWDOWN * (n - 1)) * d) for m, n in batch.items()}, active

    def _models_decoding(self) -> int:
        return sum(1 for r in self.runners.values() if any(q.decoding for q in r.slots))

    def advance(self, now: float) -> None:
        """Move this endpoint and its GPU sharers to ``now`` (at their current rates: call
        before changing any of them)."""
        self._advance(now)
        for p in self.peers:
            p._advance(now)

    def _advance(self, now: float) -> None:
        dt = now - self.now
        if dt <= 0:
            return
        rates, active = self._rates()
        if active:
            self.busy_seconds += dt
            used = sum(len(r.slots) for r in self.runners.values())
            self.slot_seconds += dt * min(used, self.num_parallel)
        for name, rate in rates.items():
            for q in self.runners[name].slots:
                if q.decoding:
                    q.decode_left -= dt * rate
        self.now = now

    def next_event(self) -> float:
        rates, _ = self._rates()
        t = float("inf")
        for name, r in self.runners.items():
            if not r.ready:
                t = min(t, r.ready_at)
                continue
            rate = rates.get(name, 0.0)
            for q in r.slots:
                if q.decoding:
                    t = min(t, self.now + max(0.0, q.decode_left) / rate)
                else:
                    t = min(t, q.prompt_end)
        return t

    # ----- requests --------------------------------------------------------------------

    def submit(self, req: Request) -> None:
        self.lines.setdefault(req.model, deque()).append(req)
        self.assigned += 1
        self.per_model[req.model] = self.per_model.get(req.model, 0) + 1

    def remove(self, task_id: str) -> Request | None:
        """Withdraw a request (cancelled or its node lost); frees its slot."""
        for line in self.lines.values():
            for q in line:
                if q.task_id == task_id:
                    line.remove(q)
                    self._forget(q)
                    return q
        for r in self.runners.values():
            for q in r.slots:
                if q.task_id == task_id:
                    r.slots.remove(q)
                    self._forget(q)
                    return q
        return None

    def _forget(self, q: Request) -> None:
        self.assigned -= 1
        self.per_model[q.model] -= 1
        if not self.lines.get(q.model):
            self.lines.pop(q.model, None)

    def step(self) -> list[Request]:
        """Process everything due at ``self.now``; return requests that finished."""
        now = self.now
        done: list[Request] = []
        for r in self.runners.values():
            if not r.ready and r.ready_at <= now + _EPS:
                r.ready = True
                for q in r.slots:  # the request that started the load
                    q.prompt_end = now + q.prompt_seconds
            if not r.ready:
                continue
            for q in list(r.slots):
                if not q.decoding and q.prompt_end <= now + _EPS:
                    q.decoding = True
                    q.decode_started = now
                if q.decoding and q.decode_left <= _EPS * 10:
                    r.slots.remove(q)
                    r.last_used = now
                    q.finished_at = now
                    self._forget(q)
                    done.append(q)
        self._pump()
        return done

    def _pump(self) -> None:
        now = self.now
        for model in list(self.lines):
            line = self.lines[model]
            while line:
                q = line[0]
                r = self.runners.get(model)
                if r is None:
                    if not self._make_room(self.models.get(model, self.kind(model).size_bytes)):
                        break
                    kind = self.kind(model)
                    load = hardware.load_seconds(kind, self.load_bytes_per_second)
                    load *= self.load_factor
                    r = Runner(kind, now + load, last_used=now)
                    self.runners[model] = r
                    self.loads += 1
                    if self.load_log is not None:
                        self.load_log.append((now, model, "loaded"))
                    self._start(q, r, load)
                    line.popleft()
                    continue
                if r.ready and len(r.slots) < self.num_parallel:
                    self._start(q, r, 0.0)
                    line.popleft()
                    continue
                break
            if not line:
                self.lines.pop(model, None)

    def _start(self, q: Request, r: Runner, load: float) -> None:
        now = self.now
        dec, pro = self.speed(q.model)
        q.slot_at = now
        q.load_seconds = load
        q.prompt_seconds = q.prompt_tokens / pro
        q.decode_single = q.output_tokens / dec
        q.decode_left = q.decode_single
        q.prompt_end = now + load + q.prompt_seconds
        r.slots.append(q)
        r.last_used = now

    def _make_room(self, need: int) -> bool:
        free = self.vram_total - self.vram_used()
        if free >= need:
            return True
        idle = sorted(
            (r for n, r in self.runners.items() if r.ready and not r.slots and n not in self.lines),
            key=lambda r: r.last_used,
        )
        if free + sum(r.kind.size_bytes for r in idle) < need:
            return False
        for r in idle:
            if free >= need:
                break
            self._evict(r.kind.name)
            free += r.kind.size_bytes
        return True

    def _evict(self, model: str) -> None:
        del self.runners[model]
        self.evictions += 1
        if self.load_log is not None:
            self.load_log.append((self.now, model, "evicted"))

    def warm(self, model: str, evict: tuple[str, ...] = ()) -> bool:
        """Load ``model`` ahead of demand (Ollama's load with keep_alive), first evicting
        the named models if they are idle. False (nothing loaded) if the model is unknown
        here, already resident, or still does not fit; a busy model is never evicted."""
        if model in self.runners or model not in self.models:
            return False
        for name in evict:
            r = self.runners.get(name)
            if r is not None and r.ready and not r.slots and name not in self.lines:
                self._evict(name)
        free = self.vram_total - self.vram_used()
        if free < self.models[model]:
            return False
        kind = self.kind(model)
        self.runners[model] = Runner(
            kind,
            self.now + hardware.load_seconds(kind, self.load_bytes_per_second) * self.load_factor,
            last_used=self.now,
        )
        self.warm_loads += 1
        if self.load_log is not None:
            self.load_log.append((self.now, model, "loaded"))
        return True

    @property
    def busy(self) -> bool:
        return any(r.slots or not r.ready for r in self.runners.values())
