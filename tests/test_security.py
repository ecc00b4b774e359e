"""Security end to end: mutual TLS in the mesh, node identity, revocation, enrolment,
API tokens and their scopes, submission rate limits, the gateway forwarding tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from coordinator.access import RateLimiter
from coordinator.access.policy import METHOD_SCOPES, OPEN_SERVICES
from coordinator.registry import NodeState
from hive import pki
from hive.cli.dev import DevCluster
from hive.config import AgentConfig, TlsSettings
from hive.tls import Security, channel, token_interceptors
from hive.v1 import (
    agent_session_pb2,
    agent_session_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    common_pb2,
    enrollment_pb2,
    enrollment_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from node_agent.agent import Agent
from tests.conftest import FAST, eventually, fast_cluster


@dataclasses.dataclass
class Secured:
    dev: DevCluster
    tls_dir: Path
    admin: str

    @property
    def address(self) -> str:
        return self.dev.coordinator_address

    def client(self, token: str | None, name: str = "admin") -> grpc.aio.Channel:
        security = self.dev.security(name)
        interceptors = token_interceptors(lambda: token) if token else None
        return channel(self.address, security, interceptors=interceptors)

    async def token(self, scope: str) -> str:
        assert self.dev.coordinator is not None
        _, secret = await self.dev.coordinator.access.create_api_token(f"test {scope}", scope)
        return secret


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    tls_dir = tmp_path / "tls"
    pki.init_dir(tls_dir)
    settings = dataclasses.replace(
        FAST,
        tls=TlsSettings(
            ca=str(tls_dir / "ca.pem"),
            cert=str(tls_dir / "coordinator.pem"),
            key=str(tls_dir / "coordinator-key.pem"),
            ca_key=str(tls_dir / "ca-key.pem"),
        ),
        enroll_listen="127.0.0.1:0",
    )
    dev = DevCluster(
        dataclasses.replace(fast_cluster(), coordinator=settings),
        coordinator_listen="127.0.0.1:0",
        gateway_port=0,
        time_scale=0.0,
        tls_dir=str(tls_dir),
    )
    try:
        await dev.start()
        await dev.wait_registered(timeout=10)
        # The coordinator wrote its first admin token next to the state file.
        admin = (Path(dev.cluster.coordinator.state_path).parent / "admin.token").read_text()
        yield Secured(dev, tls_dir, admin.strip())
    finally:
        await dev.stop()


async def generate(ch: grpc.aio.Channel, model: str = "llama3.1:8b") -> str:
    stub = inference_pb2_grpc.InferenceServiceStub(ch)
    text = []
    async for event in stub.Generate(
        inference_pb2.GenerateRequest(model=model, prompt="hi", options={"num_predict": 4}),
        timeout=10,
    ):
        if event.HasField("chunk"):
            text.append(event.chunk.text)
        if event.HasField("assigned"):
            node = event.assigned.node
    assert text
    return node


async def healthy(s: Secured) -> int:
    async with s.client(s.admin) as ch:
        reply = await cluster_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest(), timeout=5
        )
    return reply.summary.nodes_healthy


def rogue_agent(s: Secured, name: str, security: Security | None) -> Agent:
    node = s.dev.cluster.nodes[0]
    endpoint = dataclasses.replace(
        node.endpoints[0], url=s.dev.emulators[f"{node.name}/{node.endpoints[0].id}"].url
    )
    return Agent(
        AgentConfig(
            source="test",
            coordinator=s.address,
            node=dataclasses.replace(node, name=name, endpoints=(endpoint,)),
            listen="127.0.0.1:0",
            telemetry="simulated",
            heartbeat_interval_seconds=0.1,
            reconnect_initial_seconds=0.05,
            reconnect_max_seconds=0.2,
        ),
        security=security,
    )


async def test_secured_cluster_runs_tasks_over_mtls(secured: Secured) -> None:
    assert await healthy(secured) == 5
    async with secured.client(await secured.token("submit")) as ch:
        assert await generate(ch)  # coordinator -> agent RunTask is mTLS too


@pytest.mark.parametrize("kind", ["no certificate", "another CA", "another node's name"])
async def test_intruding_agents_are_refused_and_the_cluster_keeps_serving(
    secured: Secured, tmp_path: Path, kind: str
) -> None:
    coordinator = secured.dev.coordinator
    assert coordinator is not None
    if kind == "no certificate":
        security = None
    elif kind == "another CA":
        pki.init_dir(tmp_path / "other")
        pki.issue_in_dir(tmp_path / "other", "INTRUDER")
        security = Security.load(pki.CertPaths.in_dir(tmp_path / "other", "INTRUDER"))
    else:
        security = secured.dev.security("MALLORY")  # a real certificate, for MALLORY
    agent = rogue_agent(secured, "INTRUDER", security)
    await agent.start()
    try:
        await asyncio.sleep(0.5)  # several reconnect attempts
        assert not agent.connected.is_set()
        assert "INTRUDER" not in {r.name for r in coordinator.registry}
    finally:
        await agent.stop(grace=0)
    assert await healthy(secured) == 5
    async with secured.client(await secured.token("submit")) as ch:
        assert await generate(ch)


async def test_a_certificate_cannot_register_as_another_node(secured: Secured) -> None:
    """MALLORY's valid certificate cannot take over IRONWOOD's name."""
    coordinator = secured.dev.coordinator
    assert coordinator is not None
    ironwood = coordinator.registry.get("IRONWOOD")
    async with channel(secured.address, secured.dev.security("MALLORY")) as ch:
        call = agent_session_pb2_grpc.AgentSessionServiceStub(ch).Connect()
        await call.write(
            agent_session_pb2.ConnectRequest(
                register=agent_session_pb2.Register(
                    node=common_pb2.NodeInfo(name="IRONWOOD", agent_address="127.0.0.1:1")
                )
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == "certificate is for MALLORY, not IRONWOOD"
    assert coordinator.registry.get("IRONWOOD") is ironwood
    assert ironwood.state is NodeState.HEALTHY


async def test_revoked_node_is_disconnected_at_once_and_refused_after(secured: Secured) -> None:
    coordinator = secured.dev.coordinator
    assert coordinator is not None
    agent = secured.dev.agents["ROSEWOOD"]
    sessions = agent.sessions
    async with secured.client(secured.admin) as ch:
        reply = await enrollment_pb2_grpc.AccessServiceStub(ch).RevokeNode(
            enrollment_pb2.RevokeNodeRequest(name="ROSEWOOD", reason="stolen"), timeout=5
        )
    assert reply.disconnected
    # Refused at once: no waiting for liveness timeouts.
    assert coordinator.registry.get("ROSEWOOD").state is NodeState.LOST
    await eventually(lambda: not agent.connected.is_set(), timeout=5, what="agent sees the end")
    await asyncio.sleep(0.5)  # the agent retries; each try is refused
    assert agent.sessions == sessions
    assert coordinator.registry.get("ROSEWOOD").state is NodeState.LOST
    assert await healthy(secured) == 4
    async with secured.client(secured.admin) as ch:
        await enrollment_pb2_grpc.AccessServiceStub(ch).RevokeNode(
            enrollment_pb2.RevokeNodeRequest(name="ROSEWOOD", undo=True), timeout=5
        )
    # Its reconnect backoff has grown while refused; it comes back on its next try.
    await eventually(agent.connected.is_set, timeout=20, what="ROSEWOOD back after undo")


async def test_revoked_api_token_is_refused_on_the_next_call(secured: Secured) -> None:
    async with secured.client(secured.admin) as ch:
        access = enrollment_pb2_grpc.AccessServiceStub(ch)
        created = await access.CreateApiToken(
            enrollment_pb2.CreateApiTokenRequest(name="ci", scope="read"), timeout=5
        )
        listed = await access.ListApiTokens(enrollment_pb2.ListApiTokensRequest(), timeout=5)
        assert created.token.id in {t.id for t in listed.tokens}
        assert created.secret not in str(listed)  # only hashes are kept
        async with secured.client(created.secret) as reader:
            status = cluster_pb2_grpc.ClusterServiceStub(reader)
            await status.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=5)
            await access.RevokeApiToken(
                enrollment_pb2.RevokeApiTokenRequest(id=created.token.id), timeout=5
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await status.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (refused.value.details() or "")


async def _drain(call: Any) -> list[Any]:
    return [m async for m in call]


CALLS = {
    "status": ("read", lambda ch: cluster_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
        cluster_pb2.GetClusterStatusRequest(), timeout=5)),
    "list": ("read", lambda ch: workflow_pb2_grpc.WorkflowServiceStub(ch).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), timeout=5)),
    "get": ("read", lambda ch: workflow_pb2_grpc.WorkflowServiceStub(ch).GetWorkflow(
        workflow_pb2.GetWorkflowRequest(id="wf-nope"), timeout=5)),
    "models": ("read", lambda ch: inference_pb2_grpc.InferenceServiceStub(ch).ListModels(
        inference_pb2.ListModelsRequest(), timeout=5)),
    "submit": ("submit", lambda ch: workflow_pb2_grpc.WorkflowServiceStub(ch).SubmitWorkflow(
        workflow_pb2.SubmitWorkflowRequest(name="x", requirements="a tiny CLI"), timeout=5)),
    "cancel": ("submit", lambda ch: workflow_pb2_grpc.WorkflowServiceStub(ch).CancelWorkflow(
        workflow_pb2.CancelWorkflowRequest(id="wf-nope"), timeout=5)),
    "embed": ("submit", lambda ch: inference_pb2_grpc.InferenceServiceStub(ch).Embed(
        inference_pb2.EmbedRequest(model="nomic-embed-text", input=["x"]), timeout=5)),
    "pull": ("admin", lambda ch: _drain(inference_pb2_grpc.InferenceServiceStub(ch).Pull(
        inference_pb2.PullRequest(model="gemma2:9b", endpoints=["NOBODY/x"]), timeout=5))),
    "delete": ("admin", lambda ch: inference_pb2_grpc.InferenceServiceStub(ch).Delete(
        inference_pb2.DeleteRequest(model="gemma2:9b", endpoints=["NOBODY/x"]), timeout=5)),
    "drain": ("admin", lambda ch: cluster_pb2_grpc.ClusterServiceStub(ch).DrainNode(
        cluster_pb2.DrainNodeRequest(node="NOBODY"), timeout=5)),
    "optimize": ("admin", lambda ch: cluster_pb2_grpc.ClusterServiceStub(ch).OptimizeCluster(
        cluster_pb2.OptimizeClusterRequest(dry_run=True), timeout=5)),
    "tokens": ("admin", lambda ch: enrollment_pb2_grpc.AccessServiceStub(ch).ListApiTokens(
        enrollment_pb2.ListApiTokensRequest(), timeout=5)),
}  # fmt: skip
RANK = {"read": 0, "submit": 1, "admin": 2}


async def test_each_scope_allows_exactly_what_it_should(secured: Secured) -> None:
    tokens = {scope: await secured.token(scope) for scope in RANK}
    seen: dict[tuple[str, str], str] = {}
    for scope, token in [*tokens.items(), ("none", None)]:
        async with secured.client(token) as ch:
            for name, (needed, call) in CALLS.items():
                try:
                    await call(ch)
                    code = "OK"
                except grpc.aio.AioRpcError as err:
                    code = err.code().name
                seen[(scope, name)] = code
                if scope == "none":
                    assert code == "UNAUTHENTICATED", (name, code)
                elif RANK[scope] >= RANK[needed]:
                    # Allowed: whatever the method answers, it is not an access refusal.
                    assert code not in ("PERMISSION_DENIED", "UNAUTHENTICATED"), (scope, name)
                else:
                    assert code == "PERMISSION_DENIED", (scope, name, code)
    assert seen[("read", "status")] == "OK" and seen[("submit", "submit")] == "OK"


def test_every_coordinator_method_names_its_scope() -> None:
    """A method missing from the table needs admin (fail closed), which silently locks out
    the callers a new method is for (Embed was): every method says which scope it needs."""
    served = [cluster_pb2, enrollment_pb2, inference_pb2, workflow_pb2]
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in served
        for service in module.DESCRIPTOR.services_by_name.values()
        if service.full_name not in OPEN_SERVICES
        for method in service.methods
    }
    assert methods - METHOD_SCOPES.keys() == set()
    assert METHOD_SCOPES.keys() - methods == set()  # nothing stale


async def test_submissions_are_rate_limited_per_token(secured: Secured) -> None:
    coordinator = secured.dev.coordinator
    assert coordinator is not None
    coordinator.guard.limiter = RateLimiter(0.5, 2, asyncio.get_running_loop().time)
    first, second = await secured.token("submit"), await secured.token("submit")
    async with secured.client(first) as ch:
        await generate(ch)
        await generate(ch)
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await generate(ch)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = dict(limited.value.trailing_metadata() or ())["retry-after-ms"]
    assert 0 < int(retry) <= 2000
    async with secured.client(second) as ch:  # another token has its own bucket
        await generate(ch)


async def test_join_token_enrols_a_new_node_once(secured: Secured, tmp_path: Path) -> None:
    coordinator = secured.dev.coordinator
    assert coordinator is not None
    async with secured.client(secured.admin) as ch:
        created = await enrollment_pb2_grpc.AccessServiceStub(ch).CreateJoinToken(
            enrollment_pb2.CreateJoinTokenRequest(node_name="NEWBIE", ttl_seconds=60), timeout=5
        )
    ca = (secured.tls_dir / "ca.pem").read_bytes()
    target = f"127.0.0.1:{coordinator.enroll_port}"

    async def enroll(name: str, token: str) -> enrollment_pb2.EnrollResponse:
        csr, _ = pki.make_csr(name)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        options = [("grpc.ssl_target_name_override", "coordinator")]
        async with grpc.aio.secure_channel(target, credentials, options) as ch:
            return await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll(
                enrollment_pb2.EnrollRequest(join_token=token, node_name=name, csr_pem=csr),
                timeout=5,
            )

    for name, token, code in [
        ("NEWBIE", "hivejoin_guess", grpc.StatusCode.UNAUTHENTICATED),
        ("OTHER", created.secret, grpc.StatusCode.PERMISSION_DENIED),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await enroll(name, token)
        assert refused.value.code() == code
    # The CLI's path: key made locally, CSR signed, identity written, agent joins.
    csr, key = pki.make_csr("NEWBIE")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    async with grpc.aio.secure_channel(
        target, credentials, [("grpc.ssl_target_name_override", "coordinator")]
    ) as ch:
        reply = await enrollment_pb2_grpc.EnrollmentServiceStub(ch).Enroll(
            enrollment_pb2.EnrollRequest(
                join_token=created.secret, node_name="NEWBIE", csr_pem=csr
            ),
            timeout=5,
        )
    assert pki.certificate_name(reply.certificate_pem) == "NEWBIE"
    paths = pki.write_identity(
        tmp_path / "newbie", "NEWBIE", reply.ca_pem, reply.certificate_pem, key
    )
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await enroll("NEWBIE", created.secret)
    assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    agent = rogue_agent(secured, "NEWBIE", Security.load(paths))
    await agent.start()
    try:
        await eventually(agent.connected.is_set, timeout=5, what="NEWBIE registered")
    finally:
        await agent.stop(grace=0)


async def test_gateway_forwards_bearer_tokens_and_keeps_health_open(secured: Secured) -> None:
    gateway = secured.dev.gateway
    assert gateway is not None
    reader = await secured.token("read")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/api/distributed/health")).status_code == 200
        status = "/api/distributed/cluster/status"
        denied = await http.get(status)
        assert denied.status_code == 401, denied.text
        assert (await http.get(status, headers={"Authorization": "Bearer nope"})).status_code == 401
        ok = await http.get(status, headers={"Authorization": f"Bearer {reader}"})
        assert ok.status_code == 200
        submit = await http.post(
            "/api/distributed/workflows",
            json={"name": "x", "requirements": "a CLI"},
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert submit.status_code == 403, submit.text


async def test_a_streamed_answer_comes_from_its_agent_over_mutual_tls(secured: Secured) -> None:
    """``hive dev``'s gateway reads streamed answers from the agents (direct): over mutual
    TLS, with the gateway's certificate, the agent checked to be the node assigned."""
    gateway = secured.dev.gateway
    assert gateway is not None
    admin = {"Authorization": f"Bearer {secured.admin}"}
    body = {"model": "llama3.1:8b", "prompt": "hi", "options": {"num_predict": 30}}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        async with http.stream("POST", "/api/generate", json=body, headers=admin) as reply:
            assert reply.status_code == 200
            lines = [json.loads(line) async for line in reply.aiter_lines() if line]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 30
    assert "".join(line.get("response", "") for line in lines[:-1])


def test_the_gateway_says_which_token_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hive.cli import main

    missing = str(tmp_path / "gw.token")
    assert main(["gateway", "--insecure", "--token-file", missing]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and f"{missing}: --token-file" in err, err
