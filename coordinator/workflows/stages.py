"""Running one stage of a workflow: its prompt from the stages upstream, its task (or its
reviewers fanned out across nodes, then their merge), the verdict that may send the
workflow back, and each task's way through the dispatcher — under the engine's
``PriorityGate``, waiting out a cluster without capacity (up to ``capacity_timeout``) or
without the stage's model (as long as it takes, for a workflow submitted with
``wait_for_models``; ``resume_grace`` after a restart, while the agents reconnect).

The engine's driver decides which stages run and when; a ``StageRunner`` runs one and
records its tasks in the store as they go. A stage reads as succeeded only once that is
committed. A task that fails after the dispatcher's retries fails its stage
(``StageFailed``, with the reason).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast

from coordinator.dispatch import Assigned, Dispatcher, NoCapacity, Overloaded, UnknownModel
from coordinator.workflows.gate import PriorityGate
from coordinator.workflows.model import (
    APPROVE,
    CANCELLED,
    CHANGES_REQUESTED,
    FAILED,
    RUNNING,
    STAT_FIELDS,
    SUCCEEDED,
    StageFailed,
    StageRec,
    TaskRec,
    WorkflowRec,
)
from coordinator.workflows.store import StateStore
from coordinator.workflows.templates import StageTemplate, render
from hive.v1 import common_pb2, node_agent_pb2, workflow_pb2

log = logging.getLogger("hive.coordinator.workflows")

# An upstream output fed to a prompt is cut to this many characters.
MAX_INPUT_CHARS = 24_000


class Emit(Protocol):
    """How the runner tells the workflow's watchers (``WorkflowEngine._emit``)."""

    def __call__(
        self,
        wf: WorkflowRec,
        type_: int,
        stage: str = "",
        task: TaskRec | None = None,
        message: str = "",
    ) -> None: ...


class StageRunner:
    """Runs stages for the engine; holds what only stage running needs: the gate, the
    waits' bounds, which workflows were resumed, and the count of tasks started."""

    def __init__(
        self,
        store: StateStore,
        dispatcher: Dispatcher,
        gate: PriorityGate,
        *,
        clock: Callable[[], float],
        emit: Emit,
        quitting: Callable[[], bool],
        capacity_timeout: float,
        resume_grace: float,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.gate = gate
        self.clock = clock
        self.emit = emit
        # Whether the engine is stopping or was abandoned: a task cancelled then is left
        # as stored, to be resumed.
        self.quitting = quitting
        self.capacity_timeout = capacity_timeout
        # After a restart the agents reconnect over a few seconds; until then a resumed
        # workflow's model looks unknown, which must not fail it.
        self.resume_grace = resume_grace
        self.resumed: set[str] = set()
        self.started_at = 0.0  # the engine's start, in loop time: the grace runs from it
        # Tasks handed to the dispatcher so far: what tests and the crash check read.
        self.tasks_started = 0

    async def run(self, wf: WorkflowRec, template: StageTemplate, stage: StageRec) -> None:
        """Run ``stage`` until it has succeeded and that is committed, or raise."""
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
        save_stage(
            self.store, wf, dataclasses.replace(stage, state=SUCCEEDED, finished_at=finished)
        )
        await self.store.flush()
        stage.state, stage.finished_at = SUCCEEDED, finished
        self.emit(
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
            if not self.quitting():
                task.state, task.finished_at = CANCELLED, self.clock()
                task.error = task.error or "cancelled"
                self.store.save_task(wf.id, task)
                self.emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED, stage.name, task)
            raise
        except Exception as exc:
            task.state, task.finished_at = FAILED, self.clock()
            task.error = _reason(exc)
            self.store.save_task(wf.id, task)
            self.emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED, stage.name, task)
            raise StageFailed(task.error) from exc
        task.state, task.finished_at = SUCCEEDED, self.clock()
        self.store.save_task(wf.id, task)
        self.emit(wf, workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED, stage.name, task)
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
                        self.emit(
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
                        self.emit(
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
                if wf.id not in self.resumed or (
                    loop.time() + delay > self.started_at + self.resume_grace
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


def save_stage(store: StateStore, wf: WorkflowRec, stage: StageRec) -> None:
    """The stage's row to the store, at its position in the workflow."""
    store.save_stage(wf.id, list(wf.stages).index(stage.name), stage)


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
