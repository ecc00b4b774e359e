"""Bottleneck detectors: named units that read a history (and a snapshot) and say what hurts.

Each detector is a pure function ``(history, snapshot, now, settings) -> [Finding]`` with
a docstring saying what it looks for and why. A finding names its kind (a constant below),
severity, subject, the evidence in numbers, and a recommendation a person can act on;
where a safe automatic remedy exists the planner derives it from the finding's fields.
A detector flags only what its window shows: no history, no finding.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from coordinator.optimizer.config import DetectorSettings
from coordinator.optimizer.history import History, recent
from coordinator.routing.scorers import BATCH_SLOWDOWN
from coordinator.routing.snapshot import ClusterSnapshot, prior_speed

Severity = Literal["info", "warning", "critical"]

QUEUE_BACKLOG = "queue_backlog"
SLOW_NODE = "slow_node"
VRAM_THRASHING = "vram_thrashing"
THERMAL_THROTTLING = "thermal_throttling"
AGENT_FLAPPING = "agent_flapping"
NODE_DEGRADED = "node_degraded"
FINDING_KINDS = (
    QUEUE_BACKLOG,
    SLOW_NODE,
    VRAM_THRASHING,
    THERMAL_THROTTLING,
    AGENT_FLAPPING,
    NODE_DEGRADED,
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    severity: Severity
    subject: str
    evidence: str
    recommendation: str
    detected_at: float
    node: str = ""
    endpoint_id: str = ""
    model: str = ""
    task_type: str = ""


Detector = Callable[[History, ClusterSnapshot, float, DetectorSettings, float], list[Finding]]


def queue_backlog(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """A task type whose queue grows faster than it drains.

    Over the last ``queue_window_seconds``: the type's queue depth ends at least
    ``queue_min_depth`` and higher than it started, and arrivals outnumber completions by
    ``queue_growth_ratio``. Critical when the queue more than doubled. The remedy (more
    warm copies of its models) comes from the demand forecast, which sees the same arrivals.
    """
    start = now - s.queue_window_seconds
    arrivals: dict[str, int] = {}
    models: dict[str, dict[str, int]] = {}
    for a in recent(history.arrivals, start):
        arrivals[a.task_type] = arrivals.get(a.task_type, 0) + 1
        per = models.setdefault(a.task_type, {})
        per[a.model] = per.get(a.model, 0) + 1
    done: dict[str, int] = {}
    for t in recent(history.tasks, start):
        done[t.task_type] = done.get(t.task_type, 0) + 1
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for q in recent(history.queues, start):
        first.setdefault(q.task_type, q.depth)
        last[q.task_type] = q.depth
    out = []
    for tt in sorted(last):
        depth, was = last[tt], first[tt]
        came, went = arrivals.get(tt, 0), done.get(tt, 0)
        if depth < s.queue_min_depth or depth <= was or came < s.queue_growth_ratio * max(1, went):
            continue
        top = max(models.get(tt, {"?": 0}).items(), key=lambda kv: (kv[1], kv[0]))[0]
        span = now - start
        out.append(
            Finding(
                QUEUE_BACKLOG,
                "critical" if depth > 2 * max(1, was) else "warning",
                tt,
                f"{tt}: queue {was} -> {depth} in {span:.0f}s; {came} arrived, {went} finished "
                f"({came / span:.2f}/s in, {went / span:.2f}/s out); mostly {top}",
                f"add capacity for {top}: warm it on more endpoints (the optimizer does this "
                f"when VRAM allows) or lower {tt}'s arrival rate",
                now,
                model=top,
                task_type=tt,
            )
        )
    return out


def slow_node(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """An endpoint much slower than its peers on the same model.

    Speeds differ by hardware, so each endpoint's measured single-stream decode speed
    (batch slowdown divided out, as the speed tracker does) is taken as a fraction of what
    its GPUs should do (``prior_speed``): its efficiency. An endpoint whose median
    efficiency on a model is below ``slow_ratio`` times the median of the other endpoints
    serving that model (each with ``slow_min_samples`` tasks) is flagged.
    """
    eff: dict[str, dict[tuple[str, str], list[float]]] = {}
    for t in recent(history.tasks, now - window):
        if not t.ok or t.eval_count <= 0 or t.eval_seconds <= 0:
            continue
        ep = snapshot.endpoint((t.node, t.endpoint_id))
        if ep is None:
            continue
        batch = min(t.concurrency, ep.num_parallel)
        tps = t.eval_count / t.eval_seconds * (1.0 + BATCH_SLOWDOWN * (batch - 1))
        prior = prior_speed(ep.gpu_names, t.model, ep.models.get(t.model, 0)).decode_tps
        eff.setdefault(t.model, {}).setdefault((t.node, t.endpoint_id), []).append(tps / prior)
    out = []
    for model in sorted(eff):
        per = {
            k: statistics.median(v) for k, v in eff[model].items() if len(v) >= s.slow_min_samples
        }
        if len(per) < 2:
            continue
        for key in sorted(per):
            peers = [v for k, v in per.items() if k != key]
            peer = statistics.median(peers)
            if per[key] >= s.slow_ratio * peer:
                continue
            node, ep_id = key
            out.append(
                Finding(
                    SLOW_NODE,
                    "warning",
                    f"{node}/{ep_id}",
                    f"{node}/{ep_id} runs {model} at {per[key]:.0%} of its GPUs' expected speed; "
                    f"its {len(peers)} peer(s) run it at {peer:.0%} (median)",
                    f"check {node} for throttling, a competing process or a degraded GPU; "
                    f"the router already weighs measured speed, so it gets less {model} work",
                    now,
                    node=node,
                    endpoint_id=ep_id,
                    model=model,
                )
            )
    return out


def vram_thrashing(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """The same models evicted and reloaded on one endpoint.

    Counts, per endpoint, loads of a model that had been evicted from it earlier in the
    window. ``thrash_reloads`` or more is thrashing: the endpoint's VRAM is too small for
    the models routed to it, and every reload costs seconds of GPU time.
    """
    evicted: dict[tuple[str, str], set[str]] = {}
    reloads: dict[tuple[str, str], dict[str, int]] = {}
    for e in recent(history.loads, now - window):
        key = (e.node, e.endpoint_id)
        if e.kind == "evicted":
            evicted.setdefault(key, set()).add(e.model)
        elif e.model in evicted.get(key, set()):
            per = reloads.setdefault(key, {})
            per[e.model] = per.get(e.model, 0) + 1
    out = []
    for key in sorted(reloads):
        total = sum(reloads[key].values())
        if total < s.thrash_reloads:
            continue
        node, ep_id = key
        models = ", ".join(f"{m} x{n}" for m, n in sorted(reloads[key].items()))
        out.append(
            Finding(
                VRAM_THRASHING,
                "critical" if total >= 3 * s.thrash_reloads else "warning",
                f"{node}/{ep_id}",
                f"{node}/{ep_id} reloaded evicted models {total} times in {window:.0f}s ({models})",
                f"serve fewer models on {node}/{ep_id} (keep one resident: pin it in "
                f"optimizer.pins.models) or move one of them to an endpoint with more VRAM",
                now,
                node=node,
                endpoint_id=ep_id,
                model=max(reloads[key].items(), key=lambda kv: (kv[1], kv[0]))[0],
            )
        )
    return out


def thermal_throttling(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """A GPU that throttles: at least ``thermal_fraction`` of its samples in the window report
    throttling or a temperature at or above ``thermal_celsius`` (at least 3 samples)."""
    hot: dict[tuple[str, int], list[int]] = {}
    peak: dict[tuple[str, int], float] = {}
    for g in recent(history.gpus, now - window):
        key = (g.node, g.gpu)
        counts = hot.setdefault(key, [0, 0])
        counts[1] += 1
        if g.throttled or g.temperature_celsius >= s.thermal_celsius:
            counts[0] += 1
        peak[key] = max(peak.get(key, 0.0), g.temperature_celsius)
    out = []
    for (node, gpu), (n_hot, n) in sorted(hot.items()):
        if n < 3 or n_hot < s.thermal_fraction * n:
            continue
        where = snapshot.node(node)
        endpoints = [ep.id for ep in where.endpoints] if where is not None else []
        out.append(
            Finding(
                THERMAL_THROTTLING,
                "critical" if n_hot == n else "warning",
                f"{node} GPU {gpu}",
                f"{node} GPU {gpu} throttled or >= {s.thermal_celsius:.0f}C in {n_hot} of {n} "
                f"samples (peak {peak[(node, gpu)]:.0f}C)",
                f"improve cooling on {node}; the optimizer lowers the in-flight limit of "
                f"{node}'s endpoints to their parallel slots while it lasts",
                now,
                node=node,
                endpoint_id=endpoints[0] if len(endpoints) == 1 else "",
            )
        )
    return out


def agent_flapping(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """An agent whose session is lost ``flap_losses`` or more times in the window: each loss
    re-dispatches its running work, so a flapping node costs more than a dead one."""
    losses: dict[str, int] = {}
    for e in recent(history.sessions, now - window):
        if e.kind == "lost":
            losses[e.node] = losses.get(e.node, 0) + 1
    out = []
    for node, n in sorted(losses.items()):
        if n < s.flap_losses:
            continue
        out.append(
            Finding(
                AGENT_FLAPPING,
                "critical" if n >= 2 * s.flap_losses else "warning",
                node,
                f"{node} lost its session {n} times in {window:.0f}s",
                f"check {node}'s network and agent logs (journalctl -u hive-agent); "
                f"drain it (hive drain {node}) until it is stable",
                now,
                node=node,
            )
        )
    return out


def node_degraded(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """A heartbeating node whose every Ollama endpoint failed its agent's last probe: the
    router filters all of them out, so the node silently takes no work (an Ollama that
    died or hangs, or answers /api/ps with errors). Read from the snapshot, not the
    history: it is true now, and clears with the first healthy probe. Critical when no
    healthy node has a healthy endpoint left."""
    degraded = [
        n
        for n in snapshot.nodes
        if n.state == "healthy" and n.endpoints and not any(ep.healthy for ep in n.endpoints)
    ]
    serving = any(
        n.state == "healthy" and any(ep.healthy for ep in n.endpoints) for n in snapshot.nodes
    )
    return [
        Finding(
            NODE_DEGRADED,
            "warning" if serving else "critical",
            n.name,
            f"every endpoint of {n.name} is unhealthy "
            f"({', '.join(ep.id for ep in n.endpoints)}); it gets no work",
            f"check the Ollama server(s) on {n.name} (`hive status` shows each endpoint's "
            f"error; systemctl status ollama); the node serves again at the first healthy "
            f"probe",
            now,
            node=n.name,
            endpoint_id=n.endpoints[0].id if len(n.endpoints) == 1 else "",
        )
        for n in degraded
    ]


DETECTORS: dict[str, Detector] = {
    QUEUE_BACKLOG: queue_backlog,
    SLOW_NODE: slow_node,
    VRAM_THRASHING: vram_thrashing,
    THERMAL_THROTTLING: thermal_throttling,
    AGENT_FLAPPING: agent_flapping,
    NODE_DEGRADED: node_degraded,
}


def detect(
    history: History, snapshot: ClusterSnapshot, now: float, s: DetectorSettings, window: float
) -> list[Finding]:
    """Every detector's findings, most severe first."""
    out = [f for d in DETECTORS.values() for f in d(history, snapshot, now, s, window)]
    rank = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: (rank[f.severity], f.kind, f.subject))
