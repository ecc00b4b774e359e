"""The workflow engine: pipeline templates turned into task DAGs, run through the dispatcher.

One supervisor task per unfinished workflow (the *driver*) walks the workflow's stage
DAG: every stage whose dependencies succeeded starts at once (parallel branches run
concurrently), each stage runs its task(s) through ``Dispatcher.run`` with the workflow's
priority, and a stage's outputs feed the prompts of the stages downstream.

Invariants:

* A stage starts only after all its dependencies *succeeded and were committed* to the
  store, so after a crash no stage runs with inputs the store does not hold.
* State goes to the store before anyone is told: Submit returns after its row commits;
  a finished workflow is committed before watchers hear of it.
* Failure policy: a stage whose task fails after the dispatcher's retries fails the
  workflow with that reason; stages still running are cancelled (on their agents) and
  stages not yet started are skipped (CANCELLED, "skipped").
* ``stop()`` cancels every driver and leaves the stored state as it was: the next start
  resumes each unfinished workflow — succeeded stages are kept, stages that were running
  are run again: a task that was running is adopted where its agent still runs it (the
  same task, its result accepted once), else run again under the same id; a task that
  was only queued is recorded as cancelled.
* Cancel is a request to the driver (an event), not a task cancellation, so a cancelled
  workflow is recorded as CANCELLED, while a coordinator shutdown is not.

How it fails: a pipeline that needs a model no node has is refused at submission
(MissingModel), unless it was submitted with ``wait_for_models``: then a stage waits for
a node with its model as long as it takes (saying so once, STAGE_WAITING). A model that
has gone by the time its stage runs fails the stage (UnknownModel); a cluster that has
the model but no capacity is waited for, up to ``capacity_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from coordinator.dispatch import (
    Adoption,
    Assigned,
    Dispatcher,
    NoCapacity,
    Overloaded,
    UnknownModel,
)
from coordinator.routing.filters import could_ever_run
from coordinator.workflows import artifacts as artifact_rules
from coordinator.workflows.model import (
    APPROVE,
    CANCELLED,
    CHANGES_REQUESTED,
    FAILED,
    PRIORITIES,
    QUEUED,
    RUNNING,
    STAT_FIELDS,
    SUCCEEDED,
    WF_CANCELLED,
    WF_FAILED,
    WF_PENDING,
    WF_RUNNING,
    WF_SUCCEEDED,
    InvalidWorkflow,
    MissingModel,
    StageFailed,
    StageRec,
    Submission,
    TaskRec,
    UnknownWorkflow,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowRec,
)
from coordinator.workflows.store import StateStore
from coordinator.workflows.templates import (
    Pipeline,
    PipelineCatalog,
    StageTemplate,
    parse_pipeline,
    pipeline_from_json,
    render,
)
from hive.config import ConfigError
from hive.v1 import cluster_pb2, common_pb2, node_agent_pb2, workflow_pb2

log = logging.getLogger("hive.coordinator.workflows")

DEFAULT_PIPELINE = "full"
MAX_REQUIREMENTS_CHARS = 200_000
MAX_NAME_CHARS = 200
MAX_REQUEST_ID_CHARS = 128
# A submitted pipeline definition (JSON); the template files have no such bound.
MAX_DEFINITION_CHARS = 256_000
# An upstream output fed to a prompt is cut to this many characters.
MAX_INPUT_CHARS = 24_000
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
WATCH_QUEUE = 10_000
LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.\- ]{1,40}$")


class WatchOverflow(RuntimeError):
    """A watcher fell too far behind and was dropped."""


class PriorityGate:
    """At most ``limit`` holders; waiters are served highest priority first, FIFO within one.

    Bounds how many workflow tasks the engine has at the dispatcher at once, so a burst
    of workflows queues here (cheaply, cancellably) rather than overflowing the
    scheduler's queue. A waiter that is cancelled leaves no trace.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        # A release hands its slot straight to a live waiter, so free slots imply no waiters.
        if self._free > 0:
            self._free -= 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (-priority, next(self._seq), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # granted just as we were cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


class _Run:
    """The engine's live view of one unfinished workflow."""

    def __init__(self, wf: WorkflowRec, pipeline: Pipeline) -> None:
        self.wf = wf
        self.pipeline = pipeline
        self.cancel_requested = asyncio.Event()
        self.cancel_reason = ""
        self.driver: asyncio.Task[None] | None = None
        self.done = asyncio.Event()


class WorkflowEngine:
    """Accepts workflows, runs them through the dispatcher, persists them in the store.

    Public API: ``start()``/``stop()``, ``submit()``, ``get()``, ``list_workflows()``, ``cancel()``,
    ``watch()``, ``pipelines``. ``abandon()`` drops everything without a word to the
    store, as a crash would (tests).
    """

    def __init__(
        self,
        store: StateStore,
        dispatcher: Dispatcher,
        pipelines: PipelineCatalog,
        *,
        clock: Callable[[], float] = time.time,
        max_running_tasks: int = 256,
        capacity_timeout: float = 120.0,
        resume_grace: float = 30.0,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.pipelines = pipelines
        self.clock = clock
        self.capacity_timeout = capacity_timeout
        # After a restart the agents reconnect over a few seconds; until then a resumed
        # workflow's model looks unknown, which must not fail it.
        self.resume_grace = resume_grace
        self._resumed: set[str] = set()
        self._started_at = 0.0
        self.gate = PriorityGate(max_running_tasks)
        self._runs: dict[str, _Run] = {}
        self._request_ids: dict[str, asyncio.Future[WorkflowRec]] = {}
        # Claims let go of so far: a request_id lookup that spans one reads again.
        self._claims_settled = 0
        self._watchers: dict[str, set[asyncio.Queue[WorkflowEvent | None]]] = {}
        self._stopping = False
        self._dead = False
        # Task counts by (workflow, stage): what tests and the crash check read.
        self.tasks_started = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every workflow the store holds unfinished."""
        resumed = 0
        self._started_at = asyncio.get_running_loop().time()
        for wf in await self.store.unfinished():
            try:
                pipeline = pipeline_from_json(wf.pipeline_spec, f"state:{wf.id}")
            except Exception as exc:  # a stored template this version cannot read
                wf.state, wf.error = WF_FAILED, f"cannot resume: {exc}"
                wf.finished_at = self.clock()
                self.store.save_workflow(wf)
                continue
            for position, stage in enumerate(wf.stages.values()):
                changed = False
                for task in stage.tasks:
                    if task.state == RUNNING and task.node and task.attempt > 0:
                        # Still running on its agent, maybe: the stage's next run of this
                        # task adopts the attempt there instead of running it again.
                        self.dispatcher.expect(
                            task.task_id, Adoption(task.node, task.endpoint_id, task.attempt)
                        )
                    elif task.state in (QUEUED, RUNNING):
                        task.state, task.error = CANCELLED, "interrupted: coordinator restarted"
                        task.finished_at = self.clock()
                        self.store.save_task(wf.id, task)
                if stage.state == RUNNING:
                    stage.state, stage.started_at = QUEUED, None
                    changed = True
                if changed:
                    self.store.save_stage(wf.id, position, stage)
            self._resumed.add(wf.id)
            self._launch(_Run(wf, pipeline))
            resumed += 1
        await self.store.flush()
        self.dispatcher.adoptions_known = True
        if resumed:
            log.info("resumed %d unfinished workflows", resumed)

    async def stop(self) -> None:
        """Cancel every driver; stored state stays as it is, to be resumed."""
        self._stopping = True
        drivers = [r.driver for r in self._runs.values() if r.driver is not None]
        for d in drivers:
            d.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        for queues in self._watchers.values():
            for q in queues:
                q.put_nowait(None)
        await self.store.flush()

    async def abandon(self) -> None:
        """Stop as a crash would: nothing more reaches the store (tests only)."""
        self._dead = True
        self.store.kill()
        drivers = [r.driver for r in self._runs.values() if r.driver is not None]
        for d in drivers:
            d.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    def _launch(self, run: _Run) -> None:
        self._runs[run.wf.id] = run
        run.driver = asyncio.create_task(self._drive(run), name=f"workflow {run.wf.id}")

    # --- the client API -----------------------------------------------------------------

    def validate(self, sub: Submission) -> Pipeline:
        if not sub.requirements.strip():
            raise InvalidWorkflow("requirements", "must not be empty: say what to build")
        if len(sub.requirements) > MAX_REQUIREMENTS_CHARS:
            raise InvalidWorkflow(
                "requirements",
                f"is {len(sub.requirements)} characters; the limit is {MAX_REQUIREMENTS_CHARS}",
            )
        if len(sub.name) > MAX_NAME_CHARS:
            raise InvalidWorkflow("name", f"is longer than {MAX_NAME_CHARS} characters")
        if sub.language and not LANGUAGE.match(sub.language):
            raise InvalidWorkflow("language", f"{sub.language!r} is not a language name")
        if sub.priority not in PRIORITIES.values() and sub.priority != 0:
            raise InvalidWorkflow(
                "priority",
                f"{sub.priority} is not a priority; use one of "
                + ", ".join(f"{n} ({v})" for n, v in PRIORITIES.items()),
            )
        if len(sub.request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidWorkflow("request_id", f"is longer than {MAX_REQUEST_ID_CHARS} characters")
        if sub.pipeline_definition:
            return _own_pipeline(sub)
        name = sub.pipeline or DEFAULT_PIPELINE
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            raise InvalidWorkflow(
                "pipeline", f"unknown pipeline {name!r}; known: {', '.join(self.pipelines.names())}"
            )
        return pipeline

    def _check_models(self, pipeline: Pipeline) -> None:
        """Refuse (MissingModel) a pipeline with a stage whose model no node could ever
        run. Not while the coordinator has just started and no agent has reconnected
        yet: an empty cluster then says nothing (the stage waits for the first node)."""
        if self.dispatcher.rejoining():
            return
        snapshot = self.dispatcher.snapshot()
        for t in pipeline.stages:
            for model in (t.model, t.merge.model) if t.merge else (t.model,):
                if not could_ever_run(model, snapshot):
                    raise MissingModel(t.name, model)

    async def submit(self, sub: Submission) -> tuple[WorkflowRec, bool]:
        """Accept a workflow; return it (committed to the store) and whether it is new.

        The same ``request_id`` always returns the same workflow, also across restarts
        and when two submissions race.
        """
        pipeline = self.validate(sub)
        claim: asyncio.Future[WorkflowRec] | None = None
        while sub.request_id:
            pending = self._request_ids.get(sub.request_id)
            if pending is not None:
                return (await asyncio.shield(pending)).summary(), False
            settled = self._claims_settled
            existing = await self.store.find_request(sub.request_id)
            if existing is not None:
                return self._current(existing).summary(), False
            # The read awaited the store: a racing submission may have claimed the id
            # meanwhile, or committed and let go of its claim after our read began.
            if sub.request_id not in self._request_ids and settled == self._claims_settled:
                break
        if not sub.wait_for_models:
            self._check_models(pipeline)
        # A workflow is accepted once it is on disk: while the disk refuses writes a new
        # one is refused (UNAVAILABLE), while a resubmission above still finds its own.
        self.store.check_writable()
        if sub.request_id:
            claim = asyncio.get_running_loop().create_future()
            self._request_ids[sub.request_id] = claim
        now = self.clock()
        wf = WorkflowRec(
            id="wf-" + uuid.uuid4().hex[:16],
            name=sub.name.strip() or _default_name(sub.requirements),
            requirements=sub.requirements,
            language=sub.language.strip() or "python",
            priority=sub.priority or PRIORITIES["normal"],
            pipeline=pipeline.name,
            pipeline_spec=pipeline.to_json(),
            created_at=now,
            request_id=sub.request_id,
            labels=dict(sub.labels),
            wait_for_models=sub.wait_for_models,
        )
        for t in pipeline.stages:
            wf.stages[t.name] = StageRec(t.name, t.type, t.model, t.depends_on)
        try:
            await self.store.commit_or_withdraw(self.store.save_all(wf))
        except BaseException as exc:
            if claim is not None:
                self._request_ids.pop(sub.request_id, None)
                self._claims_settled += 1
                if not claim.done():
                    claim.set_exception(exc)
                    claim.exception()  # retrieved: no "never retrieved" warning
            raise
        run = _Run(wf, pipeline)
        self._launch(run)
        if claim is not None:
            claim.set_result(wf)
            # Later duplicates find it in the store; the claim only covers the race.
            self._request_ids.pop(sub.request_id, None)
            self._claims_settled += 1
        log.info("workflow %s accepted: %s (%s pipeline)", wf.id, wf.name, wf.pipeline)
        return wf.summary(), True

    def _current(self, wf: WorkflowRec) -> WorkflowRec:
        run = self._runs.get(wf.id)
        return run.wf if run is not None else wf

    async def get(self, workflow_id: str) -> WorkflowRec:
        """The workflow with its stages, tasks, outputs and artifacts."""
        run = self._runs.get(workflow_id)
        if run is not None:
            return run.wf
        wf = await self.store.get(workflow_id)
        if wf is None:
            raise UnknownWorkflow(workflow_id)
        return wf

    async def list_workflows(
        self, state: int = 0, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[WorkflowRec], str]:
        """Newest first, summaries only; ``page_token`` continues a previous listing."""
        if page_size < 0:
            raise InvalidWorkflow("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before: int | None = None
        if page_token:
            try:
                before = int(page_token.removeprefix("s"), 16)
                if not page_token.startswith("s"):
                    raise ValueError(page_token)
            except ValueError:
                raise InvalidWorkflow(
                    "page_token", "is not a token from a previous ListWorkflows"
                ) from None
        if state and state not in workflow_pb2.WorkflowState.values():
            raise InvalidWorkflow("state", f"{state} is not a workflow state")
        await self.store.flush()
        rows = await self.store.list_page(state or None, size + 1, before)
        more = len(rows) > size
        rows = rows[:size]
        next_token = f"s{rows[-1].seq:x}" if more and rows else ""
        return rows, next_token

    async def cancel(self, workflow_id: str, reason: str = "") -> WorkflowRec:
        """Cancel an unfinished workflow; returns it once it is recorded as cancelled."""
        run = self._runs.get(workflow_id)
        if run is None:
            wf = await self.store.get(workflow_id)
            if wf is None:
                raise UnknownWorkflow(workflow_id)
            raise WorkflowFinished(
                f"workflow {workflow_id} already finished "
                f"({workflow_pb2.WorkflowState.Name(wf.state)})"
            )
        run.cancel_reason = reason or "cancelled by request"
        run.cancel_requested.set()
        await asyncio.shield(run.done.wait())
        return run.wf

    async def watch(self, workflow_id: str) -> AsyncIterator[WorkflowEvent]:
        """A snapshot, then every event until the workflow finishes."""
        queue: asyncio.Queue[WorkflowEvent | None] = asyncio.Queue()
        run = self._runs.get(workflow_id)
        if run is None:
            wf = await self.get(workflow_id)
            yield WorkflowEvent(
                workflow_pb2.WORKFLOW_EVENT_TYPE_SNAPSHOT, self.clock(), wf.summary()
            )
            return
        watchers = self._watchers.setdefault(workflow_id, set())
        watchers.add(queue)
        try:
            yield WorkflowEvent(
                workflow_pb2.WORKFLOW_EVENT_TYPE_SNAPSHOT, self.clock(), run.wf.summary()
            )
            if run.wf.finished:
                return
            while True:
                event = await queue.get()
                if event is None:
                    if self._stopping:
                        return
                    raise WatchOverflow("watcher fell too far behind and was dropped; watch again")
                yield event
                if (
                    event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_WORKFLOW_STATE
                    and event.workflow.finished
                ):
                    return
        finally:
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(workflow_id, None)

    def _emit(
        self,
        wf: WorkflowRec,
        type_: int,
        stage: str = "",
        task: TaskRec | None = None,
        message: str = "",
    ) -> None:
        if type_ in _CLUSTER_EVENTS:
            self._tell_cluster(wf, type_, stage, message)
        queues = self._watchers.get(wf.id)
        if not queues:
            return
        event = WorkflowEvent(type_, self.clock(), wf.summary(), stage, task, message)
        for q in list(queues):
            if q.qsize() >= WATCH_QUEUE:
                queues.discard(q)  # it reads its backlog, then learns it was dropped
                q.put_nowait(None)
            else:
                q.put_nowait(event)

    def _tell_cluster(self, wf: WorkflowRec, type_: int, stage: str, message: str) -> None:
        """A workflow's state, or a stage starting, waiting or finishing, to the cluster's
        watchers (WatchCluster: ``hive watch``, the WebSocket), without its outputs."""
        if not self.dispatcher.registry.watched:
            return
        if not stage:
            state = _name(workflow_pb2.WorkflowState.Name(wf.state), "WORKFLOW_STATE_")
        elif type_ == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING:
            state = "waiting"
        else:
            rec = wf.stages.get(stage)
            state = _name(cluster_pb2.TaskState.Name(rec.state), "TASK_STATE_") if rec else ""
        self.dispatcher.registry.workflow_changed(
            cluster_pb2.WorkflowChange(
                workflow_id=wf.id,
                name=wf.name,
                stage=stage,
                state=state,
                message=message or wf.error,
            )
        )

    # --- driving one workflow -----------------------------------------------------------

    def _save_stage(self, wf: WorkflowRec, stage: StageRec) -> None:
        self.store.save_stage(wf.id, list(wf.stages).index(stage.name), stage)

    async def _drive(self, run: _Run) -> None:
        wf, pipeline = run.wf, run.pipeline
        running: dict[asyncio.Task[None], str] = {}
        cancel_wait = asyncio.create_task(_wait(run.cancel_requested))
        try:
            while True:
                for name in self._ready(wf):
                    stage = wf.stages[name]
                    stage.state, stage.started_at, stage.error = RUNNING, self.clock(), ""
                    if wf.state == WF_PENDING:
                        wf.state, wf.started_at = WF_RUNNING, self.clock()
                        self.store.save_workflow(wf)
                        self._emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_WORKFLOW_STATE)
                    self._save_stage(wf, stage)
                    template = pipeline.stage(name)
                    self._emit(
                        wf,
                        workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_STARTED,
                        name,
                        message=f"stage {name} started"
                        + (f" ({template.reviewers} reviewers)" if template.reviewers > 1 else ""),
                    )
                    task = asyncio.create_task(self._run_stage(wf, template, stage))
                    running[task] = name
                if not running:
                    break
                done, _ = await asyncio.wait(
                    [*running, cancel_wait], return_when=asyncio.FIRST_COMPLETED
                )
                if cancel_wait in done:
                    await self._finish(
                        run, running, WF_CANCELLED, run.cancel_reason, "cancelled with the workflow"
                    )
                    return
                failure: tuple[str, BaseException] | None = None
                for finished in done:
                    name = running.pop(finished)
                    stage = wf.stages[name]
                    exc = finished.exception()
                    if exc is not None:
                        stage.state, stage.finished_at = FAILED, self.clock()
                        stage.error = str(exc)
                        self._save_stage(wf, stage)
                        self._emit(
                            wf, workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_FINISHED, name,
                            message=f"stage {name} failed: {exc}",
                        )  # fmt: skip
                        failure = failure or (name, exc)
                        continue
                    self._loop_back(wf, pipeline, name, running)
                if failure is not None:
                    name, exc = failure
                    await self._finish(
                        run,
                        running,
                        WF_FAILED,
                        f"stage {name} failed: {exc}",
                        f"cancelled: stage {name} failed",
                    )
                    return
                # Dependents start only once their inputs are durable.
                await self.store.flush()
            await self._finish(run, running, WF_SUCCEEDED, "", "")
        except Exception as exc:  # a bug here must not leave the workflow hanging
            log.exception("workflow %s: driver failed", wf.id)
            await self._finish(
                run, running, WF_FAILED, f"internal error: {exc!r}", "cancelled: internal error"
            )
        finally:
            cancel_wait.cancel()
            for task in running:
                task.cancel()
            await asyncio.gather(*running, cancel_wait, return_exceptions=True)
            if wf.finished or self._stopping or self._dead:
                self._runs.pop(wf.id, None)
                self._resumed.discard(wf.id)
            run.done.set()

    def _ready(self, wf: WorkflowRec) -> list[str]:
        return [
            s.name
            for s in wf.stages.values()
            if s.state == QUEUED and all(wf.stages[d].state == SUCCEEDED for d in s.depends_on)
        ]

    def _loop_back(
        self, wf: WorkflowRec, pipeline: Pipeline, name: str, running: dict[asyncio.Task[None], str]
    ) -> None:
        """After ``name`` succeeded: if its verdict asks for changes and the loop has
        budget left, queue its loop target and everything downstream of it again."""
        stage, template = wf.stages[name], pipeline.stage(name)
        loop = template.loop_back
        if loop is None or stage.verdict != CHANGES_REQUESTED:
            return
        target = wf.stages[loop.to]
        if target.iteration >= loop.max:
            log.info("workflow %s: %s still asks for changes; loop budget spent", wf.id, name)
            return
        reset = {loop.to} | pipeline.descendants(loop.to)
        for task, other in list(running.items()):
            if other in reset:
                task.cancel()
                running.pop(task)
        feedback = stage.output
        for other in reset:
            s = wf.stages[other]
            s.state, s.output, s.verdict, s.error = QUEUED, "", "", ""
            s.started_at = s.finished_at = None
            s.iteration += 1
            if other == loop.to:
                s.feedback = (
                    "A review of your previous answer asked for changes; address them:\n"
                    + feedback[:MAX_INPUT_CHARS]
                )
            self._save_stage(wf, s)
        self._emit(
            wf,
            workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_FINISHED,
            name,
            message=f"stage {name} requested changes: running {loop.to} again",
        )

    async def _finish(
        self,
        run: _Run,
        running: dict[asyncio.Task[None], str],
        state: int,
        error: str,
        stage_note: str,
    ) -> None:
        """End the workflow: stop running stages, skip the rest, commit, then tell."""
        wf = run.wf
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        now = self.clock()
        for name, stage in wf.stages.items():
            if stage.state in (QUEUED, RUNNING):
                was_running = stage.state == RUNNING or name in running.values()
                stage.state = CANCELLED
                stage.error = stage_note if was_running else _skipped(stage_note)
                stage.finished_at = now if was_running else None
                self._save_stage(wf, stage)
        running.clear()
        wf.artifacts = artifact_rules.collect(wf.stages.values(), run.pipeline, wf.language)
        wf.state, wf.error, wf.finished_at = state, error, now
        self.store.save_artifacts(wf.id, wf.artifacts)
        self.store.save_workflow(wf)
        await self.store.flush()
        log.info(
            "workflow %s %s%s",
            wf.id,
            workflow_pb2.WorkflowState.Name(state).removeprefix("WORKFLOW_STATE_").lower(),
            f": {error}" if error else "",
        )
        self._emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_WORKFLOW_STATE, message=error)

    # --- one stage ----------------------------------------------------------------------

    async def _run_stage(self, wf: WorkflowRec, template: StageTemplate, stage: StageRec) -> None:
        values = {
            "requirements": wf.requirements,
            "language": wf.language,
            "name": wf.name,
            "feedback": stage.feedback,
        }
        for name, other in wf.stages.items():
            if other.state == SUCCEEDED:
                values[name] = _cut(other.output)
        prompt = render(template.prompt, values)
        system = render(template.system, values)
        if template.reviewers == 1:
            task = await self._run_task(wf, template, stage, "main", template.model, prompt, system)
            stage.output = task.output
            outputs = [task.output]
        else:
            tasks = await self._fan_out(wf, template, stage, prompt, system)
            outputs = [t.output for t in tasks]
            stage.output = "\n\n".join(
                f"## {t.role} ({t.node})\n\n{t.output.strip()}" for t in tasks
            )
        if template.judges:
            pattern = re.compile(template.blocking_pattern)
            blocking = sum(1 for o in outputs if pattern.search(o))
            stage.verdict = CHANGES_REQUESTED if blocking >= template.quorum else APPROVE
        if template.merge is not None:
            reviews = "\n\n".join(
                f"Review {i + 1}:\n{_cut(o, MAX_INPUT_CHARS // max(1, len(outputs)))}"
                for i, o in enumerate(outputs)
            )
            merged = await self._run_task(
                wf,
                template,
                stage,
                "merge",
                template.merge.model,
                render(template.merge.prompt, {**values, "reviews": reviews}),
                system,
            )
            stage.output = merged.output
            if stage.verdict:
                stage.output += f"\n\nVerdict: {stage.verdict.replace('_', ' ')}"
        # A stage reads as succeeded (GetWorkflow, events) only once that is durable: a
        # coordinator that dies (or hands over) before the commit runs it again, and no
        # client saw a success that was then replaced by another run's.
        finished = self.clock()
        self._save_stage(wf, dataclasses.replace(stage, state=SUCCEEDED, finished_at=finished))
        await self.store.flush()
        stage.state, stage.finished_at = SUCCEEDED, finished
        self._emit(
            wf,
            workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_FINISHED,
            stage.name,
            message=f"stage {stage.name} succeeded"
            + (f" ({stage.verdict.replace('_', ' ')})" if stage.verdict else ""),
        )

    async def _fan_out(
        self, wf: WorkflowRec, template: StageTemplate, stage: StageRec, prompt: str, system: str
    ) -> list[TaskRec]:
        """N reviewers of the same input: each is placed after the previous one and steered
        off the nodes already reviewing (they share a node only when nothing else fits)."""
        placed: list[asyncio.Event] = [asyncio.Event() for _ in range(template.reviewers)]
        nodes: set[str] = set()

        async def reviewer(i: int) -> TaskRec:
            if i > 0:
                await placed[i - 1].wait()
            return await self._run_task(
                wf,
                template,
                stage,
                f"reviewer-{i + 1}",
                template.model,
                prompt,
                system,
                avoid=set(nodes),
                on_assigned=functools.partial(assigned, i),
            )

        def assigned(i: int, node: str) -> None:
            nodes.add(node)
            placed[i].set()

        async with asyncio.TaskGroup() as group:
            jobs = [group.create_task(reviewer(i)) for i in range(template.reviewers)]
        return [j.result() for j in jobs]

    async def _run_task(
        self,
        wf: WorkflowRec,
        template: StageTemplate,
        stage: StageRec,
        role: str,
        model: str,
        prompt: str,
        system: str,
        *,
        avoid: set[str] | None = None,
        on_assigned: Callable[[str], None] | None = None,
    ) -> TaskRec:
        task: TaskRec | None = None
        for prior in stage.tasks:
            if (prior.role, prior.iteration, prior.model) != (role, stage.iteration, model):
                continue
            # Finished before a restart interrupted its stage: its inputs are unchanged
            # (upstream stages were committed), so the work is not done twice.
            if prior.state == SUCCEEDED:
                if on_assigned is not None:
                    on_assigned(prior.node)
                return prior
            # Running when the earlier coordinator went away: the same task (same id, same
            # input), which the dispatcher adopts where it runs, or runs again.
            if prior.state == RUNNING:
                task = prior
        if task is None:
            task = TaskRec(
                task_id=f"{wf.id}.{stage.name}.{uuid.uuid4().hex[:8]}",
                stage=stage.name,
                role=role,
                iteration=stage.iteration,
                model=model,
                queued_at=self.clock(),
            )
            stage.tasks.append(task)
            self.store.save_task(wf.id, task)
        request = node_agent_pb2.RunTaskRequest(
            task_id=task.task_id,
            model=model,
            type=cast(common_pb2.TaskType, template.type),
            generate=node_agent_pb2.GenerateInput(prompt=prompt, system=system),
            # A stage's output is read whole: one message per hop instead of one per token.
            whole=True,
        )
        if template.options:
            request.options.update(dict(template.options))
        # Each stage runs on a node its specialization chain allows when one can run it.
        kwargs: dict[str, Any] = {"priority": wf.priority, "chain_only": True}
        if avoid is not None:
            kwargs["avoid_nodes"] = avoid
        try:
            async with self.gate.slot(wf.priority):
                self.tasks_started += 1
                await self._dispatch(wf, task, request, kwargs, on_assigned)
        except asyncio.CancelledError:
            if not self._dead and not self._stopping:
                task.state, task.finished_at = CANCELLED, self.clock()
                task.error = task.error or "cancelled"
                self.store.save_task(wf.id, task)
                self._emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED, stage.name, task)
            raise
        except Exception as exc:
            task.state, task.finished_at = FAILED, self.clock()
            task.error = _reason(exc)
            self.store.save_task(wf.id, task)
            self._emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED, stage.name, task)
            raise StageFailed(task.error) from exc
        task.state, task.finished_at = SUCCEEDED, self.clock()
        self.store.save_task(wf.id, task)
        self._emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED, stage.name, task)
        return task

    async def _dispatch(
        self,
        wf: WorkflowRec,
        task: TaskRec,
        request: node_agent_pb2.RunTaskRequest,
        kwargs: dict[str, Any],
        on_assigned: Callable[[str], None] | None,
    ) -> None:
        """One task through the dispatcher, waiting out a cluster without capacity."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.capacity_timeout
        delay = 0.05
        waiting = False
        while True:
            chunks: list[str] = []
            try:
                async for event in self.dispatcher.run(request, **kwargs):
                    if isinstance(event, Assigned):
                        chunks.clear()  # a new attempt: the old one's output is void
                        task.node = event.placement.node
                        task.endpoint_id = event.placement.endpoint_id
                        task.attempt = event.attempt
                        task.state = RUNNING
                        task.started_at = self.clock()
                        self.store.save_task(wf.id, task)
                        self._emit(
                            wf,
                            workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_ASSIGNED,
                            task.stage,
                            task,
                            f"{task.stage} {task.role} on {task.node}/{task.endpoint_id}",
                        )
                        if on_assigned is not None:
                            on_assigned(task.node)
                    elif event.HasField("chunk"):
                        chunks.append(event.chunk.text)
                    elif event.HasField("result"):
                        stats = event.result.stats
                        task.stats = {f: int(getattr(stats, f)) for f in STAT_FIELDS}
                task.output = "".join(chunks)
                return
            except UnknownModel:
                if wf.wait_for_models:
                    if not waiting:
                        waiting = True
                        self._emit(
                            wf,
                            workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING,
                            task.stage,
                            task,
                            f"{task.stage} waits for a node with model {request.model!r}",
                        )
                        log.info(
                            "workflow %s: stage %s waits for a node with model %r",
                            wf.id,
                            task.stage,
                            request.model,
                        )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    deadline = loop.time() + self.capacity_timeout
                    continue
                if wf.id not in self._resumed or (
                    loop.time() + delay > self._started_at + self.resume_grace
                ):
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except (NoCapacity, Overloaded) as exc:
                if loop.time() + delay > deadline:
                    raise StageFailed(
                        f"no capacity for model {request.model!r} within "
                        f"{self.capacity_timeout:.0f}s: {exc}"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


# What the cluster's watchers hear of a workflow (not task events: the dispatcher tells
# those itself).
_CLUSTER_EVENTS = frozenset(
    {
        workflow_pb2.WORKFLOW_EVENT_TYPE_WORKFLOW_STATE,
        workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_STARTED,
        workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_FINISHED,
        workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING,
    }
)


def _name(constant: str, prefix: str) -> str:
    return constant.removeprefix(prefix).lower()


def _own_pipeline(sub: Submission) -> Pipeline:
    """The submitter's own template (``pipeline_definition``), validated as the template
    files are; refused (InvalidWorkflow) naming the key at fault."""
    field_name = "pipeline_definition"
    if sub.pipeline:
        raise InvalidWorkflow(field_name, "send a pipeline's name or a definition, not both")
    if len(sub.pipeline_definition) > MAX_DEFINITION_CHARS:
        raise InvalidWorkflow(
            field_name,
            f"is {len(sub.pipeline_definition)} characters; the limit is {MAX_DEFINITION_CHARS}",
        )
    try:
        data = json.loads(sub.pipeline_definition, parse_constant=_not_json)
    except ValueError as exc:
        raise InvalidWorkflow(field_name, f"is not JSON: {exc}") from None
    if isinstance(data, dict):
        data.setdefault("name", "custom")
    try:
        return parse_pipeline(data, field_name)
    except ConfigError as exc:
        raise InvalidWorkflow(field_name, f"{exc.key}: {exc.reason}") from None


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnknownModel):
        return f"no node in the cluster has model {exc.args[0]!r}"
    details = getattr(exc, "details", None)
    if callable(details):  # a gRPC error from the agent
        code = getattr(exc, "code", None)
        name = code().name if callable(code) else ""
        return f"{name}: {details()}".strip(": ")
    return str(exc) or type(exc).__name__


def _cut(text: str, limit: int = MAX_INPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[... cut ...]"


def _skipped(note: str) -> str:
    return f"skipped ({note.removeprefix('cancelled: ')})" if note else "skipped"


def _default_name(requirements: str) -> str:
    first = requirements.strip().splitlines()[0]
    return first[:60] + ("..." if len(first) > 60 else "")
