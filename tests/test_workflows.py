"""Workflows end to end: real coordinator, agents and emulated Ollama in-process, real gRPC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from coordinator.workflows.model import SUCCEEDED
from hive.cli.dev import DevCluster
from hive.config import CoordinatorSettings, seed_cluster
from hive.v1 import (
    cluster_pb2,
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from tests.conftest import eventually, fast_cluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "workflows"
PRIORITY = {"low": 1, "normal": 2, "high": 3}
# Which nodes serve each model in the seed cluster.
# The seed's specialization chains: task type -> nodes, most preferred first.
CHAINS: dict[str, list[str]] = dict(seed_cluster().routing["chains"])
MODEL_NODES = {
    "codellama:13b": {"IRONWOOD", "ROSEWOOD", "WALNUT"},
    "qwen2.5-coder:14b": {"ROSEWOOD", "WALNUT"},
    "qwen2.5-coder:7b": {"IRONWOOD", "ROSEWOOD", "WALNUT", "ACACIA", "FORSTEINET"},
    "deepseek-coder-v2:16b": {"IRONWOOD", "WALNUT"},
    "llama3.1:8b": {"IRONWOOD", "ROSEWOOD", "WALNUT", "ACACIA", "FORSTEINET"},
}


async def start_cluster(state: Path) -> DevCluster:
    cluster = DevCluster(
        fast_cluster(),
        coordinator_listen="127.0.0.1:0",
        gateway_port=None,
        time_scale=0.0,
        state_path=str(state),
    )
    await cluster.start()
    await cluster.wait_registered(timeout=10)
    return cluster


@pytest.fixture
async def wdev(tmp_path: Path) -> AsyncIterator[DevCluster]:
    cluster = await start_cluster(tmp_path / "state.sqlite")
    try:
        yield cluster
    finally:
        await cluster.stop()


def stub(channel: grpc.aio.Channel) -> workflow_pb2_grpc.WorkflowServiceStub:
    return workflow_pb2_grpc.WorkflowServiceStub(channel)


async def wait_done(
    s: workflow_pb2_grpc.WorkflowServiceStub, wf_id: str, timeout: float = 20
) -> workflow_pb2.Workflow:
    """Follow WatchWorkflow to its end, then return the full workflow."""
    async with asyncio.timeout(timeout):
        async for _ in s.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(id=wf_id)):
            pass
    return (await s.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=wf_id))).workflow


def example(name: str) -> workflow_pb2.SubmitWorkflowRequest:
    data = json.loads((EXAMPLES / name).read_text())
    return workflow_pb2.SubmitWorkflowRequest(
        name=data["name"],
        requirements=data["requirements"],
        language=data["language"],
        priority=PRIORITY[data["priority"]],
    )


async def test_seed_examples_run_to_completion(wdev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        names = sorted(p.name for p in EXAMPLES.glob("*.json"))
        assert len(names) == 3
        submitted = [await s.SubmitWorkflow(example(n)) for n in names]
        finals = await asyncio.gather(*(wait_done(s, r.workflow.id) for r in submitted))
    for wf in finals:
        assert wf.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED, wf.error
        assert wf.pipeline == "full"
        assert [st.name for st in wf.stages] == [
            "generate",
            "review",
            "testing",
            "compilation",
            "optimization",
        ]
        for stage in wf.stages:
            assert stage.state == SUCCEEDED
            assert stage.output, stage.name
            done = [t for t in stage.tasks if t.state == SUCCEEDED]
            assert done, stage.name
            chain = CHAINS.get(
                common_pb2.TaskType.Name(stage.type).removeprefix("TASK_TYPE_").lower()
            )
            for task in done:
                assert task.node in MODEL_NODES[stage.model], (stage.name, task.node)
                if chain:
                    assert task.node in chain, (stage.name, task.node, chain)
                assert task.stats.eval_count > 0
                assert task.output
        review = next(st for st in wf.stages if st.name == "review")
        reviewers = [t for t in review.tasks if t.role.startswith("reviewer")]
        assert len(reviewers) == 2 and any(t.role == "merge" for t in review.tasks)
        assert review.verdict in ("approve", "changes_requested")
        # Outputs flow downstream: the generated code is in the testing stage's prompt,
        # so the emulator (deterministic) names the same language's files.
        kinds = {a.kind for a in wf.artifacts}
        assert {"code", "test", "notes"} <= kinds, kinds
        paths = [a.path for a in wf.artifacts]
        assert "reviews/review.md" in paths
        # (The emulator names a file after a path in the prompt: "Node.js" in one example.)
        ext = (".ts", ".js") if wf.language == "typescript" else (".py",)
        assert any(p.endswith(ext) for p in paths if not p.startswith(("reviews/", "notes/"))), (
            wf.language,
            paths,
        )
        # Timestamps respect the DAG: a stage starts after its dependency finished.
        by_name = {st.name: st for st in wf.stages}
        for stage in wf.stages:
            for dep in stage.depends_on:
                assert by_name[dep].finished_at.ToNanoseconds() <= stage.started_at.ToNanoseconds()


async def test_submit_validation_names_the_field(wdev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        cases = [
            (workflow_pb2.SubmitWorkflowRequest(name="x", requirements="  "), "requirements"),
            (
                workflow_pb2.SubmitWorkflowRequest(requirements="a thing", pipeline="nope"),
                "pipeline",
            ),
            (
                workflow_pb2.SubmitWorkflowRequest(
                    requirements="a thing",
                    priority=9,  # type: ignore[arg-type]
                ),
                "priority",
            ),
        ]
        for request, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await s.SubmitWorkflow(request)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (info.value.details() or "").startswith(field + ":"), info.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.SubmitWorkflow(
                workflow_pb2.SubmitWorkflowRequest(requirements="a", pipeline="nope")
            )
        assert "full" in (info.value.details() or "") and "quick" in (info.value.details() or "")
        # Nothing half-created.
        listed = await s.ListWorkflows(workflow_pb2.ListWorkflowsRequest())
        assert list(listed.workflows) == []
        for rpc in (s.GetWorkflow, s.CancelWorkflow):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await rpc(workflow_pb2.GetWorkflowRequest(id="wf-nope"))  # type: ignore[operator]
            assert info.value.code() == grpc.StatusCode.NOT_FOUND


def add_pipeline(dev: DevCluster, text: str) -> None:
    import yaml

    from coordinator.workflows.templates import parse_pipeline

    assert dev.coordinator is not None
    dev.coordinator.workflows.pipelines.add(parse_pipeline(yaml.safe_load(text), "test"))


async def test_diamond_branches_run_concurrently_and_watch_streams_events(
    wdev: DevCluster,
) -> None:
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        r = await s.SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(
                name="diamond",
                requirements="a key-value store with a REST API",
                pipeline="parallel",
            )
        )
        assert r.created and r.workflow.state == workflow_pb2.WORKFLOW_STATE_PENDING
        events = []
        async with asyncio.timeout(20):
            async for event in s.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(id=r.workflow.id)):
                events.append(event)
        wf = (await s.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=r.workflow.id))).workflow
    assert wf.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED, wf.error
    st = {x.name: x for x in wf.stages}
    middle = [st["review"], st["testing"], st["documentation"]]

    def ns(ts: object) -> int:
        return ts.ToNanoseconds()  # type: ignore[attr-defined, no-any-return]

    # All three branches were running at once: each started before any of them finished.
    assert max(ns(x.started_at) for x in middle) <= min(ns(x.finished_at) for x in middle)
    assert all(ns(x.started_at) >= ns(st["generate"].finished_at) for x in middle)
    assert ns(st["optimization"].started_at) >= max(ns(x.finished_at) for x in middle)
    # The watch: a snapshot first, stage and task events, the final state last.
    types = [e.type for e in events]
    assert types[0] == workflow_pb2.WORKFLOW_EVENT_TYPE_SNAPSHOT
    assert types[-1] == workflow_pb2.WORKFLOW_EVENT_TYPE_WORKFLOW_STATE
    assert events[-1].workflow.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED
    started = [e.stage for e in events if e.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_STARTED]
    # (generate may have started before the watch began: the snapshot shows it.)
    assert set(st) - {"generate"} <= set(started) and len(started) == len(set(started))
    assigned = [e for e in events if e.type == workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_ASSIGNED]
    assert len(assigned) >= 4 and all(e.task.node for e in assigned)


async def test_failing_stage_fails_workflow_and_skips_dependents(wdev: DevCluster) -> None:
    add_pipeline(
        wdev,
        """
name: broken
stages:
  - {name: generate, type: code_generation, model: qwen2.5-coder:7b, prompt: "write code"}
  - {name: review, type: code_review, model: qwen2.5-coder:7b, depends_on: [generate],
     prompt: "review {{generate}}", options: {num_predict: "lots"}}
  - {name: testing, type: testing, model: qwen2.5-coder:7b, depends_on: [review],
     prompt: "write tests"}
""",
    )
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        r = await s.SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(requirements="a parser", pipeline="broken")
        )
        wf = await wait_done(s, r.workflow.id)
    assert wf.state == workflow_pb2.WORKFLOW_STATE_FAILED
    # The node refused the stage's options (Ollama: an integer option given as a string).
    assert "review" in wf.error and "num_predict" in wf.error, wf.error
    st = {x.name: x for x in wf.stages}
    assert st["generate"].state == SUCCEEDED
    assert st["review"].state == cluster_pb2.TASK_STATE_FAILED
    assert st["testing"].state == cluster_pb2.TASK_STATE_CANCELLED
    assert st["testing"].error.startswith("skipped") and not st["testing"].tasks


async def test_a_pipeline_of_ones_own_is_sent_with_the_submission(wdev: DevCluster) -> None:
    own = {
        "name": "draft_and_review",
        "stages": [
            {
                "name": "draft",
                "type": "code_generation",
                "model": "qwen2.5-coder:7b",
                "prompt": "Write {{language}} code for: {{requirements}}",
            },
            {
                "name": "critique",
                "type": "code_review",
                "model": "llama3.1:8b",
                "depends_on": ["draft"],
                "prompt": "Review: {{draft}}",
            },
        ],
    }
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        r = await s.SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(
                requirements="a parser", pipeline_definition=json.dumps(own)
            )
        )
        wf = await wait_done(s, r.workflow.id)
        assert wf.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED, wf.error
        assert wf.pipeline == "draft_and_review"
        assert [(x.name, x.model) for x in wf.stages] == [
            ("draft", "qwen2.5-coder:7b"),
            ("critique", "llama3.1:8b"),
        ]
        assert wf.stages[0].tasks[-1].output and wf.stages[1].tasks[-1].output
        cycle = {
            **own,
            "stages": [{**own["stages"][0], "depends_on": ["critique"]}, own["stages"][1]],
        }
        refusals = [
            (json.dumps(cycle), "", "pipeline_definition: stages[0].depends_on: dependency cycle"),
            ("{not json", "", "pipeline_definition: is not JSON"),
            ('{"stages": [{"name": "x", "model": "m", "prompt": NaN}]}', "", "NaN"),
            (
                '{"stages": [{"name": "x", "model": "m", "prompt": "p", "options": {"t": 1e309}}]}',
                "",
                "pipeline_definition: stages.0.options.t holds NaN, Infinity or a number past",
            ),
            (json.dumps(own), "quick", "not both"),
            (json.dumps({"stages": []}), "", "pipeline_definition: stages: expected a non-empty"),
        ]
        for definition, pipeline, says in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await s.SubmitWorkflow(
                    workflow_pb2.SubmitWorkflowRequest(
                        requirements="x", pipeline=pipeline, pipeline_definition=definition
                    )
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert says in (refused.value.details() or ""), refused.value.details()


MISSING = """
name: needs_gemma
stages:
  - {name: generate, type: code_generation, model: qwen2.5-coder:7b, prompt: "write code"}
  - {name: review, type: code_review, model: gemma2:9b, depends_on: [generate],
     prompt: "review {{generate}}"}
"""


async def test_a_pipeline_whose_model_no_node_has_is_refused_at_submission(
    wdev: DevCluster,
) -> None:
    add_pipeline(wdev, MISSING)
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.SubmitWorkflow(
                workflow_pb2.SubmitWorkflowRequest(
                    requirements="a parser", pipeline="needs_gemma", request_id="r-1"
                )
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = refused.value.details() or ""
        assert "'review'" in details and "'gemma2:9b'" in details, details
        assert "wait_for_models" in details  # says how to queue it instead
        # Nothing was created, and the request id is free for a later try.
        listed = await s.ListWorkflows(workflow_pb2.ListWorkflowsRequest())
        assert list(listed.workflows) == []
        assert wdev.coordinator is not None and wdev.coordinator.workflows.tasks_started == 0


async def test_wait_for_models_queues_the_stage_until_a_node_has_the_model(
    wdev: DevCluster,
) -> None:
    add_pipeline(wdev, MISSING)
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        r = await s.SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(
                requirements="a parser", pipeline="needs_gemma", wait_for_models=True
            )
        )
        assert r.created and r.workflow.wait_for_models
        events: list[workflow_pb2.WatchWorkflowResponse] = []
        waiting = asyncio.Event()

        async def watch() -> None:
            async for event in s.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(id=r.workflow.id)):
                events.append(event)
                if event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING:
                    waiting.set()

        watcher = asyncio.create_task(watch())
        async with asyncio.timeout(20):
            await waiting.wait()
        # It waits, and keeps waiting (the stage neither fails nor runs).
        await asyncio.sleep(1.5)
        wf = (await s.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=r.workflow.id))).workflow
        assert wf.state == workflow_pb2.WORKFLOW_STATE_RUNNING and wf.wait_for_models
        review = next(x for x in wf.stages if x.name == "review")
        assert review.state != cluster_pb2.TASK_STATE_FAILED
        said = [e for e in events if e.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING]
        assert len(said) == 1, "the wait is announced once"
        assert said[0].stage == "review" and "gemma2:9b" in said[0].message
        # A node gets the model: the stage runs and the workflow finishes.
        inference = inference_pb2_grpc.InferenceServiceStub(channel)
        pulled = [
            line
            async for line in inference.Pull(
                inference_pb2.PullRequest(model="gemma2:9b", endpoints=["WALNUT/rx9060"])
            )
        ]
        assert pulled[-1].status == "success", pulled[-1]
        async with asyncio.timeout(30):
            await watcher
        wf = (await s.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=r.workflow.id))).workflow
    assert wf.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED, wf.error
    review = next(x for x in wf.stages if x.name == "review")
    assert [t.node for t in review.tasks] == ["WALNUT"]


async def test_fan_out_review_merges_verdicts_and_loops_back_once(wdev: DevCluster) -> None:
    # Every review "blocks" (the pattern matches anything): the loop runs once, then stops.
    add_pipeline(
        wdev,
        """
name: strict
stages:
  - {name: generate, type: code_generation, model: qwen2.5-coder:7b,
     prompt: "write code for {{requirements}} {{feedback}}", artifacts: code}
  - name: review
    type: code_review
    model: llama3.1:8b
    depends_on: [generate]
    reviewers: 3
    quorum: 2
    blocking_pattern: "(?s)."
    loop_back: {to: generate, max: 1}
    artifacts: notes
    prompt: "review {{generate}}"
    merge: {model: qwen2.5-coder:7b, prompt: "merge these reviews: {{reviews}}"}
""",
    )
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        r = await s.SubmitWorkflow(
            workflow_pb2.SubmitWorkflowRequest(requirements="a cache", pipeline="strict")
        )
        wf = await wait_done(s, r.workflow.id)
    assert wf.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED, wf.error
    st = {x.name: x for x in wf.stages}
    assert st["generate"].iteration == 1 and st["review"].iteration == 1
    gen_tasks = [t for t in st["generate"].tasks if t.state == SUCCEEDED]
    assert [t.iteration for t in gen_tasks] == [0, 1]
    reviewers = [t for t in st["review"].tasks if t.role.startswith("reviewer")]
    merges = [t for t in st["review"].tasks if t.role == "merge"]
    assert len(reviewers) == 6 and len(merges) == 2
    assert st["review"].verdict == "changes_requested"
    assert "Verdict: changes requested" in st["review"].output
    # Each round's three reviewers run on three different nodes.
    for it in (0, 1):
        nodes = [t.node for t in reviewers if t.iteration == it]
        assert len(set(nodes)) == 3, nodes
    notes = next(a for a in wf.artifacts if a.path == "reviews/review.md")
    assert "reviewer-3" in notes.content


async def test_idempotent_submit_same_request_id_same_workflow(wdev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        request = workflow_pb2.SubmitWorkflowRequest(
            requirements="a URL shortener", pipeline="quick", request_id="client-42"
        )
        racing = await asyncio.gather(*(s.SubmitWorkflow(request) for _ in range(5)))
        assert sum(r.created for r in racing) == 1
        assert len({r.workflow.id for r in racing}) == 1
        first = racing[0]
        await wait_done(s, first.workflow.id)
        again = await s.SubmitWorkflow(request)
        assert again.workflow.id == first.workflow.id and not again.created
        listed = await s.ListWorkflows(workflow_pb2.ListWorkflowsRequest())
        assert [w.id for w in listed.workflows] == [first.workflow.id]


async def test_list_paging_and_state_filter(wdev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(wdev.coordinator_address) as channel:
        s = stub(channel)
        ids = []
        for i in range(5):
            r = await s.SubmitWorkflow(
                workflow_pb2.SubmitWorkflowRequest(requirements=f"tool {i}", pipeline="quick")
            )
            ids.append(r.workflow.id)
        for i in ids:
            await wait_done(s, i)
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await s.ListWorkflows(
                workflow_pb2.ListWorkflowsRequest(page_size=2, page_token=token)
            )
            pages += 1
            assert len(page.workflows) <= 2
            seen += [w.id for w in page.workflows]
            token = page.next_page_token
            if not token:
                break
        assert pages == 3 and seen == ids[::-1]  # newest first, nothing twice
        done = await s.ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(state=workflow_pb2.WORKFLOW_STATE_SUCCEEDED)
        )
        assert len(done.workflows) == 5
        failed = await s.ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(state=workflow_pb2.WORKFLOW_STATE_FAILED)
        )
        assert list(failed.workflows) == []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.ListWorkflows(workflow_pb2.ListWorkflowsRequest(page_token="garbage"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await s.CancelWorkflow(workflow_pb2.CancelWorkflowRequest(id=ids[0]))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_mid_run_cancels_the_task_on_its_agent(tmp_path: Path) -> None:
    # Real generation times here, so the first task is still running when we cancel.
    cluster = DevCluster(
        fast_cluster(),
        coordinator_listen="127.0.0.1:0",
        gateway_port=None,
        time_scale=1.0,
        state_path=str(tmp_path / "state.sqlite"),
    )
    await cluster.start()
    try:
        await cluster.wait_registered(timeout=10)
        async with grpc.aio.insecure_channel(cluster.coordinator_address) as channel:
            s = stub(channel)
            r = await s.SubmitWorkflow(
                workflow_pb2.SubmitWorkflowRequest(requirements="a chat server", pipeline="quick")
            )
            wf_id = r.workflow.id

            def running_at_agent() -> bool:
                return any(
                    k.startswith(wf_id)
                    for a in cluster.agents.values()
                    for k in a.attempts.running_ids()
                )

            await eventually(running_at_agent, timeout=10, what="generate task on an agent")
            cancelled = (
                await s.CancelWorkflow(
                    workflow_pb2.CancelWorkflowRequest(id=wf_id, reason="changed my mind")
                )
            ).workflow
            assert cancelled.state == workflow_pb2.WORKFLOW_STATE_CANCELLED
            assert cancelled.error == "changed my mind"
            st = {x.name: x for x in cancelled.stages}
            assert st["generate"].state == cluster_pb2.TASK_STATE_CANCELLED
            assert st["generate"].tasks[0].state == cluster_pb2.TASK_STATE_CANCELLED
            assert st["review"].error.startswith("skipped") and not st["review"].tasks
            await eventually(lambda: not running_at_agent(), timeout=5, what="agent task gone")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await s.CancelWorkflow(workflow_pb2.CancelWorkflowRequest(id=wf_id))
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            got = (await s.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=wf_id))).workflow
            assert got.state == workflow_pb2.WORKFLOW_STATE_CANCELLED
    finally:
        await cluster.stop()


def completed_tasks(settings: CoordinatorSettings) -> dict[tuple[str, str], set[str]]:
    """(workflow, stage) -> ids of succeeded tasks, read straight from the state store
    (the SQLite file, or PostgreSQL under HIVE_TEST_STORE=postgresql)."""
    sql = (
        "SELECT t.workflow_id, t.stage, t.task_id FROM tasks t JOIN stages s"
        " ON s.workflow_id = t.workflow_id AND s.name = t.stage"
        " WHERE s.state = {mark} AND t.state = {mark}"
    )
    out: dict[tuple[str, str], set[str]] = {}
    if settings.postgres_url:
        import psycopg

        with psycopg.connect(settings.postgres_url) as pg:
            rows = pg.execute(sql.format(mark="%s"), (SUCCEEDED, SUCCEEDED)).fetchall()
    else:
        import sqlite3

        conn = sqlite3.connect(settings.sqlite_path or settings.state_path)
        try:
            rows = conn.execute(sql.format(mark="?"), (SUCCEEDED, SUCCEEDED)).fetchall()
        finally:
            conn.close()
    for wf, stage, task in rows:
        out.setdefault((wf, stage), set()).add(task)
    return out


async def test_crash_and_restart_resumes_without_rerunning_finished_stages(
    tmp_path: Path,
) -> None:
    from coordinator.server import Coordinator
    from coordinator.workflows.engine import PriorityGate

    state = tmp_path / "state.sqlite"
    cluster = await start_cluster(state)
    try:
        old = cluster.coordinator
        assert old is not None
        old.workflows.gate = PriorityGate(3)  # slow it down so the crash lands mid-run
        async with grpc.aio.insecure_channel(cluster.coordinator_address) as channel:
            s = stub(channel)
            ids = [
                (
                    await s.SubmitWorkflow(
                        workflow_pb2.SubmitWorkflowRequest(requirements=f"service {i}")
                    )
                ).workflow.id
                for i in range(12)
            ]

        def mid_run() -> bool:
            done = completed_tasks(cluster.cluster.coordinator)
            return len({wf for wf, _ in done}) >= 3 and old.workflows.tasks_started < 12 * 6

        await eventually(mid_run, timeout=15, what="some stages finished, most not")
        # Crash: nothing more reaches the state file, no graceful anything.
        await old.workflows.abandon()
        before = completed_tasks(cluster.cluster.coordinator)
        port = old.port
        await old.stop(grace=0)
        new = Coordinator(cluster.cluster)
        await new.start(f"127.0.0.1:{port}")
        # On PostgreSQL (HIVE_TEST_STORE) it is a standby until it holds the lease.
        await asyncio.wait_for(new.leading.wait(), 15)
        cluster.coordinator = new
        async with grpc.aio.insecure_channel(cluster.coordinator_address) as channel:
            s = stub(channel)
            finals = await asyncio.gather(*(wait_done(s, i, timeout=30) for i in ids))
            listed = await s.ListWorkflows(workflow_pb2.ListWorkflowsRequest(page_size=100))
        assert all(w.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED for w in finals), [
            (w.id, w.error) for w in finals
        ]
        assert sorted(w.id for w in listed.workflows) == sorted(ids)  # none lost, none added
        after = completed_tasks(cluster.cluster.coordinator)
        for key, tasks in before.items():
            assert after[key] == tasks, f"{key} ran again"
        assert len(before) < len(after)
        for wf in finals:
            for stage in wf.stages:
                ok = [t for t in stage.tasks if t.state == SUCCEEDED]
                # One successful run per stage (the review: two reviewers and a merge),
                # more only when a review looped back.
                per_run = 3 if stage.name == "review" else 1
                assert len(ok) == per_run * (stage.iteration + 1), (wf.id, stage.name)
    finally:
        await cluster.stop()


async def test_cli_submit_follows_live_then_lists_shows_and_exports(
    wdev: DevCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hive.cli import main

    address = wdev.coordinator_address
    rc = await asyncio.to_thread(
        main,
        ["submit", str(EXAMPLES / "rest-api-microservices.json"), "--pipeline", "quick",
         "--json", "--coordinator", address],
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    wf = json.loads(out)
    assert wf["state"] == "succeeded" and wf["name"] == "REST API with Microservices"
    rc = await asyncio.to_thread(main, ["workflows", "--json", "--coordinator", address])
    listed = json.loads(capsys.readouterr().out)
    assert rc == 0 and [w["id"] for w in listed["workflows"]] == [wf["id"]]
    rc = await asyncio.to_thread(main, ["workflow", wf["id"], "--coordinator", address])
    assert rc == 0 and "generate" in capsys.readouterr().out
    target = tmp_path / "out"
    rc = await asyncio.to_thread(
        main, ["workflow", "export", wf["id"], str(target), "--coordinator", address]
    )
    assert rc == 0
    for artifact in wf["artifacts"]:
        assert (target / artifact["path"]).read_text() == artifact["content"]
    assert json.loads((target / "workflow.json").read_text())["id"] == wf["id"]
    rc = await asyncio.to_thread(main, ["cancel", wf["id"], "--coordinator", address])
    assert rc == 1  # already finished: FAILED_PRECONDITION
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
    rc = await asyncio.to_thread(main, ["submit", "--requirements", "x", "--priority", "urgent"])
    assert rc == 2 and "priority" in capsys.readouterr().err
