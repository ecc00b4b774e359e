"""The gateway against a real in-process cluster: the seed's REST API, problem details,
and the cluster as one Ollama and one OpenAI endpoint driven by their official clients."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
import pytest_asyncio

from gateway.app import create_app
from hive.asgi import AsgiServer
from hive.cli.dev import DevCluster
from tests.conftest import PNG, WEATHER_TOOL, eventually, running_dev

API = "/api/distributed"

# The seed's three example workflows, verbatim.
SEED_WORKFLOWS = [
    {
        "name": "E-commerce Platform",
        "requirements": "Create a full-stack e-commerce platform with React frontend, Node.js "
        "API, PostgreSQL database, user authentication, product catalog, shopping cart, and "
        "payment integration.",
        "language": "typescript",
        "priority": "high",
    },
    {
        "name": "REST API with Microservices",
        "requirements": "Develop a REST API with microservices architecture, include "
        "comprehensive testing, API documentation, containerization, and deployment "
        "configuration.",
        "language": "python",
        "priority": "normal",
    },
    {
        "name": "Code Optimization Project",
        "requirements": "Analyze existing codebase for performance bottlenecks, implement "
        "optimizations for CPU and memory usage, add caching strategies, and create benchmarks.",
        "language": "python",
        "priority": "high",
    },
]


# One cluster for the module (tests that stop parts of it make their own, `fresh`).
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevCluster]:
    state = tmp_path_factory.mktemp("gw") / "hive-state.sqlite"
    async with running_dev(gateway_port=0, state_path=str(state)) as dev:
        yield dev


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(tmp_path: Path) -> AsyncIterator[DevCluster]:
    async with running_dev(gateway_port=0, state_path=str(tmp_path / "hive-state.sqlite")) as dev:
        yield dev


@pytest_asyncio.fixture(loop_scope="module")
async def http(gw: DevCluster) -> AsyncIterator[httpx.AsyncClient]:
    assert gw.gateway is not None
    async with httpx.AsyncClient(base_url=gw.gateway.url, timeout=30) as client:
        yield client


def assert_problem(
    r: httpx.Response, status: int, grpc_status: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if grpc_status is not None:
        assert body["grpc_status"] == grpc_status
    return body


# --- health and cluster ----------------------------------------------------------------


async def test_health_and_cluster_status(http: httpx.AsyncClient) -> None:
    r = await http.get("/health")
    assert r.status_code == 200 and r.json()["nodes_healthy"] == 5
    r = await http.get(f"{API}/health")
    assert r.json()["status"] == "healthy"
    assert set(r.json()["nodes"]) == {"IRONWOOD", "ROSEWOOD", "WALNUT", "ACACIA", "FORSTEINET"}
    status = (await http.get(f"{API}/cluster/status")).json()
    assert status["summary"]["gpus"] == 9
    assert status["summary"]["vram_total_bytes"] == 80 * (1 << 30)
    ironwood = next(n for n in status["nodes"] if n["name"] == "IRONWOOD")
    assert ironwood["state"] == "healthy"
    assert [e["id"] for e in ironwood["endpoints"]] == ["gtx1070", "p4"]
    assert "code_generation" in ironwood["specializations"]
    walnut = next(n for n in status["nodes"] if n["name"] == "WALNUT")
    assert walnut["gpus"][0]["vendor"] == "amd"


async def test_optimizer_and_metrics_map_grpc_status_to_http(http: httpx.AsyncClient) -> None:
    """Whatever the coordinator answers, the gateway keeps the REST contract: the typed
    result, or a problem carrying the gRPC status (501 while the optimizer is missing)."""
    for r in (
        await http.post(f"{API}/cluster/optimize", json={"dry_run": True}),
        await http.get(f"{API}/performance/metrics"),
    ):
        if r.status_code == 200:
            assert isinstance(r.json()["findings"], list)
        else:
            assert_problem(r, 501, "UNIMPLEMENTED")
    assert_problem(await http.post(f"{API}/cluster/optimize", json={"dry_run": "maybe"}), 422)


async def test_coordinator_down_is_503_and_recovers(fresh: DevCluster) -> None:
    """Stop the coordinator: 503 with the reason, then 200 again once it is back."""
    from coordinator.server import Coordinator

    gw = fresh
    old = gw.coordinator
    assert old is not None and gw.gateway is not None
    port = old.port
    async with httpx.AsyncClient(base_url=gw.gateway.url, timeout=30) as http:
        assert (await http.get("/health")).status_code == 200
        await old.stop(grace=0)
        body = assert_problem(await http.get(f"{API}/cluster/status"), 503, "UNAVAILABLE")
        assert "coordinator" in body["detail"]
        new = Coordinator(gw.cluster)
        await new.start(f"127.0.0.1:{port}")
        gw.coordinator = new

        async def healthy() -> bool:
            return (await http.get("/health")).status_code == 200

        await eventually(healthy, timeout=10, what="gateway serves again")


# --- workflows ---------------------------------------------------------------------


@pytest.mark.parametrize("example", SEED_WORKFLOWS, ids=lambda w: w["name"])
async def test_seed_workflow_submit_get_list(
    http: httpx.AsyncClient, example: dict[str, str]
) -> None:
    r = await http.post(f"{API}/workflows", json=example)
    assert r.status_code == 201, r.text
    wf = r.json()
    assert r.headers["location"] == f"{API}/workflows/{wf['id']}"
    assert (wf["name"], wf["language"], wf["priority"]) == (
        example["name"],
        example["language"],
        example["priority"],
    )
    assert wf["state"] in ("pending", "running", "succeeded")
    assert [s["name"] for s in wf["stages"]][:2] == ["generate", "review"]

    async def done() -> bool:
        got = await http.get(f"{API}/workflows/{wf['id']}")
        assert got.status_code == 200
        return bool(got.json()["state"] == "succeeded")

    await eventually(done, timeout=20, what="the workflow succeeds")
    final = (await http.get(f"{API}/workflows/{wf['id']}")).json()
    assert final["stages_finished"] == final["stages_total"] == len(final["stages"])
    generate = final["stages"][0]
    assert generate["state"] == "succeeded"
    task = generate["tasks"][-1]
    assert task["node"] and task["output"] and task["stats"]["eval_count"] > 0
    listed = (await http.get(f"{API}/workflows", params={"state": "succeeded"})).json()
    assert wf["id"] in [w["id"] for w in listed["workflows"]]
    assert all(w["state"] == "succeeded" for w in listed["workflows"])


async def test_workflow_list_pages(http: httpx.AsyncClient) -> None:
    ids = set()
    for example in SEED_WORKFLOWS:
        ids.add((await http.post(f"{API}/workflows", json=example)).json()["id"])
    seen: list[str] = []
    token = ""
    for _ in range(10):
        params: dict[str, str | int] = {"page_size": 2}
        if token:
            params["page_token"] = token
        page = (await http.get(f"{API}/workflows", params=params)).json()
        assert len(page["workflows"]) <= 2
        seen += [w["id"] for w in page["workflows"]]
        token = page["next_page_token"]
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    assert_problem(await http.get(f"{API}/workflows", params={"page_size": 0}), 422)
    assert_problem(await http.get(f"{API}/workflows", params={"state": "sleeping"}), 422)
    # A parameter the route does not take is refused, not ignored (issue 21: ?limit=-5).
    unknown = assert_problem(await http.get(f"{API}/workflows", params={"limit": -5}), 422)
    (error,) = unknown["errors"]
    assert error["field"] == "query.limit" and "page_size" in error["reason"], error
    assert (await http.get("/health", params={"probe": 1})).status_code == 200


async def test_idempotency_key_returns_the_same_workflow(http: httpx.AsyncClient) -> None:
    body = SEED_WORKFLOWS[1]
    first = await http.post(f"{API}/workflows", json=body, headers={"Idempotency-Key": "k-1"})
    again = await http.post(f"{API}/workflows", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    by_field = await http.post(f"{API}/workflows", json={**body, "request_id": "k-1"})
    assert by_field.json()["id"] == first.json()["id"]
    clash = await http.post(
        f"{API}/workflows", json={**body, "request_id": "k-2"}, headers={"Idempotency-Key": "k-1"}
    )
    assert assert_problem(clash, 400)["errors"][0]["field"] == "body.request_id"


async def test_a_workflow_needing_a_model_no_node_has_is_a_422_unless_it_may_wait(
    http: httpx.AsyncClient, gw: DevCluster
) -> None:
    import yaml

    from coordinator.workflows.templates import parse_pipeline

    assert gw.coordinator is not None
    gw.coordinator.workflows.pipelines.add(
        parse_pipeline(
            yaml.safe_load(
                "name: wants_gemma\nstages:\n"
                "  - {name: draft, type: code_generation, model: gemma2:27b, prompt: x}\n"
            ),
            "test",
        )
    )
    body = {"name": "x", "requirements": "a parser", "pipeline": "wants_gemma"}
    refused = assert_problem(await http.post(f"{API}/workflows", json=body), 422)
    assert "'draft'" in refused["detail"] and "'gemma2:27b'" in refused["detail"]
    assert refused["errors"][0]["field"] == "body.pipeline"
    r = await http.post(f"{API}/workflows", json={**body, "wait_for_models": True})
    assert r.status_code == 201, r.text
    assert r.json()["wait_for_models"] is True
    got = (await http.get(f"{API}/workflows/{r.json()['id']}")).json()
    assert got["wait_for_models"] is True and got["state"] in ("pending", "running")
    cancelled = await http.post(f"{API}/workflows/{got['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"


async def test_a_pipeline_definition_is_submitted_through_rest(http: httpx.AsyncClient) -> None:
    stage = {"name": "draft", "type": "code_generation", "model": "qwen2.5-coder:7b"}
    own = {"name": "one_stage", "stages": [{**stage, "prompt": "Write {{requirements}}"}]}
    body = {"name": "mine", "requirements": "a parser", "pipeline_definition": own}
    r = await http.post(f"{API}/workflows", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["pipeline"] == "one_stage"
    assert [x["name"] for x in r.json()["stages"]] == ["draft"]
    bad = {**body, "pipeline_definition": {"stages": [{**stage, "prompt": 3}]}}
    refused = assert_problem(await http.post(f"{API}/workflows", json=bad), 400)
    assert "pipeline_definition: stages[0].prompt" in refused["detail"], refused


async def test_the_event_stream_says_when_a_stage_waits_for_a_model() -> None:
    from gateway.events import WorkflowTracker
    from hive.v1 import cluster_pb2, workflow_pb2

    update = workflow_pb2.WatchWorkflowResponse(
        workflow=workflow_pb2.Workflow(id="wf-1", state=workflow_pb2.WORKFLOW_STATE_RUNNING),
        stage="draft",
        task=cluster_pb2.TaskEvent(task_id="wf-1.draft.1", model="gemma2:27b"),
        type=workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING,
        message="draft waits for a node with model 'gemma2:27b'",
    )
    (waiting,) = [e for e in WorkflowTracker().events(update) if e["type"] != "workflow"]
    assert waiting["type"] == "stage_waiting"
    assert (waiting["stage"], waiting["model"]) == ("draft", "gemma2:27b")
    assert "waits" in waiting["message"]


async def test_cancel_and_unknown_ids(http: httpx.AsyncClient, gw: DevCluster) -> None:
    assert_problem(await http.get(f"{API}/workflows/wf-nope"), 404, "NOT_FOUND")
    assert_problem(await http.post(f"{API}/workflows/wf-nope/cancel"), 404, "NOT_FOUND")
    wf = (await http.post(f"{API}/workflows", json=SEED_WORKFLOWS[0])).json()
    r = await http.post(f"{API}/workflows/{wf['id']}/cancel", json={"reason": "changed my mind"})
    if r.status_code == 202:
        assert r.json()["state"] == "cancelled"
        # Cancelling again conflicts with the workflow's state.
        assert_problem(await http.post(f"{API}/workflows/{wf['id']}/cancel"), 409)
    else:  # it finished first (time_scale=0): that is the conflict
        assert_problem(r, 409, "FAILED_PRECONDITION")


async def test_bad_input_is_a_clear_4xx(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{API}/workflows", json={"name": "x", "priority": "urgent"})
    fields = {e["field"] for e in assert_problem(r, 422)["errors"]}
    assert fields == {"body.requirements", "body.priority"}
    r = await http.post(
        f"{API}/workflows", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert assert_problem(r, 400)["errors"][0]["type"] == "json_invalid"
    r = await http.post(f"{API}/workflows", json={**SEED_WORKFLOWS[0], "name": 5})
    assert assert_problem(r, 422)["errors"][0]["field"] == "body.name"
    r = await http.post(f"{API}/workflows", json={**SEED_WORKFLOWS[0], "colour": "red"})
    assert assert_problem(r, 422)["errors"][0]["field"] == "body.colour"
    r = await http.post(f"{API}/workflows", json={**SEED_WORKFLOWS[0], "pipeline": "nope"})
    assert "pipeline" in assert_problem(r, 400, "INVALID_ARGUMENT")["detail"]
    big = {**SEED_WORKFLOWS[0], "requirements": "x" * (5 * 1024 * 1024)}
    assert_problem(await http.post(f"{API}/workflows", json=big), 413)
    assert_problem(await http.get(f"{API}/nothing-here"), 404)


async def test_streamed_body_over_the_limit_is_413(gw: DevCluster) -> None:
    """A chunked body with no Content-Length is counted as it arrives."""
    assert gw.coordinator is not None
    server = AsgiServer(create_app(gw.coordinator_address, max_body_bytes=1000))
    await server.start()
    try:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 500

        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post(
                f"{API}/workflows", content=chunks(), headers={"content-type": "application/json"}
            )
        assert_problem(r, 413)
    finally:
        await server.stop()


async def test_openapi_documents_typed_schemas(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        f"{API}/workflows",
        f"{API}/workflows/{{workflow_id}}",
        f"{API}/workflows/{{workflow_id}}/cancel",
        f"{API}/cluster/status",
        f"{API}/cluster/optimize",
        f"{API}/performance/metrics",
        "/health",
        f"{API}/health",
    ):
        assert path in paths, path
    create = spec["components"]["schemas"]["WorkflowCreate"]
    assert create["properties"]["priority"]["enum"] == ["low", "normal", "high"]
    ok = paths[f"{API}/workflows"]["post"]["responses"]["201"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/Workflow")
    assert (await http.get("/docs")).status_code == 200


# --- the cluster as one Ollama -----------------------------------------------------


async def test_official_ollama_client_uses_the_whole_cluster(gw: DevCluster) -> None:
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    names = {m.model for m in (await client.list()).models}
    every = {m for e in gw.cluster.nodes for ep in e.endpoints for m in ep.models}
    assert names == every  # the union across nodes

    reply = await client.generate(model="starcoder2:15b", prompt="Write a binary search")
    assert reply.done and reply.response and reply.eval_count and reply.prompt_eval_count
    # Same text as the one emulator that has the model, asked directly.
    direct = await ollama.AsyncClient(host=gw.emulators["IRONWOOD/p4"].url).generate(
        model="starcoder2:15b", prompt="Write a binary search"
    )
    assert reply.response == direct.response and reply.eval_count == direct.eval_count

    parts = [
        p
        async for p in await client.chat(
            model="llama3.1:8b",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            options={"num_predict": 50, "ignore_eos": True},  # the emulator's exact length
        )
    ]
    assert len(parts) > 2 and parts[-1].done and not any(p.done for p in parts[:-1])
    assert parts[-1].eval_count == 50
    assert "".join(p.message.content or "" for p in parts).strip()

    streamed = [
        p async for p in await client.generate(model="llama3.1:8b", prompt="hi", stream=True)
    ]
    assert streamed[-1].done_reason == "stop"

    loaded = {m.model for m in (await client.ps()).models}

    async def shows_loaded() -> bool:
        nonlocal loaded
        loaded = {m.model for m in (await client.ps()).models}
        return {"llama3.1:8b", "starcoder2:15b"} <= loaded

    await eventually(shows_loaded, what="/api/ps lists the loaded models")
    show = await client.show("codellama:13b")
    assert show.details is not None and show.details.family == "llama"
    version = await httpx.AsyncClient().get(f"{gw.gateway.url}/api/version")
    assert version.json()["version"]

    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="nope:1b", prompt="hi")
    assert err.value.status_code == 404 and "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        await client.show("nope:1b")
    assert err.value.status_code == 404


async def test_ollama_errors_use_ollamas_shape(http: httpx.AsyncClient) -> None:
    # Ollama's CLI checks the server with HEAD / before every command.
    assert (await http.head("/")).status_code == 200
    # HEAD is GET without the body on every GET route (clients probe /api/version so).
    for path in ("/api/version", "/api/tags", "/v1/models"):
        head, get = await http.head(path), await http.get(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == get.headers["content-length"]
    assert (await http.head("/api/nothing")).status_code == 404
    r = await http.post("/api/generate", json={"prompt": "no model"})
    assert r.status_code == 400 and "model" in r.json()["error"]
    r = await http.post("/api/chat", json={"model": "nope:1b", "messages": []})
    assert r.status_code == 404
    r = await http.post("/api/chat", json={"model": "nope:1b", "messages": [{"role": "user"}]})
    assert r.status_code == 404 and r.json() == {"error": "model 'nope:1b' not found"}
    r = await http.post("/api/generate", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    # Calls the cluster does not serve say so, and what to do instead, in Ollama's shape.
    r = await http.post("/api/copy", json={"source": "llama3.1:8b", "destination": "x"})
    assert r.status_code == 501 and "ollama pull" in r.json()["error"]
    r = await http.post("/api/push", json={"model": "llama3.1:8b"})
    assert r.status_code == 501 and "/api/tags" in r.json()["error"]
    # No input loads the model (as Ollama does) and answers no vectors; an unknown one is 404.
    r = await http.post("/api/embed", json={"model": "nomic-embed-text", "input": []})
    assert r.status_code == 200 and r.json()["embeddings"] == []
    r = await http.post("/api/embeddings", json={"model": "nomic-embed-text"})
    assert r.status_code == 200 and r.json() == {"embedding": []}
    r = await http.post("/api/embed", json={"model": "nope", "input": ""})
    assert r.status_code == 404
    r = await http.post("/api/embed", json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and r.json() == {"error": "model 'nope' not found"}
    # A path no API has: 404 in the shape of the API the caller was using.
    r = await http.post("/api/nothing", json={})
    assert r.status_code == 404 and r.json() == {"error": "Not Found: POST /api/nothing"}
    r = await http.get("/api/generate")
    assert r.status_code == 405 and "GET /api/generate" in r.json()["error"]
    assert "POST" in r.headers["allow"]


async def test_bodies_are_json_whatever_the_content_type(http: httpx.AsyncClient) -> None:
    """Ollama's own examples use `curl -d '{...}'`, which declares a form; Ollama reads JSON
    anyway, and so does the gateway (its APIs take no forms)."""
    body = json.dumps({"model": "llama3.1:8b", "prompt": "hi", "stream": False})
    for declared in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"content-type": declared} if declared else {}
        r = await http.post("/api/generate", content=body, headers=headers)
        assert r.status_code == 200, (declared, r.text)
        assert r.json()["done"] is True and r.json()["response"]
    chat = {"model": "qwen2.5-coder:7b", "messages": [{"role": "user", "content": "hi"}]}
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await http.post(
        "/v1/chat/completions", content=json.dumps({**chat, "max_tokens": 5}), headers=form
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    r = await http.post(f"{API}/workflows", content=json.dumps(SEED_WORKFLOWS[1]), headers=form)
    assert r.status_code == 201, r.text
    # Still JSON, so a broken body is the usual clear 400 in the API's own shape.
    r = await http.post("/api/chat", content=b"model=llama3.1:8b", headers=form)
    assert r.status_code == 400 and "JSON" in r.json()["error"]


# --- OpenAI-compatible ---------------------------------------------------------------


async def test_openai_errors_use_openais_shape(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/embeddings", json={"model": "nomic-embed-text", "input": [[1, 2]]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert "token ids are not supported" in r.json()["error"]["message"]
    huge = {"model": "nomic-embed-text", "input": "x", "dimensions": 10**30}
    r = await http.post("/v1/embeddings", json=huge)
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
    r = await http.post("/api/embed", json=huge)
    assert r.status_code == 400 and "dimensions" in r.json()["error"]
    r = await http.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = await http.post("/v1/nothing", json={})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Not Found: POST /v1/nothing"
    # The seed's REST API keeps problem+json.
    assert_problem(await http.get(f"{API}/nothing-here"), 404)


async def test_embeddings_through_the_official_clients(gw: DevCluster) -> None:
    """Ollama's /api/embed and /api/embeddings and OpenAI's /v1/embeddings, routed to a
    node with the embedding model; the vectors are the node's own."""
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    texts = ["def add(a, b):", "a cat", "def add(a, b):"]
    reply = await client.embed(model="nomic-embed-text", input=texts)
    assert [len(v) for v in reply.embeddings] == [768, 768, 768]
    assert reply.embeddings[0] == reply.embeddings[2] != reply.embeddings[1]
    assert reply.prompt_eval_count
    direct = await ollama.AsyncClient(host=gw.emulators["ACACIA/gpu0"].url).embed(
        model="nomic-embed-text", input=texts
    )
    for ours, theirs in zip(reply.embeddings, direct.embeddings, strict=True):
        assert list(ours) == pytest.approx(list(theirs), abs=1e-6)  # float32 on the wire
    short = await client.embed(model="nomic-embed-text", input="a cat", dimensions=32)
    assert len(short.embeddings[0]) == 32
    legacy = await client.embeddings(model="nomic-embed-text", prompt="a cat")
    assert list(legacy.embedding) == list(reply.embeddings[1])

    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    created = await oa.embeddings.create(model="nomic-embed-text", input=texts)  # base64
    assert [d.index for d in created.data] == [0, 1, 2]
    assert created.data[1].embedding == pytest.approx(list(reply.embeddings[1]), abs=1e-6)
    assert created.usage.prompt_tokens == reply.prompt_eval_count
    floats = await oa.embeddings.create(
        model="nomic-embed-text", input="a cat", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(list(reply.embeddings[1]), abs=1e-6)
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="nomic-embed-text", prompt="hi")
    assert err.value.status_code == 400 and "does not support generate" in err.value.error


async def test_openai_roles_are_checked_and_developer_is_the_system_prompt(
    gw: DevCluster,
) -> None:
    """A role OpenAI does not have (``wizard``) is a 400 in OpenAI's shape naming the field,
    not passed on to Ollama; ``developer`` (OpenAI's newer system role) reaches Ollama as
    the system prompt (issue 21)."""
    assert gw.gateway is not None
    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        await oa.chat.completions.create(
            model="llama3.1:8b",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[misc,list-item]
        )
    assert refused.value.status_code == 400
    assert "messages.0.role: Input should be 'system', 'developer'" in str(refused.value)
    as_developer = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=8,
        seed=3,
    )
    as_system = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=8,
        seed=3,
    )
    assert as_developer.usage is not None and as_system.usage is not None
    assert as_developer.usage.prompt_tokens == as_system.usage.prompt_tokens


async def test_structured_outputs_reach_ollama_as_a_schema(gw: DevCluster) -> None:
    """A JSON Schema ``format`` crosses the mesh as text and reaches the node's Ollama as an
    object again (Ollama refuses a schema sent as a string); the answer follows it."""
    assert gw.gateway is not None
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "stars": {"type": "integer"}},
        "required": ["name", "stars"],
    }
    client = ollama.AsyncClient(host=gw.gateway.url)
    reply = await client.chat(
        model="llama3.1:8b", messages=[{"role": "user", "content": "a repo"}], format=schema
    )
    answer = json.loads(reply.message.content or "")
    assert set(answer) == {"name", "stars"} and isinstance(answer["stars"], int)
    free = await client.generate(model="llama3.1:8b", prompt="a repo", format="json")
    assert isinstance(json.loads(free.response), dict)

    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    done = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "user", "content": "a repo"}],
        response_format={"type": "json_schema", "json_schema": {"name": "repo", "schema": schema}},
    )
    assert set(json.loads(done.choices[0].message.content or "")) == {"name", "stars"}


async def test_fill_in_the_middle_suffix_reaches_the_model(gw: DevCluster) -> None:
    """Editors' code completion sends the text after the cursor as ``suffix``; it crosses
    the mesh (the answer is the one the node's Ollama gives for prompt and suffix), and a
    model that cannot insert says so, as Ollama does."""
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    ask = {"model": "starcoder2:15b", "prompt": "def add(a, b):\n", "suffix": "\nprint(add(1, 2))"}
    reply = await client.generate(**ask, options={"num_predict": 30})
    direct = await ollama.AsyncClient(host=gw.emulators["IRONWOOD/p4"].url).generate(
        **ask, options={"num_predict": 30}
    )
    plain = await client.generate(
        model="starcoder2:15b", prompt="def add(a, b):\n", options={"num_predict": 30}
    )
    assert reply.response == direct.response != plain.response
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="llama3.1:8b", prompt="x = ", suffix="\n")
    assert err.value.status_code == 400 and "does not support insert" in err.value.error
    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    done = await oa.completions.create(
        model="starcoder2:15b",
        prompt="def add(a, b):\n",
        suffix="\nprint(add(1, 2))",
        max_tokens=30,
    )
    assert done.choices[0].text == reply.response


async def test_tool_calling_through_the_official_clients(gw: DevCluster) -> None:
    """Tools offered through the gateway reach the node's Ollama; the model's calls come
    back in each API's shape, and the tool's result, sent back, gets an answer."""
    assert gw.gateway is not None
    ask = [{"role": "user", "content": "Is it raining in Paris? Use get_weather."}]
    client = ollama.AsyncClient(host=gw.gateway.url)
    called = await client.chat(model="llama3.1:8b", messages=ask, tools=[WEATHER_TOOL])
    calls = called.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert set(calls[0].function.arguments) == {"city", "days"}
    assert isinstance(calls[0].function.arguments["days"], int)  # not 3.0
    parts = [
        p
        async for p in await client.chat(
            model="llama3.1:8b", messages=ask, tools=[WEATHER_TOOL], stream=True
        )
    ]
    assert [p.message.tool_calls for p in parts if p.message.tool_calls] == [calls]
    answered = await client.chat(
        model="llama3.1:8b",
        messages=[
            *ask,
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "light rain", "tool_name": "get_weather"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert answered.message.content and not answered.message.tool_calls
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(model="codellama:13b", messages=ask, tools=[WEATHER_TOOL])
    assert err.value.status_code == 400 and "does not support tools" in err.value.error

    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    done = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=ask,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == calls[0].function.arguments  # type: ignore[union-attr]
    reply = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=[
            *ask,  # type: ignore[list-item]
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "light rain"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content
    deltas = [
        c
        async for c in await oa.chat.completions.create(
            model="llama3.1:8b",
            messages=ask,
            tools=[WEATHER_TOOL],
            stream=True,  # type: ignore[list-item]
        )
    ]
    streamed = [t for c in deltas if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert [t.function.name for t in streamed] == ["get_weather"]  # type: ignore[union-attr]
    assert deltas[-1].choices[0].finish_reason == "tool_calls"


async def test_an_empty_chat_loads_the_model_as_ollama_run_asks(gw: DevCluster) -> None:
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    loaded = await client.chat(model="phi3:mini", messages=[], keep_alive="7m")
    assert loaded.done and loaded.done_reason == "load" and loaded.message.content == ""
    # phi3:mini lives on ACACIA only; its Ollama has it in VRAM now.
    assert "phi3:mini" in {name for name, _, _ in gw.emulators["ACACIA/gpu0"].loaded_models()}


async def test_thinking_comes_apart_from_the_answer(gw: DevCluster) -> None:
    """A thinking model's reasoning crosses the mesh in its own field (Ollama's
    ``thinking``, OpenAI's ``reasoning``); ``think`` false turns it off; the same answer."""
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    default = await client.generate(model="qwen3:8b", prompt="Why is the sky blue?")
    off = await client.generate(model="qwen3:8b", prompt="Why is the sky blue?", think=False)
    direct = await ollama.AsyncClient(host=gw.emulators["WALNUT/rx9060"].url).generate(
        model="qwen3:8b", prompt="Why is the sky blue?"
    )
    assert (default.thinking, default.response) == (direct.thinking, direct.response)
    assert default.thinking and off.response == default.response and not off.thinking
    parts = [
        p
        async for p in await client.chat(
            model="qwen3:8b",
            messages=[{"role": "user", "content": "Why?"}],
            think="high",
            stream=True,
        )
    ]
    assert "".join(p.message.thinking or "" for p in parts)
    assert "".join(p.message.content or "" for p in parts)
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="llama3.1:8b", prompt="Why?", think=True)
    assert err.value.status_code == 400 and "does not support thinking" in err.value.error
    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    done = await oa.chat.completions.create(
        model="qwen3:8b", messages=[{"role": "user", "content": "Why?"}], reasoning_effort="low"
    )
    assert (done.choices[0].message.model_extra or {}).get("reasoning")
    assert done.choices[0].message.content


async def test_show_reports_what_each_model_can_do(gw: DevCluster) -> None:
    """Clients read /api/show's capabilities to offer tools, images or embeddings; the
    gateway gives what the nodes' Ollamas say, not a guess."""
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    caps = {
        m: (await client.show(m)).capabilities
        for m in (
            "nomic-embed-text",
            "llava:7b",
            "llama3.1:8b",
            "starcoder2:15b",
            "qwen2.5-coder:7b",
            "codellama:13b",
        )
    }
    assert caps["nomic-embed-text"] == ["embedding"]  # no tag: :latest
    assert caps["llava:7b"] == ["completion", "vision"]
    assert caps["llama3.1:8b"] == ["completion", "tools"]
    assert caps["starcoder2:15b"] == ["completion", "insert"]
    assert caps["qwen2.5-coder:7b"] == ["completion", "tools", "insert"]  # as Ollama's
    assert caps["codellama:13b"] == ["completion", "insert"]


async def test_images_reach_a_vision_model(gw: DevCluster) -> None:
    """Images (Ollama's base64 ``images``, OpenAI's data-URL ``image_url`` parts) cross the
    mesh to a vision model: its prompt counts them; a URL to fetch is refused."""
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    seen = await client.generate(model="llava:7b", prompt="What is this?", images=[PNG])
    plain = await client.generate(model="llava:7b", prompt="What is this?")
    assert seen.prompt_eval_count == (plain.prompt_eval_count or 0) + 576
    chatted = await client.chat(
        model="llava:7b", messages=[{"role": "user", "content": "And this?", "images": [PNG]}]
    )
    assert chatted.prompt_eval_count and chatted.prompt_eval_count > 576
    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    done = await oa.chat.completions.create(
        model="llava:7b",
        messages=[{"role": "user", "content": parts}],  # type: ignore[misc,list-item]
    )
    assert done.usage is not None and done.usage.prompt_tokens > 576
    with pytest.raises(openai.BadRequestError) as err:
        await oa.chat.completions.create(
            model="llava:7b",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                }
            ],
        )
    assert "data URL" in str(err.value)


async def test_official_openai_client(gw: DevCluster) -> None:
    assert gw.gateway is not None
    client = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    models = [m.id async for m in client.models.list()]
    assert "llama3.1:8b" in models and "starcoder2:15b" in models

    done = await client.chat.completions.create(
        model="llama3.1:8b", messages=[{"role": "user", "content": "hello"}], max_tokens=40
    )
    assert done.choices[0].message.content and done.choices[0].message.role == "assistant"
    assert done.usage is not None and done.usage.completion_tokens == 40
    assert done.usage.prompt_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + 40
    assert done.choices[0].finish_reason == "length"

    stream = await client.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content  # the emulator is deterministic
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 40

    completion = await client.completions.create(
        model="starcoder2:15b", prompt="def add(a, b):", max_tokens=10
    )
    assert completion.choices[0].text and completion.usage is not None
    assert completion.usage.completion_tokens == 10

    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="nope:1b", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="llama3.1:8b", messages=[])


async def test_openai_stream_is_sse_ending_with_done(http: httpx.AsyncClient) -> None:
    body = {"model": "llama3.1:8b", "prompt": "hi", "stream": True, "max_tokens": 5}
    async with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in r.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "length"


async def test_logprobs_cross_the_mesh_in_each_apis_shape(gw: DevCluster) -> None:
    """Each token's log probability (and the likeliest tokens at its position) comes back
    as the node's Ollama gave it: Ollama's ``logprobs``, OpenAI's ``logprobs.content`` for
    chat and the legacy parallel lists for completions; bad values are refused."""
    assert gw.gateway is not None
    ask = {"prompt": "Name a colour", "options": {"num_predict": 8}, "stream": False}
    mesh = ollama.AsyncClient(host=gw.gateway.url)
    got = await mesh.generate(model="llama3.1:8b", logprobs=True, top_logprobs=2, **ask)
    direct = await ollama.AsyncClient(host=gw.emulators["ACACIA/gpu0"].url).generate(
        model="llama3.1:8b", logprobs=True, top_logprobs=2, **ask
    )
    assert got.logprobs and got.logprobs == direct.logprobs
    assert "".join(e.token for e in got.logprobs) == got.response
    streamed = [
        e
        async for p in await mesh.chat(
            model="llama3.1:8b",
            messages=[{"role": "user", "content": "Name a colour"}],
            logprobs=True,
            stream=True,
            options={"num_predict": 8},
        )
        for e in p.logprobs or []
    ]
    assert len(streamed) == 8 and all(e.logprob < 0 for e in streamed)
    assert (await mesh.generate(model="llama3.1:8b", **ask)).logprobs is None

    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    chat = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "user", "content": "Name a colour"}],
        logprobs=True,
        top_logprobs=3,
        max_tokens=8,
    )
    content = chat.choices[0].logprobs and chat.choices[0].logprobs.content
    assert content and "".join(t.token for t in content) == chat.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token for t in content)
    assert all(bytes(t.bytes or []) == t.token.encode() for t in content)
    chunks = await oa.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "user", "content": "Name a colour"}],
        logprobs=True,
        max_tokens=8,
        stream=True,
    )
    tokens = [
        t
        async for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content or []
    ]
    assert len(tokens) == 8 and all(t.top_logprobs == [] for t in tokens)
    legacy = await oa.completions.create(
        model="llama3.1:8b", prompt="Name a colour", logprobs=2, max_tokens=8
    )
    lp = legacy.choices[0].logprobs
    assert lp is not None and lp.tokens and "".join(lp.tokens) == legacy.choices[0].text
    assert lp.text_offset and lp.text_offset[0] == len("Name a colour")
    assert lp.top_logprobs and all(len(top) == 2 for top in lp.top_logprobs)
    assert lp.token_logprobs == [top[t] for top, t in zip(lp.top_logprobs, lp.tokens, strict=True)]
    plain = await oa.completions.create(model="llama3.1:8b", prompt="Hi", max_tokens=4)
    assert plain.choices[0].logprobs is None

    with pytest.raises(openai.BadRequestError) as lonely:
        await oa.chat.completions.create(
            model="llama3.1:8b", messages=[{"role": "user", "content": "x"}], top_logprobs=2
        )
    assert "top_logprobs needs logprobs" in str(lonely.value)
    with pytest.raises(ollama.ResponseError) as many:
        await mesh.generate(model="llama3.1:8b", prompt="x", logprobs=True, top_logprobs=21)
    assert many.value.status_code == 400 and "top_logprobs" in many.value.error


async def test_ollama_stop_unloads_the_model_everywhere(gw: DevCluster) -> None:
    """What ``ollama stop MODEL`` sends (no prompt, keep_alive 0) leaves no copy in any
    endpoint's VRAM, as ``ollama ps`` then shows; keep_alive in any zero spelling."""
    assert gw.gateway is not None
    client = ollama.AsyncClient(host=gw.gateway.url)
    model = "qwen2.5-coder:7b"
    for home in ("ACACIA/gpu0", "FORSTEINET/gpu0"):
        await ollama.AsyncClient(host=gw.emulators[home].url).generate(model=model, prompt="")

    async def running() -> set[str]:
        return {m.model or "" for m in (await client.ps()).models}

    await eventually(lambda: _contains(running(), model), what="the loads show in ps")
    stopped = await client.generate(model=model, prompt="", keep_alive=0)
    assert stopped.done and stopped.done_reason == "unload" and stopped.response == ""
    await eventually(lambda: _lacks(running(), model), what="ps shows it gone")
    for home in ("ACACIA/gpu0", "FORSTEINET/gpu0"):
        direct = await ollama.AsyncClient(host=gw.emulators[home].url).ps()
        assert model not in {m.model for m in direct.models}
    # A chat with no messages and keep_alive "0s" does the same; an unknown model is 404.
    await client.chat(model=model, messages=[{"role": "user", "content": "hi"}])
    chat = await client.chat(model=model, messages=[], keep_alive="0s")
    assert chat.done_reason == "unload" and chat.message.content == ""
    await eventually(lambda: _lacks(running(), model), what="ps shows it gone again")
    with pytest.raises(ollama.ResponseError) as unknown:
        await client.generate(model="nope:1b", prompt="", keep_alive=0)
    assert unknown.value.status_code == 404


async def _contains(names: Any, model: str) -> bool:
    return model in await names


async def _lacks(names: Any, model: str) -> bool:
    return model not in await names


@pytest.mark.parametrize(
    ("keep_alive", "zero"),
    [(0, True), (0.0, True), ("0", True), ("0s", True), ("0h0m0s", True), ("5m", False),
     ("-1", False), ("0.5s", False), (None, False), (300, False)],
)  # fmt: skip
async def test_which_keep_alive_unloads(keep_alive: str | float | None, zero: bool) -> None:
    from gateway.inference import unloads

    assert unloads(keep_alive) is zero


# A short multi-turn conversation with a system prompt, as the node's Ollama answers it.
async def _brief_go_directly(gw: DevCluster) -> dict[str, ollama.ChatResponse]:
    """The answers the emulators give the brief-Go conversation, by text: a node's first
    endpoint (seed 0, as ACACIA/gpu0) and its second (seed 1, as IRONWOOD/p4) answer
    differently, and the router may pick either kind."""
    answers = {}
    for key in ("ACACIA/gpu0", "IRONWOOD/p4"):
        answer = await ollama.AsyncClient(host=gw.emulators[key].url).chat(
            model="llama3.1:8b",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Write a binary search in Python"},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "Now in Go"},
            ],
            options={"num_predict": 40},
        )
        answers[answer.message.content] = answer
    return answers


# --- Anthropic's Messages API ---------------------------------------------------------


def _claude(gw: DevCluster) -> anthropic.AsyncAnthropic:
    assert gw.gateway is not None
    return anthropic.AsyncAnthropic(base_url=gw.gateway.url, api_key="x", max_retries=0)


async def test_anthropic_count_tokens_estimates_and_knows_the_models(gw: DevCluster) -> None:
    """``client.messages.count_tokens`` (Claude Code asks it) was a 404: it answers an
    estimate, 4 characters a token of the messages and tools, and a 404 in Anthropic's
    shape for a model no node has (issue 21)."""
    client = _claude(gw)
    short = await client.messages.count_tokens(
        model="llama3.1:8b", messages=[{"role": "user", "content": "Hi"}]
    )
    assert short.input_tokens == 1
    tool: Any = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    longer = await client.messages.count_tokens(
        model="llama3.1:8b",
        system="Be brief.",
        messages=[{"role": "user", "content": "Write a binary search in Python " * 10}],
        tools=[tool],
    )
    assert 80 < longer.input_tokens < 200
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.count_tokens(
            model="no-such-model:1b", messages=[{"role": "user", "content": "Hi"}]
        )
    assert "no-such-model:1b" in str(missing.value)


async def test_anthropic_messages_whole_and_streamed(gw: DevCluster) -> None:
    """The official Anthropic client (what Claude Code is built on) gets the answer the
    node's Ollama gives, whole or as Anthropic's events; system, max_tokens and a
    multi-turn conversation reach the model."""
    assert gw.gateway is not None
    client = _claude(gw)
    turns: list[Any] = [
        {"role": "user", "content": "Write a binary search in Python"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure."}]},
        {"role": "user", "content": [{"type": "text", "text": "Now in Go"}]},
    ]
    reply = await client.messages.create(
        model="llama3.1:8b", max_tokens=40, system="Be brief.", messages=turns
    )
    answers = await _brief_go_directly(gw)
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text in answers, (reply.content[0].text, list(answers))
    direct = answers[reply.content[0].text]
    assert reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 40
    assert reply.usage.input_tokens == direct.prompt_eval_count

    async with client.messages.stream(
        model="llama3.1:8b", max_tokens=40, system="Be brief.", messages=turns
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text in answers
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 40


async def test_anthropic_tools_thinking_and_errors(gw: DevCluster) -> None:
    """Tool use and tool results round-trip in Anthropic's blocks (streamed too); a
    thinking model's reasoning is a thinking block; bad requests get Anthropic's errors."""
    client = _claude(gw)
    weather = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"],
    }
    ask: Any = {"role": "user", "content": "What is the weather in Oslo?"}
    called = await client.messages.create(
        model="llama3.1:8b",
        max_tokens=200,
        tools=[weather],
        messages=[ask],
    )
    assert called.stop_reason == "tool_use"
    use = next(b for b in called.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict) and "city" in use.input
    answered = await client.messages.create(
        model="llama3.1:8b",
        max_tokens=30,
        tools=[weather],
        messages=[
            ask,
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}
                ],
            },
        ],
    )
    assert answered.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in answered.content] == ["text"]
    async with client.messages.stream(
        model="llama3.1:8b",
        max_tokens=200,
        tools=[weather],
        messages=[ask],
    ) as stream:
        streamed = await stream.get_final_message()
    streamed_use = next(b for b in streamed.content if b.type == "tool_use")
    assert streamed_use.input == use.input and streamed.stop_reason == "tool_use"

    thought = await client.messages.create(
        model="qwen3:8b",
        max_tokens=400,
        thinking={"type": "enabled", "budget_tokens": 200},
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    )
    assert [b.type for b in thought.content] == ["thinking", "text"]
    async with client.messages.stream(
        model="qwen3:8b",
        max_tokens=400,
        thinking={"type": "enabled", "budget_tokens": 200},
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    ) as stream:
        again = await stream.get_final_message()
    assert [b.type for b in again.content] == ["thinking", "text"]
    assert again.content[0].thinking == thought.content[0].thinking

    with pytest.raises(anthropic.NotFoundError) as unknown:
        await client.messages.create(
            model="nope:1b", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert unknown.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'nope:1b' not found"},
    }
    assert gw.gateway is not None
    async with httpx.AsyncClient(base_url=gw.gateway.url) as http:  # the SDK checks this itself
        no_max = await http.post(
            "/v1/messages", json={"model": "llama3.1:8b", "messages": [{"role": "user"}]}
        )
        nowhere = await http.post("/v1/messages/batches", json={})
    assert no_max.status_code == 400 and no_max.json()["type"] == "error"
    assert no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "not_found_error"
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    with pytest.raises(anthropic.BadRequestError) as by_url:
        await client.messages.create(
            model="llava:7b",
            max_tokens=5,
            messages=[{"role": "user", "content": [image]}],
        )
    assert "base64" in by_url.value.body["error"]["message"]


# --- OpenAI's Responses API -----------------------------------------------------------


async def test_openai_responses_whole_and_streamed(gw: DevCluster) -> None:
    """The official OpenAI client's Responses API (what Codex speaks): the answer the
    node's Ollama gives, whole or as the API's events; instructions, input items and
    max_output_tokens reach the model."""
    assert gw.gateway is not None
    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    items: Any = [
        {"role": "user", "content": "Write a binary search in Python"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Now in Go"}]},
    ]
    reply = await oa.responses.create(
        model="llama3.1:8b", instructions="Be brief.", input=items, max_output_tokens=40
    )
    answers = await _brief_go_directly(gw)
    assert reply.id.startswith("resp_") and reply.object == "response"
    assert reply.output_text in answers, (reply.output_text, list(answers))
    direct = answers[reply.output_text]
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage is not None and reply.usage.output_tokens == 40
    assert reply.usage.input_tokens == direct.prompt_eval_count

    async with oa.responses.stream(
        model="llama3.1:8b", instructions="Be brief.", input=items, max_output_tokens=40
    ) as stream:
        streamed = [e async for e in stream]
    deltas = [e.delta for e in streamed if e.type == "response.output_text.delta"]
    last = streamed[-1]
    # Cut by max_output_tokens: OpenAI ends such a stream with response.incomplete.
    assert last.type == "response.incomplete" and last.response.output_text in answers
    assert "".join(deltas) == last.response.output_text
    assert [e.sequence_number for e in streamed] == list(range(len(streamed)))
    short = await oa.responses.create(model="llama3.1:8b", input="Say hi")
    async with oa.responses.stream(model="llama3.1:8b", input="Say hi") as stream:
        final = await stream.get_final_response()
    assert short.status == final.status == "completed"
    # Either seed's answer (the router may pick another endpoint the second time).
    assert short.output_text and final.output_text


async def test_openai_responses_tools_reasoning_and_errors(gw: DevCluster) -> None:
    """Function calls and their outputs round-trip as Responses items (streamed too); a
    thinking model's reasoning is a reasoning item; what the gateway cannot do is a 400."""
    assert gw.gateway is not None
    oa = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)
    weather: Any = {"type": "function", **WEATHER_TOOL["function"]}  # type: ignore[dict-item]
    ask = "What is the weather in Oslo?"
    called = await oa.responses.create(model="llama3.1:8b", input=ask, tools=[weather])
    call = next(o for o in called.output if o.type == "function_call")
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    answered = await oa.responses.create(
        model="llama3.1:8b",
        tools=[weather],
        max_output_tokens=20,
        input=[
            {"role": "user", "content": ask},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
        ],
    )
    assert [o.type for o in answered.output] == ["message"] and answered.output_text
    async with oa.responses.stream(model="llama3.1:8b", input=ask, tools=[weather]) as stream:
        streamed = await stream.get_final_response()
    streamed_call = next(o for o in streamed.output if o.type == "function_call")
    assert streamed_call.arguments == call.arguments

    thought = await oa.responses.create(
        model="qwen3:8b", input="Why is the sky blue?", reasoning={"effort": "low"}
    )
    assert [o.type for o in thought.output] == ["reasoning", "message"]
    async with oa.responses.stream(
        model="qwen3:8b", input="Why is the sky blue?", reasoning={"effort": "low"}
    ) as stream:
        again = await stream.get_final_response()
    assert [o.type for o in again.output] == ["reasoning", "message"]
    assert again.output_text == thought.output_text

    with pytest.raises(openai.NotFoundError):
        await oa.responses.create(model="nope:1b", input="hi")
    with pytest.raises(openai.BadRequestError) as stored:
        await oa.responses.create(model="llama3.1:8b", input="hi", previous_response_id="resp_1")
    assert "whole conversation" in str(stored.value)
    # As Codex sends them: a namespace's functions are offered as "namespace.name"; a
    # built-in tool the mesh cannot run (web search) is left out, not refused.
    grouped = await oa.responses.create(
        model="llama3.1:8b",
        input=ask,
        tools=[{"type": "namespace", "name": "meteo", "tools": [weather]}, {"type": "web_search"}],
    )
    assert [(o.type, o.name) for o in grouped.output] == [("function_call", "meteo.get_weather")]
    searched = await oa.responses.create(
        model="llama3.1:8b", input="hi", tools=[{"type": "web_search"}]
    )
    assert [o.type for o in searched.output] == ["message"]
    with pytest.raises(openai.BadRequestError) as nameless:
        await oa.responses.create(model="llama3.1:8b", input="hi", tools=[{"type": "function"}])
    assert "needs a name" in str(nameless.value)


async def test_anthropic_requests_as_claude_code_sends_them(gw: DevCluster) -> None:
    """Claude Code puts system turns among the messages and asks every model to think
    (adaptive thinking with an effort): a model that cannot think answers without it, as
    Ollama lets it on this API; one that can reasons at that effort."""
    client = _claude(gw)
    turns: Any = [
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
        {"role": "system", "content": "Available agent types: none."},
    ]
    asks: Any = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}
    plain = await client.messages.create(
        model="qwen2.5-coder:7b", max_tokens=64, messages=turns, extra_body=asks
    )
    assert [b.type for b in plain.content] == ["text"]
    thinker = await client.messages.create(
        model="qwen3:8b", max_tokens=400, messages=turns, extra_body=asks
    )
    assert [b.type for b in thinker.content] == ["thinking", "text"]
    # "high" effort: Ollama's think "high" (96 pieces of reasoning in the emulator).
    assert len(thinker.content[0].thinking.split()) > 60


async def test_ollama_pull_puts_the_model_on_every_node(fresh: DevCluster) -> None:
    """`ollama pull` through the gateway pulls onto every node that lacks the model, its
    progress shown as one pull (each layer's bytes summed over the nodes); the cluster then
    lists and serves it. An unknown model's pull fails, saying so for each node."""
    assert fresh.gateway is not None
    client = ollama.AsyncClient(host=fresh.gateway.url)
    steps = [p async for p in await client.pull("gemma2:9b", stream=True)]
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    layers = [p for p in steps if p.digest]
    assert layers[-1].completed == layers[-1].total  # all six endpoints' bytes, summed
    assert layers[-1].total == 6 * 5_400_000_000
    assert sum(1 for p in steps if p.status == "writing manifest") == 1  # said once

    async def served() -> bool:
        shown = {m.model for m in (await client.list()).models}
        return "gemma2:9b" in shown

    await eventually(served, timeout=15, what="the pulled model is listed")
    reply = await client.generate(model="gemma2:9b", prompt="Describe autumn leaves")
    assert reply.done and reply.response
    assert (await client.pull("gemma2:9b")).status == "success"  # nothing left to pull
    with pytest.raises(ollama.ResponseError) as unknown:
        await client.pull("nope:1b")
    assert unknown.value.status_code == 404 and "does not exist" in unknown.value.error
    assert unknown.value.error.count("ACACIA/gpu0") == 1


async def test_ollama_rm_removes_the_model_from_every_node(fresh: DevCluster) -> None:
    assert fresh.gateway is not None
    client = ollama.AsyncClient(host=fresh.gateway.url)
    await client.delete("qwen2.5-coder:7b")  # on all six endpoints

    async def gone() -> bool:
        return "qwen2.5-coder:7b" not in {m.model for m in (await client.list()).models}

    await eventually(gone, timeout=15, what="no node lists it")
    with pytest.raises(ollama.ResponseError) as again:
        await client.delete("qwen2.5-coder:7b")
    assert again.value.status_code == 404
