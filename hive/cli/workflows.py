"""`hive submit`, `hive workflows`, `hive workflow`, `hive cancel`: workflows from the shell.

Each command talks gRPC to the coordinator's WorkflowService. `hive submit` follows the
workflow live (WatchWorkflow) unless told `--no-wait`: on a terminal a table of its stages
redrawn in place, elsewhere (a pipe, a log file) one line per event. ``--json`` writes
what the REST API answers for the same request (gateway/schemas.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import timestamp_pb2
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gateway import schemas
from hive import coordinators
from hive.console import on_terminal, print_json, rest_time, table_console
from hive.coordinators import client_channel
from hive.v1 import cluster_pb2, common_pb2, workflow_pb2, workflow_pb2_grpc

PRIORITIES = {"low": common_pb2.PRIORITY_LOW, "normal": common_pb2.PRIORITY_NORMAL,
              "high": common_pb2.PRIORITY_HIGH}  # fmt: skip
STATES = {"pending": 1, "running": 2, "succeeded": 3, "failed": 4, "cancelled": 5}
STATE_STYLE = {"queued": "dim", "running": "yellow", "succeeded": "green", "failed": "red",
               "cancelled": "magenta", "pending": "dim"}  # fmt: skip
SUBMIT_FIELDS = (
    "name",
    "requirements",
    "language",
    "priority",
    "pipeline",
    "request_id",
    "labels",
    "wait_for_models",
    "pipeline_definition",
)


JSON_HELP = "as JSON, as the REST API writes it"


class UsageError(ValueError):
    """Bad command-line input, reported without a traceback."""


def _wf_state(state: int) -> str:
    return workflow_pb2.WorkflowState.Name(state).removeprefix("WORKFLOW_STATE_").lower()


def _task_state(state: int) -> str:
    return cluster_pb2.TaskState.Name(state).removeprefix("TASK_STATE_").lower()


def _styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _cut(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` on a terminal, where a table must fit; whole elsewhere."""
    return text[:chars] if on_terminal() else text


def build_request(args: argparse.Namespace) -> workflow_pb2.SubmitWorkflowRequest:
    """The request from a workflow JSON file (the seed's format) and flags; flags win."""
    data: dict[str, Any] = {}
    if args.file:
        try:
            loaded = json.loads(Path(args.file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{args.file}: cannot read a workflow from it: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{args.file}: expected a JSON object")
        unknown = set(loaded) - set(SUBMIT_FIELDS)
        if unknown:
            raise UsageError(
                f"{args.file}: unknown field(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(SUBMIT_FIELDS)}"
            )
        data.update(loaded)
    for key in ("name", "requirements", "language", "priority", "pipeline", "request_id"):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    priority = data.get("priority", "normal")
    if isinstance(priority, str):
        if priority.lower() not in PRIORITIES:
            raise UsageError(f"priority: {priority!r} is not one of {', '.join(PRIORITIES)}")
        priority = PRIORITIES[priority.lower()]
    labels = data.get("labels", {})
    if not isinstance(labels, dict):
        raise UsageError("labels: expected an object of strings")
    if getattr(args, "wait_for_models", False):
        data["wait_for_models"] = True
    definition = data.get("pipeline_definition")
    if getattr(args, "pipeline_file", None):
        definition = _pipeline_file(args.pipeline_file)
    if definition is not None and not isinstance(definition, dict):
        raise UsageError("pipeline_definition: expected an object (a pipeline template)")
    return workflow_pb2.SubmitWorkflowRequest(
        name=str(data.get("name", "")),
        requirements=str(data.get("requirements", "")),
        language=str(data.get("language", "")),
        priority=priority,
        pipeline=str(data.get("pipeline", "")),
        request_id=str(data.get("request_id", "")),
        labels={str(k): str(v) for k, v in labels.items()},
        wait_for_models=bool(data.get("wait_for_models", False)),
        pipeline_definition=json.dumps(definition) if definition is not None else "",
    )


def _pipeline_file(path: str) -> Any:
    """A pipeline template file (YAML, as in HIVE_PIPELINES, or JSON), as an object; the
    coordinator checks it. A template without a name takes the file's."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read a pipeline from it: {exc}") from None
    if isinstance(data, dict):
        data.setdefault("name", Path(path).stem)
    return data


def stage_table(wf: workflow_pb2.Workflow) -> Table:
    title = escape(f"{wf.id}  {wf.name}  [{_wf_state(wf.state)}]")
    table = Table(title=title, title_justify="left")
    for column in ("stage", "type", "model", "state", "nodes", "tokens", "seconds", "note"):
        table.add_column(column)
    for stage in wf.stages:
        nodes = sorted({t.node for t in stage.tasks if t.node})
        tokens = sum(t.stats.eval_count for t in stage.tasks)
        seconds = ""
        if stage.HasField("started_at") and stage.HasField("finished_at"):
            ns = stage.finished_at.ToNanoseconds() - stage.started_at.ToNanoseconds()
            seconds = f"{ns / 1e9:.1f}"
        note = stage.verdict.replace("_", " ") or stage.error
        if stage.iteration:
            note = f"iteration {stage.iteration + 1}" + (f"; {note}" if note else "")
        table.add_row(
            stage.name,
            common_pb2.TaskType.Name(stage.type).removeprefix("TASK_TYPE_").lower(),
            stage.model,
            _styled(_task_state(stage.state)),
            ", ".join(nodes),
            str(tokens or ""),
            seconds,
            _cut(note, 60),
        )
    return table


def progress_line(event: workflow_pb2.WatchWorkflowResponse) -> str:
    """One WatchWorkflow event as one line for a log: its time, the workflow, what
    happened (``2025-01-05T10:00:01.250000Z wf-1a2b stage review succeeded``)."""
    wf = event.workflow
    kind = event.type
    if kind in (
        workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_ASSIGNED,
        workflow_pb2.WORKFLOW_EVENT_TYPE_TASK_FINISHED,
    ):
        t = event.task
        what = _task_words(t.task_id, t.state, t.node, t.endpoint_id, t.model, t.error)
    elif kind == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING:
        what = f"stage {event.message}"  # "review waits for a node with model 'x'"
    elif kind in (
        workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_STARTED,
        workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_FINISHED,
    ):
        stage = next((s for s in wf.stages if s.name == event.stage), None)
        if kind == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_STARTED:
            what = f"stage {event.stage} started"
        else:
            what = f"stage {event.stage} {_task_state(stage.state) if stage else 'finished'}"
        # The engine's own line says more ("stage review started (3 reviewers)").
        if event.message.startswith(what):
            what = event.message
        elif event.message:
            what += f": {event.message}"
    else:  # the snapshot, the workflow's state, and whatever a newer coordinator sends
        what = _wf_state(wf.state)
        if event.stage:
            what = f"stage {event.stage}"
        if event.message:
            what += f": {event.message}"
    return rest_line(event.at, wf.id, what)


def history_lines(wf: workflow_pb2.Workflow) -> list[str]:
    """What a snapshot says had already happened, one line each in the order it happened:
    the tasks and stages that finished before the watch began (a quick stage can finish
    between SubmitWorkflow and WatchWorkflow; its events went to no one)."""
    done: list[tuple[int, int, int, timestamp_pb2.Timestamp, str]] = []
    for order, stage in enumerate(wf.stages):
        for task in stage.tasks:
            if ns := task.finished_at.ToNanoseconds():
                what = _task_words(
                    task.task_id, task.state, task.node, task.endpoint_id, stage.model, task.error
                )
                done.append((ns, order, 0, task.finished_at, what))
        if ns := stage.finished_at.ToNanoseconds():
            what = f"stage {stage.name} {_task_state(stage.state)}"
            # At the same instant, a stage's line comes after its tasks'.
            done.append((ns, order, 1, stage.finished_at, what))
    done.sort(key=lambda d: d[:3])
    return [rest_line(at, wf.id, what) for *_, at, what in done]


def _task_words(task_id: str, state: int, node: str, endpoint: str, model: str, error: str) -> str:
    where = f" on {node}/{endpoint}" if node else ""
    return f"task {task_id} {_task_state(state)}{where} ({model}){f': {error}' if error else ''}"


def rest_line(at: timestamp_pb2.Timestamp, wf_id: str, what: str) -> str:
    """One line of a log: when, which workflow, what (on one line)."""
    return f"{rest_time(at) or '-'} {wf_id} {' '.join(what.splitlines())}"


async def follow(
    stub: workflow_pb2_grpc.WorkflowServiceAsyncStub, wf_id: str, console: Console
) -> workflow_pb2.Workflow:
    """Follow the workflow until it ends; return it in full. On a terminal the stage table
    is redrawn in place; elsewhere each event is one line of its own, as it comes."""
    watch = stub.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(id=wf_id))
    if not console.is_terminal:
        async for event in watch:
            lines = [progress_line(event)]
            if event.type == workflow_pb2.WORKFLOW_EVENT_TYPE_SNAPSHOT:
                lines += history_lines(event.workflow)
            for line in lines:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            console.file.flush()
    else:
        log: list[str] = []
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            async for event in watch:
                if event.message:
                    log.append(event.message)
                live.update(
                    Group(stage_table(event.workflow), Text("\n".join(log[-6:]), style="dim"))
                )
    response = await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=wf_id))
    return response.workflow


def cmd_submit(args: argparse.Namespace) -> int:
    request = build_request(args)
    console = table_console(stderr=args.json)  # with --json, stdout holds the JSON alone

    async def main() -> int:
        async with client_channel(args.coordinator) as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
            response = await stub.SubmitWorkflow(request, timeout=30)
            wf = response.workflow
            verb = "accepted" if response.created else "already accepted (same request_id)"
            console.print(f"workflow [bold]{wf.id}[/bold] {verb}: {wf.name} ({wf.pipeline})")
            if args.no_wait:
                if args.json:
                    print_json(schemas.workflow_from_proto(wf))
                return 0
            final = await follow(stub, wf.id, console)
            if args.json:
                print_json(schemas.workflow_from_proto(final))
            else:
                if not console.is_terminal:  # the lines said what happened; now the whole
                    console.print(stage_table(final))
                _print_result(final, console)
            return 0 if final.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED else 1

    return asyncio.run(main())


def _print_result(wf: workflow_pb2.Workflow, console: Console) -> None:
    state = _wf_state(wf.state)
    line = Text(f"{wf.id} {state}", style=STATE_STYLE.get(state, ""))
    if wf.error:
        line.append(f" {wf.error}")
    console.print(line)
    if wf.artifacts:
        console.print(f"{len(wf.artifacts)} artifacts: " + ", ".join(a.path for a in wf.artifacts))
        console.print(f"export them with: hive workflow export {wf.id} DIR")


def cmd_workflows(args: argparse.Namespace) -> int:
    state = 0
    if args.state:
        if args.state not in STATES:
            raise UsageError(f"--state: {args.state!r} is not one of {', '.join(STATES)}")
        state = STATES[args.state]

    async def main() -> tuple[list[workflow_pb2.Workflow], str]:
        out: list[workflow_pb2.Workflow] = []
        token = ""
        async with client_channel(args.coordinator) as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
            while len(out) < args.limit:
                page = await stub.ListWorkflows(
                    workflow_pb2.ListWorkflowsRequest(
                        state=state,  # type: ignore[arg-type]
                        page_size=min(100, args.limit - len(out)),
                        page_token=token,
                    ),
                    timeout=30,
                )
                out.extend(page.workflows)
                token = page.next_page_token
                if not token:
                    break
        return out, token

    workflows, more = asyncio.run(main())
    if args.json:  # as GET /api/distributed/workflows: summaries, and where the list goes on
        print_json(
            schemas.WorkflowList(
                workflows=[schemas.workflow_summary_from_proto(w) for w in workflows],
                next_page_token=more,
            )
        )
        return 0
    table = Table()
    for column in ("id", "name", "pipeline", "state", "stages", "created"):
        table.add_column(column)
    for wf in workflows:
        done = sum(1 for s in wf.stages if s.state == cluster_pb2.TASK_STATE_SUCCEEDED)
        table.add_row(
            wf.id,
            _cut(wf.name, 40),
            wf.pipeline,
            _styled(_wf_state(wf.state)),
            f"{done}/{len(wf.stages)}",
            wf.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        )
    table_console().print(table)
    return 0


async def _get(address: str, wf_id: str) -> workflow_pb2.Workflow:
    async with client_channel(address) as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        response = await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=wf_id), timeout=30)
        return response.workflow


def export(wf: workflow_pb2.Workflow, directory: Path) -> list[Path]:
    """Write a workflow's artifacts under ``directory`` (plus workflow.json); refuse paths
    that would land outside it."""
    root = directory.resolve()
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for artifact in wf.artifacts:
        target = (root / artifact.path).resolve()
        if not target.is_relative_to(root):
            raise UsageError(f"artifact path {artifact.path!r} points outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(artifact.content)
        written.append(target)
    summary = schemas.workflow_from_proto(wf).model_dump(mode="json")
    for artifact in summary["artifacts"]:
        artifact.pop("content")
    (root / "workflow.json").write_text(json.dumps(summary, indent=2) + "\n")
    return written


def cmd_workflow(args: argparse.Namespace) -> int:
    if args.target == "export":
        if len(args.extra) != 2:
            raise UsageError("usage: hive workflow export ID DIR")
        wf = asyncio.run(_get(args.coordinator, args.extra[0]))
        written = export(wf, Path(args.extra[1]))
        print(f"wrote {len(written)} artifacts and workflow.json to {args.extra[1]}")
        return 0
    if args.extra:
        raise UsageError("usage: hive workflow ID [--json] | hive workflow export ID DIR")
    wf = asyncio.run(_get(args.coordinator, args.target))
    if args.json:  # as GET /api/distributed/workflows/ID
        print_json(schemas.workflow_from_proto(wf))
        return 0
    console = table_console()
    console.print(stage_table(wf))
    _print_result(wf, console)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    async def main() -> workflow_pb2.Workflow:
        async with client_channel(args.coordinator) as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
            response = await stub.CancelWorkflow(
                workflow_pb2.CancelWorkflowRequest(id=args.id, reason=args.reason), timeout=60
            )
            return response.workflow

    wf = asyncio.run(main())
    print(f"{wf.id}: {_wf_state(wf.state)}")
    return 0


def _guard(func: Any) -> Any:
    """Report usage errors as one line and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            result: int = func(args)
            return result
        except UsageError as exc:
            print(f"hive: {exc}", file=sys.stderr)
            return 2

    return run


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count, a limit)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: Any) -> None:
    """Add the workflow commands to `hive`'s subcommand parser."""
    p = sub.add_parser("submit", help="submit a workflow and follow it live")
    p.add_argument("file", nargs="?", help="workflow JSON (name, requirements, language, ...)")
    p.add_argument("--name")
    p.add_argument("--requirements")
    p.add_argument("--language")
    p.add_argument("--priority", help="low, normal or high")
    p.add_argument("--pipeline", help="pipeline template (default: full)")
    p.add_argument(
        "--pipeline-file",
        metavar="FILE",
        help="a pipeline of your own (YAML or JSON, as in docs/workflows.md) instead of --pipeline",
    )
    p.add_argument(
        "--wait-for-models",
        action="store_true",
        help="accept it even when a stage's model is on no node: that stage waits for one "
        "(otherwise such a workflow is refused, naming the stage and the model)",
    )
    p.add_argument("--request-id", dest="request_id", help="makes retries idempotent")
    p.add_argument("--no-wait", action="store_true", help="return once accepted")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the final workflow as JSON, as the REST API writes it (progress on stderr)",
    )
    coordinators.add_argument(p)
    p.set_defaults(func=_guard(cmd_submit))

    p = sub.add_parser("workflows", help="list workflows, newest first")
    p.add_argument("--state", help=", ".join(STATES))
    p.add_argument("--limit", type=positive_int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    coordinators.add_argument(p)
    p.set_defaults(func=_guard(cmd_workflows))

    p = sub.add_parser("workflow", help="show a workflow, or `export ID DIR` its artifacts")
    p.add_argument("target", help="workflow id, or export")
    p.add_argument("extra", nargs="*", help="for export: ID DIR")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    coordinators.add_argument(p)
    p.set_defaults(func=_guard(cmd_workflow))

    p = sub.add_parser("cancel", help="cancel a workflow")
    p.add_argument("id")
    p.add_argument("--reason", default="")
    coordinators.add_argument(p)
    p.set_defaults(func=_guard(cmd_cancel))
