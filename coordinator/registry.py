"""The coordinator's registry of node agents: who is connected, how alive, what they have.

It is the single owner of node state and runs on the coordinator's event loop.
Sessions attach on Register and detach when their stream ends; heartbeats
refresh telemetry and liveness. Liveness is a function of how long ago the node
was last heard from — a heartbeat, or an event of a task it is running (on a slow,
congested link heartbeats queue behind the task's own traffic, which proves the
agent alive just as well): older than ``suspect_after`` → SUSPECT (no new work),
older than ``lost_after`` → LOST (running work is re-dispatched). A node is keyed by its
name, so an agent that restarts or reconnects replaces its own earlier
session instead of appearing twice.

A HEALTHY node whose every Ollama endpoint failed its agent's last probe is
*reported* DEGRADED (``NodeRecord.degraded``): it heartbeats, so its liveness
stays HEALTHY and nothing is re-dispatched, but the router already filters its
endpoints out, and status, /health, metrics and alerts must not call it healthy.
It is derived from the last heartbeat, so it clears at the first heartbeat that
reports an endpoint healthy again.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hive.config import ENDPOINT_ID, NODE_NAME
from hive.v1 import agent_session_pb2, cluster_pb2, common_pb2

log = logging.getLogger("hive.coordinator.registry")

Clock = Callable[[], float]


class NodeState(enum.Enum):
    """A node's liveness, from its heartbeats (what ``NodeRecord.state`` holds)."""

    HEALTHY = "healthy"
    SUSPECT = "suspect"
    LOST = "lost"

    def to_proto(self) -> common_pb2.NodeState:
        return _STATE_PROTO[self]


_STATE_PROTO = {
    NodeState.HEALTHY: common_pb2.NODE_STATE_HEALTHY,
    NodeState.SUSPECT: common_pb2.NODE_STATE_SUSPECT,
    NodeState.LOST: common_pb2.NODE_STATE_LOST,
}
# The state reported for a HEALTHY node with no healthy endpoint; never a liveness state.
DEGRADED = "degraded"
# Every state a node is reported in (status, metrics), liveness states first.
REPORTED_STATES = (*(s.value for s in NodeState), DEGRADED)


class InvalidRegistration(ValueError):
    """The agent's identity is malformed (maps to INVALID_ARGUMENT)."""


class ConflictingRegistration(Exception):
    """Another live agent already holds this node name (maps to ALREADY_EXISTS)."""


class UnknownNode(KeyError):
    """No node by that name (maps to NOT_FOUND)."""


@dataclass(eq=False)
class NodeRecord:
    name: str
    info: common_pb2.NodeInfo
    session_id: str
    peer: str
    state: NodeState
    connected_at_wall: float
    last_heartbeat: float
    last_heartbeat_wall: float
    # When anything last came from the node (its heartbeat or a task event): liveness.
    last_heard: float
    telemetry: common_pb2.NodeTelemetry = field(default_factory=common_pb2.NodeTelemetry)
    draining: bool = False
    sessions: int = 1
    heartbeats: int = 0
    # Control messages waiting to be written to the agent's stream; None ends the stream.
    outbound: asyncio.Queue[agent_session_pb2.ConnectResponse | None] = field(
        default_factory=asyncio.Queue
    )
    # Tasks the agent reports running (from its heartbeats).
    agent_running: tuple[str, ...] = ()
    # The seq of the last heartbeat applied (the agent's count, kept across its sessions).
    heartbeat_seq: int = 0
    # Registered by an agent process on its first session (Register.reconnects 0): one
    # that just started, whose heartbeats count from 1 again.
    first_session: bool = False

    @property
    def reconnects(self) -> int:
        return self.sessions - 1

    def unhealthy_endpoints(self) -> list[common_pb2.EndpointTelemetry]:
        """The endpoints whose last heartbeat sample says unhealthy, in the node's order
        (an endpoint with no sample yet is not counted: nothing is known against it)."""
        samples = {e.id: e for e in self.telemetry.endpoints}
        return [
            samples[e.id]
            for e in self.info.endpoints
            if e.id in samples and not samples[e.id].healthy
        ]

    @property
    def degraded(self) -> bool:
        """Heartbeating (HEALTHY) but with endpoints, every one of them unhealthy."""
        return (
            self.state is NodeState.HEALTHY
            and len(self.info.endpoints) > 0
            and len(self.unhealthy_endpoints()) == len(self.info.endpoints)
        )

    @property
    def reported_state(self) -> str:
        """The liveness state's name, or ``DEGRADED`` for a HEALTHY node that cannot serve."""
        return DEGRADED if self.degraded else self.state.value

    def state_proto(self) -> common_pb2.NodeState:
        return common_pb2.NODE_STATE_DEGRADED if self.degraded else self.state.to_proto()

    def to_status(self, running_tasks: int = 0) -> cluster_pb2.NodeStatus:
        status = cluster_pb2.NodeStatus(
            info=self.info,
            state=self.state_proto(),
            draining=self.draining,
            telemetry=self.telemetry,
            session_id=self.session_id,
            reconnects=self.reconnects,
            running_tasks=running_tasks,
        )
        status.last_heartbeat.FromNanoseconds(int(self.last_heartbeat_wall * 1e9))
        status.connected_at.FromNanoseconds(int(self.connected_at_wall * 1e9))
        return status


def validate_node_info(info: common_pb2.NodeInfo) -> None:
    """Reject an identity the rest of the system could not route to or display."""
    if not NODE_NAME.match(info.name):
        raise InvalidRegistration(
            f"node name {info.name!r} is invalid: use 1-63 letters, digits, '.', '_' or '-'"
        )
    if not info.agent_address or ":" not in info.agent_address:
        raise InvalidRegistration(
            f"node {info.name}: agent_address {info.agent_address!r} must be host:port"
        )
    gpu_indices = [g.index for g in info.gpus]
    if len(set(gpu_indices)) != len(gpu_indices):
        raise InvalidRegistration(f"node {info.name}: GPU indices repeat: {gpu_indices}")
    ids = [e.id for e in info.endpoints]
    if len(set(ids)) != len(ids):
        raise InvalidRegistration(f"node {info.name}: endpoint ids repeat: {ids}")
    for endpoint in info.endpoints:
        if not ENDPOINT_ID.match(endpoint.id):
            raise InvalidRegistration(f"node {info.name}: endpoint id {endpoint.id!r} is invalid")
        missing = set(endpoint.gpu_indices) - set(gpu_indices)
        if missing:
            raise InvalidRegistration(
                f"node {info.name}: endpoint {endpoint.id} uses unknown GPUs {sorted(missing)}"
            )
        if endpoint.num_parallel < 1:
            raise InvalidRegistration(
                f"node {info.name}: endpoint {endpoint.id} num_parallel must be >= 1"
            )


class Registry:
    def __init__(
        self,
        clock: Clock,
        wall_clock: Clock,
        *,
        suspect_after: float,
        lost_after: float,
    ) -> None:
        self._clock = clock
        self._wall = wall_clock
        self.suspect_after = suspect_after
        self.lost_after = lost_after
        self._nodes: dict[str, NodeRecord] = {}
        # Tasks the coordinator has running per node, kept by name across sessions.
        self.running: collections.Counter[str] = collections.Counter()
        # Bumped on every change a routing snapshot reads (sessions, telemetry, state,
        # drain), so readers can cache what they derive from the registry.
        self.version = 0
        # Bumped only when some node's endpoints or models change (a registration, a new
        # endpoint list in a heartbeat): what is derived from the models alone (their
        # capabilities) is rebuilt then, not at every heartbeat's telemetry.
        self.models_version = 0
        # Set once the first node registers: a coordinator that just started (or was just
        # elected) knows no node yet, and waits a little for them (Dispatcher.run).
        self.first_join = asyncio.Event()
        self._watchers: set[asyncio.Queue[cluster_pb2.WatchClusterResponse]] = set()
        # Called with (node name, old state, new state) on every liveness change.
        self.on_state_change: list[Callable[[NodeRecord, NodeState], None]] = []
        # Control requests someone awaits the agent's ControlAck of, by request id.
        self._awaited: dict[str, asyncio.Future[agent_session_pb2.ControlAck]] = {}
        # Woken on every registration and applied heartbeat (until).
        self._changed: set[asyncio.Future[None]] = set()

    # --- queries -----------------------------------------------------------------

    def __iter__(self) -> Iterator[NodeRecord]:
        return iter(sorted(self._nodes.values(), key=lambda n: n.name))

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, name: str) -> NodeRecord:
        try:
            return self._nodes[name]
        except KeyError:
            raise UnknownNode(name) from None

    def find(self, name: str) -> NodeRecord | None:
        return self._nodes.get(name)

    def status(self, record: NodeRecord) -> cluster_pb2.NodeStatus:
        return record.to_status(self.running[record.name])

    # --- sessions ----------------------------------------------------------------

    def attach(self, register: agent_session_pb2.Register, peer: str) -> NodeRecord:
        """Accept a Register: a new node, or the same node back (its old session replaced)."""
        info = register.node
        validate_node_info(info)
        now, wall = self._clock(), self._wall()
        existing = self._nodes.get(info.name)
        if existing is not None and existing.state is NodeState.HEALTHY:
            if existing.info.agent_address != info.agent_address:
                raise ConflictingRegistration(
                    f"node {info.name} is already connected from agent "
                    f"{existing.info.agent_address} (session {existing.session_id}); "
                    f"stop that agent or give this one another name"
                )
        record = NodeRecord(
            name=info.name,
            info=info,
            session_id=uuid.uuid4().hex[:12],
            peer=peer,
            state=NodeState.HEALTHY,
            connected_at_wall=wall,
            last_heartbeat=now,
            last_heartbeat_wall=wall,
            last_heard=now,
            agent_running=tuple(register.running_task_ids),
            first_session=register.reconnects == 0,
        )
        if existing is not None:
            record.sessions = existing.sessions + 1
            record.draining = existing.draining
            existing.outbound.put_nowait(None)  # end the superseded stream
            log.info(
                "node %s re-registered (session %s replaces %s, was %s)",
                info.name,
                record.session_id,
                existing.session_id,
                existing.state.value,
            )
        else:
            log.info(
                "node %s registered (session %s, %d GPUs, %d endpoints, agent %s)",
                info.name,
                record.session_id,
                len(info.gpus),
                len(info.endpoints),
                info.agent_address,
            )
        self._nodes[info.name] = record
        self.version += 1
        self.models_version += 1
        self.first_join.set()
        self._publish(cluster_pb2.WatchClusterResponse(node_joined=self.status(record)))
        if existing is not None and existing.state is not NodeState.HEALTHY:
            for callback in self.on_state_change:
                callback(record, existing.state)
        self._wake()
        return record

    def heartbeat(self, record: NodeRecord, beat: agent_session_pb2.Heartbeat) -> None:
        if self._nodes.get(record.name) is not record:
            return  # a superseded session; its stream is ending
        was_degraded = record.degraded
        record.last_heartbeat = record.last_heard = self._clock()
        record.last_heartbeat_wall = self._wall()
        record.heartbeats += 1
        record.telemetry = beat.telemetry
        self.version += 1
        record.agent_running = tuple(beat.running_task_ids)
        record.heartbeat_seq = beat.seq
        if beat.endpoints:
            self._update_endpoints(record, beat.endpoints)
        if record.state is not NodeState.HEALTHY:
            self._transition(record, NodeState.HEALTHY)
        if record.degraded != was_degraded:
            self._degraded_changed(record)
        if self._watchers:
            self._publish(cluster_pb2.WatchClusterResponse(telemetry=self.status(record)))
        self._wake()

    def announced(self, name: str, seq: int, since: NodeRecord | None) -> bool:
        """Whether what node ``name``'s agent announced in its heartbeat ``seq`` is
        applied: that heartbeat or a later one was (the session stream carries them in
        order), or an agent process started since ``since`` (the node's record when the
        caller was told ``seq``) has registered, its models read afresh."""
        record = self._nodes.get(name)
        if record is None:
            return False
        if record.heartbeat_seq >= seq:
            return True
        return record is not since and record.first_session

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate`` (of the registry) holds, checked on every registration
        and heartbeat; False if it still does not after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            changed: asyncio.Future[None] = loop.create_future()
            self._changed.add(changed)
            try:
                await asyncio.wait_for(changed, left)
            except TimeoutError:
                return predicate()
            finally:
                self._changed.discard(changed)
        return True

    def _wake(self) -> None:
        for changed in self._changed:
            if not changed.done():
                changed.set_result(None)

    def _update_endpoints(
        self, record: NodeRecord, endpoints: Sequence[common_pb2.OllamaEndpoint]
    ) -> None:
        """The node's endpoints as its agent now sees them (models pulled or removed since
        it registered); a list that would not pass registration is ignored, logged."""
        info = common_pb2.NodeInfo()
        info.CopyFrom(record.info)
        del info.endpoints[:]
        info.endpoints.extend(endpoints)
        try:
            validate_node_info(info)
        except InvalidRegistration as exc:
            log.warning("node %s: ignoring its new endpoint list: %s", record.name, exc)
            return
        before = {(e.id, m.name) for e in record.info.endpoints for m in e.models}
        after = {(e.id, m.name) for e in info.endpoints for m in e.models}
        record.info = info
        self.models_version += 1
        log.info(
            "node %s: models added %s, removed %s",
            record.name,
            sorted(f"{e}/{m}" for e, m in after - before) or "-",
            sorted(f"{e}/{m}" for e, m in before - after) or "-",
        )
        self._publish(cluster_pb2.WatchClusterResponse(node_state_changed=self.status(record)))

    def _degraded_changed(self, record: NodeRecord) -> None:
        """Log and publish a node turning DEGRADED or back (its liveness is unchanged, so
        ``on_state_change`` is not called: nothing is to be re-dispatched)."""
        if record.degraded:
            log.warning(
                "node %s degraded: every endpoint is unhealthy (%s); it gets no work",
                record.name,
                "; ".join(
                    f"{e.id}: {e.error or 'unhealthy'}" for e in record.unhealthy_endpoints()
                ),
            )
        else:
            log.info("node %s no longer degraded: an endpoint is healthy again", record.name)
        self._publish(cluster_pb2.WatchClusterResponse(node_state_changed=self.status(record)))

    def detach(self, record: NodeRecord, reason: str) -> None:
        """The session's stream ended: the node is lost at once (unless superseded)."""
        if self._nodes.get(record.name) is not record:
            return
        if record.state is not NodeState.LOST:
            log.warning("node %s session %s ended: %s", record.name, record.session_id, reason)
            self._transition(record, NodeState.LOST)

    def heard(self, record: NodeRecord) -> None:
        """Something of the node's arrived (a task event): it is alive, and a SUSPECT
        node whose heartbeats are only late is HEALTHY again."""
        record.last_heard = self._clock()
        if record.state is NodeState.SUSPECT and self._nodes.get(record.name) is record:
            self._transition(record, NodeState.HEALTHY)

    def check_liveness(self) -> None:
        """Move nodes to SUSPECT or LOST by how long nothing came from them; called
        periodically."""
        now = self._clock()
        for record in list(self._nodes.values()):
            age = now - record.last_heard
            if record.state is NodeState.LOST:
                continue
            if age > self.lost_after:
                log.warning("node %s lost: nothing heard from it for %.1fs", record.name, age)
                self._transition(record, NodeState.LOST)
                record.outbound.put_nowait(None)
            elif age > self.suspect_after and record.state is NodeState.HEALTHY:
                log.warning("node %s suspect: nothing heard from it for %.1fs", record.name, age)
                self._transition(record, NodeState.SUSPECT)

    def disconnect(self, name: str, reason: str) -> bool:
        """End the node's session now (e.g. it was revoked); True if one was open."""
        record = self.get(name)
        if record.state is NodeState.LOST:
            return False
        log.warning("node %s disconnected: %s", name, reason)
        self._transition(record, NodeState.LOST)
        record.outbound.put_nowait(None)
        return True

    def set_draining(self, name: str, draining: bool, reason: str) -> NodeRecord:
        record = self.get(name)
        record.draining = draining
        self.version += 1
        record.outbound.put_nowait(
            agent_session_pb2.ConnectResponse(
                drain=agent_session_pb2.Drain(draining=draining, reason=reason)
            )
        )
        log.info("node %s %s: %s", name, "draining" if draining else "undrained", reason or "-")
        self._publish(cluster_pb2.WatchClusterResponse(node_state_changed=self.status(record)))
        return record

    async def unload_model(
        self, name: str, endpoint_id: str, model: str, timeout: float
    ) -> agent_session_pb2.ControlAck:
        """Ask a node to unload ``model`` from one of its endpoints (a load with keep_alive
        0, as Ollama takes it) and wait for its answer; a node that does not answer within
        ``timeout`` seconds gets a failed ack naming the wait."""
        request_id = self.warm_model(name, endpoint_id, model, keep_alive="0")
        answer = self._awaited[request_id] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return agent_session_pb2.ControlAck(
                request_id=request_id, ok=False, error=f"no answer in {timeout:g} s"
            )
        finally:
            self._awaited.pop(request_id, None)

    def acknowledged(self, ack: agent_session_pb2.ControlAck) -> None:
        """An agent's answer to a control request: to whoever awaits it."""
        waiting = self._awaited.get(ack.request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(ack)

    def warm_model(self, name: str, endpoint_id: str, model: str, keep_alive: str = "") -> str:
        """Ask a node to load ``model`` on one of its endpoints (keep_alive "0": unload
        it); returns the request id its ControlAck will carry."""
        record = self.get(name)
        request_id = uuid.uuid4().hex[:12]
        record.outbound.put_nowait(
            agent_session_pb2.ConnectResponse(
                warm_model=agent_session_pb2.WarmModel(
                    request_id=request_id,
                    endpoint_id=endpoint_id,
                    model=model,
                    keep_alive=keep_alive,
                )
            )
        )
        return request_id

    def _transition(self, record: NodeRecord, state: NodeState) -> None:
        old = record.state
        record.state = state
        self.version += 1
        self._publish(cluster_pb2.WatchClusterResponse(node_state_changed=self.status(record)))
        for callback in self.on_state_change:
            callback(record, old)

    # --- watchers ----------------------------------------------------------------

    def watch(self, maxsize: int = 256) -> asyncio.Queue[cluster_pb2.WatchClusterResponse]:
        queue: asyncio.Queue[cluster_pb2.WatchClusterResponse] = asyncio.Queue(maxsize)
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[cluster_pb2.WatchClusterResponse]) -> None:
        self._watchers.discard(queue)

    def is_watching(self, queue: asyncio.Queue[cluster_pb2.WatchClusterResponse]) -> bool:
        return queue in self._watchers

    def task_changed(self, event: cluster_pb2.TaskEvent) -> None:
        """Tell the cluster's watchers (WatchCluster) that a task changed state."""
        self._publish(cluster_pb2.WatchClusterResponse(task=event))

    def workflow_changed(self, change: cluster_pb2.WorkflowChange) -> None:
        """Tell the cluster's watchers that a workflow or one of its stages moved on."""
        self._publish(cluster_pb2.WatchClusterResponse(workflow=change))

    @property
    def watched(self) -> bool:
        """Whether anyone watches the cluster (else events need not be built)."""
        return bool(self._watchers)

    def _publish(self, event: cluster_pb2.WatchClusterResponse) -> None:
        if not self._watchers:
            return
        event.at.FromNanoseconds(int(self._wall() * 1e9))
        for queue in list(self._watchers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A slow watcher is dropped rather than slowing the registry down.
                self._watchers.discard(queue)

    # --- summaries ---------------------------------------------------------------

    def summary(self) -> cluster_pb2.ClusterSummary:
        models: set[str] = set()
        summary = cluster_pb2.ClusterSummary(nodes_total=len(self._nodes))
        for record in self._nodes.values():
            if record.degraded:
                summary.nodes_degraded += 1
            elif record.state is NodeState.HEALTHY:
                summary.nodes_healthy += 1
            summary.gpus += len(record.info.gpus)
            summary.vram_total_bytes += sum(g.memory_total_bytes for g in record.info.gpus)
            summary.vram_used_bytes += sum(g.memory_used_bytes for g in record.telemetry.gpus)
            summary.endpoints += len(record.info.endpoints)
            summary.running_tasks += self.running[record.name]
            for endpoint in record.info.endpoints:
                models.update(m.name for m in endpoint.models)
        summary.models.extend(sorted(models))
        return summary
