"""Several coordinators on one PostgreSQL store: one leads, the others answer as standbys
naming it, and a standby takes over — the state, the agents and the clients with it —
when the leader goes (issue 18). Real PostgreSQL (tests/conftest.py ``postgres_db``),
real coordinators, agents and emulators in-process."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from coordinator.server import Coordinator, CoordinatorSupervisor
from coordinator.workflows.model import SUCCEEDED, WF_SUCCEEDED
from hive.config import AgentConfig, ClusterConfig, EndpointSpec, GpuSpec, NodeSpec
from hive.coordinators import LEADER_TRAILER
from hive.hardware import GPU_CATALOG
from hive.v1 import cluster_pb2, cluster_pb2_grpc, workflow_pb2, workflow_pb2_grpc
from node_agent.agent import Agent
from ollama_emulator.config import EmulatorConfig
from ollama_emulator.server import OllamaEmulator
from tests.conftest import FAST, eventually, fast_cluster
from tests.test_workflow_crash import submit_quick

# Short enough for quick tests, long enough that a renewal on a loaded 2-core machine
# does not miss it.
LEASE, RENEW = 2.0, 0.4
GPU = GPU_CATALOG["NVIDIA GeForce RTX 3070"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ha_config(store: str, port: int) -> ClusterConfig:
    settings = dataclasses.replace(
        FAST,
        listen=f"127.0.0.1:{port}",
        advertise=f"127.0.0.1:{port}",
        store=store,
        lease_seconds=LEASE,
        renew_seconds=RENEW,
        metrics_listen="off",
    )
    return dataclasses.replace(fast_cluster(), coordinator=settings)


class Trio:
    """Two coordinators on one store, one emulated Ollama and one agent that knows both."""

    def __init__(self, store: str, time_scale: float = 0.05) -> None:
        self.ports = [free_port(), free_port()]
        self.supervisors = [CoordinatorSupervisor(ha_config(store, p), None) for p in self.ports]
        self.emulator = OllamaEmulator(
            EmulatorConfig(gpus=[GPU], models=["qwen2.5-coder:7b"], time_scale=time_scale)
        )
        self.agent: Agent | None = None

    @property
    def target(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def coordinators(self) -> list[Coordinator]:
        return [s.current for s in self.supervisors]

    async def start(self) -> None:
        for supervisor in self.supervisors:
            await supervisor.start()
        await self.emulator.start()
        self.agent = Agent(
            AgentConfig(
                source="test",
                coordinator=self.target,
                node=NodeSpec(
                    "IRONWOOD",
                    (GpuSpec(GPU.name, GPU.vendor, GPU.memory_bytes),),
                    (EndpointSpec("gpu0", (0,), 4, url=self.emulator.url),),
                ),
                listen="127.0.0.1:0",
                telemetry="simulated",
                heartbeat_interval_seconds=0.1,
                reconnect_initial_seconds=0.05,
                reconnect_max_seconds=0.5,
                metrics_listen="off",
            )
        )
        await self.agent.start()

    def leader(self) -> Coordinator | None:
        leaders = [c for c in self.coordinators if c.is_leader]
        assert len(leaders) <= 1, "two leaders at once"
        return leaders[0] if leaders else None

    async def stop(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
        for supervisor in self.supervisors:
            await supervisor.stop()
        await self.emulator.stop()


@pytest.fixture
async def trio(postgres_db: str, request: pytest.FixtureRequest) -> AsyncIterator[Trio]:
    t = Trio(postgres_db, getattr(request, "param", 0.05))
    try:
        await t.start()
        await eventually(lambda: t.leader() is not None, timeout=10, what="a leader")
        yield t
    finally:
        await t.stop()


async def status_via(address: str) -> cluster_pb2.GetClusterStatusResponse:
    async with grpc.aio.insecure_channel(address) as ch:
        return await cluster_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest(), timeout=5
        )


async def test_the_standby_names_the_leader_and_the_agent_registers_with_it(trio: Trio) -> None:
    leader = trio.leader()
    assert leader is not None
    standby = next(c for c in trio.coordinators if c is not leader)
    # A standby learns the leader when it next reads the lease (every renew_seconds).
    await eventually(
        lambda: standby.leader_address == leader.advertise,
        timeout=RENEW * 5,
        what="the standby read the leader's lease",
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await status_via(f"127.0.0.1:{standby.port}")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (LEADER_TRAILER, leader.advertise) in tuple(refused.value.trailing_metadata() or ())
    assert "standby" in (refused.value.details() or "")
    # Health stays open on a standby (probes, grpcurl).
    async with grpc.aio.insecure_channel(f"127.0.0.1:{standby.port}") as ch:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    async def registered() -> bool:
        reply = await status_via(leader.advertise)
        return [n.info.name for n in reply.nodes] == ["IRONWOOD"]

    await eventually(registered, timeout=10, what="the agent registered with the leader")
    assert not list(standby.registry)


async def test_a_standby_takes_over_and_finishes_the_workflows(trio: Trio) -> None:
    leader = trio.leader()
    assert leader is not None
    async with grpc.aio.insecure_channel(leader.advertise) as ch:
        ids = await submit_quick(ch, 10, "ha", timeout=10)
    states = [(await leader.workflows.get(i)).state for i in ids]
    assert any(st != workflow_pb2.WORKFLOW_STATE_SUCCEEDED for st in states), (
        "every workflow finished before the leader went: the takeover was not tested"
    )
    # The leader goes away without handing over: its lease has to expire.
    gone_at = time.monotonic()
    gone = next(s for s in trio.supervisors if s.current is leader)
    await gone.stop(hand_over=False)
    trio.supervisors.remove(gone)

    async def took_over() -> bool:
        return trio.leader() is not None

    await eventually(took_over, timeout=LEASE * 3 + 2, what="the standby leads")
    takeover = time.monotonic() - gone_at
    standby = trio.leader()
    assert standby is not None and standby.election is not None
    assert standby.election.epoch >= 2

    async def all_done() -> bool:
        async with grpc.aio.insecure_channel(standby.advertise) as ch:
            stub = workflow_pb2_grpc.WorkflowServiceStub(ch)
            workflows = [
                (await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=i), timeout=5)).workflow
                for i in ids
            ]
        return all(w.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED for w in workflows)

    await eventually(all_done, timeout=60, what="every workflow finished on the new leader")
    print(f"takeover {takeover:.2f}s")
    assert takeover < LEASE * 3 + 2


@pytest.mark.parametrize("trio", [0.5], indirect=True)
async def test_a_task_running_when_the_leader_goes_is_adopted_not_run_again(trio: Trio) -> None:
    """The stage's attempt keeps running on the agent while the leader is gone; the new
    leader adopts it (same task, same attempt) and accepts its result once."""
    leader = trio.leader()
    assert leader is not None and trio.agent is not None
    agent = trio.agent
    async with grpc.aio.insecure_channel(leader.advertise) as ch:
        accepted = await workflow_pb2_grpc.WorkflowServiceStub(ch).SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(requirements="a parser", pipeline="quick"),
            timeout=10,
        )
    wf_id = accepted.workflow.id

    async def generating() -> bool:
        return any(t.startswith(f"{wf_id}.generate") for t in agent.attempts.running_ids())

    await eventually(generating, timeout=20, what="the generate stage running on the agent")
    (task_id,) = [t for t in agent.attempts.running_ids() if t.startswith(wf_id)]
    asked = trio.emulator.stats.requests_total
    gone = next(s for s in trio.supervisors if s.current is leader)
    await gone.stop(hand_over=False)
    trio.supervisors.remove(gone)
    # Its caller went away with the session: the attempt runs on.
    assert agent.attempts.running_ids() == [task_id]
    await eventually(lambda: trio.leader() is not None, timeout=LEASE * 3 + 2, what="a leader")
    standby = trio.leader()
    assert standby is not None

    async def finished() -> bool:
        return (await standby.workflows.get(wf_id)).state == WF_SUCCEEDED

    await eventually(finished, timeout=60, what="the workflow finished on the new leader")
    generate = (await standby.workflows.get(wf_id)).stages["generate"]
    assert [(t.task_id, t.attempt, t.state) for t in generate.tasks] == [(task_id, 1, SUCCEEDED)]
    assert generate.output, "the adopted attempt's answer became the stage's output"
    # Generate was asked of Ollama once (before the kill); only the review since.
    assert trio.emulator.stats.requests_total == asked + 1
    adopted = standby.metrics.adoptions.labels("adopted")._value.get()
    assert adopted == 1
    assert agent.attempts.adopted == 1 and agent.attempts.expired == 0
