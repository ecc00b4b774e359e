"""WorkflowService: gRPC in, engine calls, protobuf out. Domain errors map to statuses here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn, cast

import grpc

from coordinator.workflows.engine import WatchOverflow, WorkflowEngine
from coordinator.workflows.model import (
    InvalidWorkflow,
    MissingModel,
    StageRec,
    Submission,
    TaskRec,
    UnknownWorkflow,
    WorkflowError,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowRec,
)
from hive.timestamps import timestamp
from hive.v1 import cluster_pb2, common_pb2, workflow_pb2, workflow_pb2_grpc


def task_to_proto(task: TaskRec) -> workflow_pb2.TaskRecord:
    return workflow_pb2.TaskRecord(
        task_id=task.task_id,
        node=task.node,
        endpoint_id=task.endpoint_id,
        attempt=task.attempt,
        state=cast(cluster_pb2.TaskState, task.state),
        queued_at=timestamp(task.queued_at),
        started_at=timestamp(task.started_at),
        finished_at=timestamp(task.finished_at),
        stats=common_pb2.TaskStats(**task.stats),
        output=task.output,
        error=task.error,
        role=task.role,
        iteration=task.iteration,
    )


def stage_to_proto(stage: StageRec) -> workflow_pb2.Stage:
    return workflow_pb2.Stage(
        name=stage.name,
        type=cast(common_pb2.TaskType, stage.type),
        model=stage.model,
        depends_on=stage.depends_on,
        state=cast(cluster_pb2.TaskState, stage.state),
        tasks=[task_to_proto(t) for t in stage.tasks],
        output=stage.output,
        error=stage.error,
        iteration=stage.iteration,
        started_at=timestamp(stage.started_at),
        finished_at=timestamp(stage.finished_at),
        verdict=stage.verdict,
    )


def workflow_to_proto(wf: WorkflowRec) -> workflow_pb2.Workflow:
    return workflow_pb2.Workflow(
        id=wf.id,
        name=wf.name,
        requirements=wf.requirements,
        language=wf.language,
        priority=cast(common_pb2.Priority, wf.priority),
        pipeline=wf.pipeline,
        state=cast(workflow_pb2.WorkflowState, wf.state),
        stages=[stage_to_proto(s) for s in wf.stages.values()],
        created_at=timestamp(wf.created_at),
        started_at=timestamp(wf.started_at),
        finished_at=timestamp(wf.finished_at),
        error=wf.error,
        artifacts=[
            workflow_pb2.Artifact(path=a.path, content=a.content, kind=a.kind, stage=a.stage)
            for a in wf.artifacts
        ],
        labels=wf.labels,
        wait_for_models=wf.wait_for_models,
    )


def event_to_proto(event: WorkflowEvent) -> workflow_pb2.WatchWorkflowResponse:
    task = None
    if event.task is not None:
        t = event.task
        task = cluster_pb2.TaskEvent(
            task_id=t.task_id,
            state=cast(cluster_pb2.TaskState, t.state),
            node=t.node,
            endpoint_id=t.endpoint_id,
            model=t.model,
            type=cast(common_pb2.TaskType, event.workflow.stages[t.stage].type)
            if t.stage in event.workflow.stages
            else None,
            attempt=t.attempt,
            error=t.error,
        )
    return workflow_pb2.WatchWorkflowResponse(
        at=timestamp(event.at),
        workflow=workflow_to_proto(event.workflow),
        stage=event.stage,
        task=task,
        type=cast(workflow_pb2.WorkflowEventType, event.type),
        message=event.message,
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: WorkflowError) -> NoReturn:
    if isinstance(exc, InvalidWorkflow):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, UnknownWorkflow):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, MissingModel):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, WorkflowFinished):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    await context.abort(grpc.StatusCode.INTERNAL, str(exc))
    raise AssertionError("unreachable")  # abort raises


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, engine: WorkflowEngine) -> None:
        self.engine = engine

    async def SubmitWorkflow(
        self,
        request: workflow_pb2.SubmitWorkflowRequest,
        context: grpc.aio.ServicerContext[
            workflow_pb2.SubmitWorkflowRequest, workflow_pb2.SubmitWorkflowResponse
        ],
    ) -> workflow_pb2.SubmitWorkflowResponse:
        submission = Submission(
            name=request.name,
            requirements=request.requirements,
            language=request.language,
            priority=int(request.priority),
            pipeline=request.pipeline,
            request_id=request.request_id,
            labels=dict(request.labels),
            wait_for_models=request.wait_for_models,
            pipeline_definition=request.pipeline_definition,
        )
        try:
            wf, created = await self.engine.submit(submission)
        except WorkflowError as exc:
            await _abort(context, exc)
        return workflow_pb2.SubmitWorkflowResponse(workflow=workflow_to_proto(wf), created=created)

    async def GetWorkflow(
        self,
        request: workflow_pb2.GetWorkflowRequest,
        context: grpc.aio.ServicerContext[
            workflow_pb2.GetWorkflowRequest, workflow_pb2.GetWorkflowResponse
        ],
    ) -> workflow_pb2.GetWorkflowResponse:
        try:
            wf = await self.engine.get(request.id)
        except WorkflowError as exc:
            await _abort(context, exc)
        return workflow_pb2.GetWorkflowResponse(workflow=workflow_to_proto(wf))

    async def ListWorkflows(
        self,
        request: workflow_pb2.ListWorkflowsRequest,
        context: grpc.aio.ServicerContext[
            workflow_pb2.ListWorkflowsRequest, workflow_pb2.ListWorkflowsResponse
        ],
    ) -> workflow_pb2.ListWorkflowsResponse:
        try:
            rows, token = await self.engine.list_workflows(
                int(request.state), request.page_size, request.page_token
            )
        except WorkflowError as exc:
            await _abort(context, exc)
        return workflow_pb2.ListWorkflowsResponse(
            workflows=[workflow_to_proto(w) for w in rows], next_page_token=token
        )

    async def CancelWorkflow(
        self,
        request: workflow_pb2.CancelWorkflowRequest,
        context: grpc.aio.ServicerContext[
            workflow_pb2.CancelWorkflowRequest, workflow_pb2.CancelWorkflowResponse
        ],
    ) -> workflow_pb2.CancelWorkflowResponse:
        try:
            wf = await self.engine.cancel(request.id, request.reason)
        except WorkflowError as exc:
            await _abort(context, exc)
        return workflow_pb2.CancelWorkflowResponse(workflow=workflow_to_proto(wf))

    async def WatchWorkflow(
        self,
        request: workflow_pb2.WatchWorkflowRequest,
        context: grpc.aio.ServicerContext[
            workflow_pb2.WatchWorkflowRequest, workflow_pb2.WatchWorkflowResponse
        ],
    ) -> AsyncIterator[workflow_pb2.WatchWorkflowResponse]:
        try:
            async for event in self.engine.watch(request.id):
                yield event_to_proto(event)
        except WorkflowError as exc:
            await _abort(context, exc)
        except WatchOverflow as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
