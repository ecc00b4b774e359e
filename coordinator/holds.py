"""Holding a task for its model's home: with the optimizer's placement, a task whose
best endpoint would load its model cold, while an endpoint the placement keeps the model
on is merely full, waits a bounded time for that home instead (``Decision.hold``).
"""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.routing.router import HOLD_WAIT_FOR_HOME, Hold
from coordinator.routing.scorers import protected_seconds
from coordinator.routing.snapshot import ClusterSnapshot, EndpointKey, EndpointView, load_seconds
from coordinator.task_states import TaskRecord


def hold_for_home(
    rec: TaskRecord,
    ep: EndpointView,
    snap: ClusterSnapshot,
    limits: Mapping[EndpointKey, int],
    now: float,
    home_wait_factor: float,
) -> Hold | None:
    """Whether to keep ``rec`` queued instead of sending it to ``ep`` now.

    Only with the optimizer's placement: when running on ``ep`` means a cold load of
    the model there, and the model has a home (an endpoint where the placement
    protects it) that is healthy and merely at its in-flight limit, the task waits
    for the home, but only while

        waited < home_wait_factor * (load(model) + reload(protected models evicted))

    i.e. in proportion to the load (and the reload of protected models it pushes out)
    that it avoids; then it takes the cold load. A task whose deadline the wait could
    make it miss is never held. Without a placement this is never called, so
    scheduling is exactly as without the optimizer.
    """
    task = rec.spec
    model = task.model
    if model in ep.loaded_by_name:
        return None
    keep = snap.protected.get(ep.key)
    need = ep.models.get(model, 0)
    evicted = protected_seconds(ep, need, keep) if keep else 0.0
    swap = load_seconds(model, need, ep.load_bytes_per_second) + evicted
    bound = home_wait_factor * swap
    waited = now - rec.submitted_at
    if waited >= bound:
        return None
    if task.deadline is not None and now + (bound - waited) + swap >= task.deadline:
        return None
    for key in sorted(snap.protected):
        if model not in snap.protected[key]:
            continue
        node = snap.node(key[0])
        if node is None or node.state != "healthy" or node.draining:
            continue
        home = snap.endpoint(key)
        if (
            home is not None
            and home.healthy
            and model in home.loaded_by_name
            and home.in_flight >= limits.get(key, 0)
        ):
            return Hold(HOLD_WAIT_FOR_HOME, key[0], key[1], waited, bound)
    return None
