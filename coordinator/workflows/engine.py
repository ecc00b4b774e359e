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

Where the pieces are: this module holds the public entry (``WorkflowEngine``: lifecycle,
the client API, watching, the DAG driver); ``submission`` checks what a client submits;
``stages`` runs one stage (tasks, reviewers, merge, verdict, the dispatch loop and its
waits); ``gate`` is the ``PriorityGate`` in front of the dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

from coordinator.dispatch import Adoption, Dispatcher
from coordinator.workflows import artifacts as artifact_rules
from coordinator.workflows import submission
from coordinator.workflows.gate import PriorityGate
from coordinator.workflows.model import (
    CANCELLED,
    CHANGES_REQUESTED,
    FAILED,
    PRIORITIES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    WF_CANCELLED,
    WF_FAILED,
    WF_PENDING,
    WF_RUNNING,
    WF_SUCCEEDED,
    InvalidWorkflow,
    StageRec,
    Submission,
    TaskRec,
    UnknownWorkflow,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowRec,
)
from coordinator.workflows.stages import MAX_INPUT_CHARS, StageRunner, save_stage
from coordinator.workflows.store import StateStore
from coordinator.workflows.templates import Pipeline, PipelineCatalog, pipeline_from_json
from hive.v1 import cluster_pb2, workflow_pb2

# PriorityGate too: tests and benchmarks import it from here, as before the split.
__all__ = ["PriorityGate", "WatchOverflow", "WorkflowEngine"]

log = logging.getLogger("hive.coordinator.workflows")

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
WATCH_QUEUE = 10_000


class WatchOverflow(RuntimeError):
    """A watcher fell too far behind and was dropped."""


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
    ``watch()``, ``pipelines``, ``gate``, ``tasks_started``. ``abandon()`` drops everything
    without a word to the store, as a crash would (tests).
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
        self.runner = StageRunner(
            store,
            dispatcher,
            PriorityGate(max_running_tasks),
            clock=clock,
            emit=self._emit,
            quitting=lambda: self._dead or self._stopping,
            capacity_timeout=capacity_timeout,
            resume_grace=resume_grace,
        )
        self._runs: dict[str, _Run] = {}
        self._request_ids: dict[str, asyncio.Future[WorkflowRec]] = {}
        # Claims let go of so far: a request_id lookup that spans one reads again.
        self._claims_settled = 0
        self._watchers: dict[str, set[asyncio.Queue[WorkflowEvent | None]]] = {}
        self._stopping = False
        self._dead = False

    @property
    def gate(self) -> PriorityGate:
        """Bounds the workflow tasks at the dispatcher at once (replaceable: tests)."""
        return self.runner.gate

    @gate.setter
    def gate(self, gate: PriorityGate) -> None:
        self.runner.gate = gate

    @property
    def tasks_started(self) -> int:
        """Tasks handed to the dispatcher so far: what tests and the crash check read."""
        return self.runner.tasks_started

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every workflow the store holds unfinished."""
        resumed = 0
        self.runner.started_at = asyncio.get_running_loop().time()
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
            self.runner.resumed.add(wf.id)
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
        """The pipeline ``sub`` runs, or InvalidWorkflow naming the field at fault."""
        return submission.validate(sub, self.pipelines)

    def _check_models(self, pipeline: Pipeline) -> None:
        """Refuse (MissingModel) a pipeline with a stage whose model no node could ever
        run. Not while the coordinator has just started and no agent has reconnected
        yet: an empty cluster then says nothing (the stage waits for the first node)."""
        if self.dispatcher.rejoining():
            return
        submission.check_models(pipeline, self.dispatcher.snapshot())

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
            name=sub.name.strip() or submission.default_name(sub.requirements),
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
        save_stage(self.store, wf, stage)

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
                    task = asyncio.create_task(self.runner.run(wf, template, stage))
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
                self.runner.resumed.discard(wf.id)
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


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def _skipped(note: str) -> str:
    return f"skipped ({note.removeprefix('cancelled: ')})" if note else "skipped"
