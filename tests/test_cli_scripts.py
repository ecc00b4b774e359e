"""``hive`` in scripts (issue 21), each command run as a real process with its output into
a pipe, against a real dev cluster: ``--json`` in the REST API's conventions (the same
document the REST API answers, where it has one), tables never cut off a terminal, ``hive
submit`` one complete line per event, ``hive watch`` with the cluster's task events and a
workflow's events in the order they happened, ``hive check`` finding /metrics where the
coordinator says it is, one way to name a coordinator (``--coordinator`` on ``hive health``
too, the environment in every ``--help``), ``hive tokens join create`` naming the real
enrolment address."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from hive import pki
from hive.cli import build_parser
from hive.cli.dev import DevCluster
from hive.cli.workflows import build_request, follow
from hive.config import TlsSettings
from hive.coordinators import client_channel
from hive.v1 import workflow_pb2, workflow_pb2_grpc
from tests.conftest import FAST, fast_cluster, running_dev

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "workflows" / "rest-api-microservices.json"
API = "/api/distributed"
# An ISO time as the REST API writes it (pydantic: RFC 3339, UTC as Z).
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that names a cluster or a width."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_") and k != "COLUMNS"}
    return {**env, **extra}


def hive(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hive ARGS`` as a process, stdout and stderr pipes (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "hive.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or clean_env(),
        timeout=120,
        check=False,
    )


async def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(hive, *args, env=env)


def loads(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def no_protobuf_json(data: Any, where: str = "$") -> None:
    """Nothing in ``data`` looks like protobuf's JSON: no enum as its full constant name
    (``WORKFLOW_STATE_SUCCEEDED``), no integer as a string (``"3312915304"``)."""
    if isinstance(data, dict):
        for key, value in data.items():
            no_protobuf_json(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            no_protobuf_json(value, f"{where}[{i}]")
    elif isinstance(data, str):
        assert not re.fullmatch(r"[A-Z]+(_[A-Z]+)+", data), f"{where}: enum constant {data!r}"
        assert not (where.endswith(("_ns", "_bytes", "_count")) and data.isdigit()), where


async def test_json_is_what_the_rest_api_writes(tmp_path: Path) -> None:
    """``--json`` on every command that reads something: the REST API's own document where
    it has one (workflow, workflows), its conventions everywhere (states as words, numbers
    as numbers, zero values present, RFC 3339 times)."""
    async with running_dev(gateway_port=0) as dev:
        assert dev.gateway is not None
        target = ("--coordinator", dev.coordinator_address)
        submitted = await run("submit", str(WORKFLOW), "--pipeline", "quick", "--json", *target)
        wf = loads(submitted)
        assert wf["state"] == "succeeded" and wf["priority"] == "normal", wf
        task = wf["stages"][0]["tasks"][0]
        assert isinstance(task["stats"]["total_duration_ns"], int)
        assert RFC3339.match(wf["created_at"]) and RFC3339.match(task["finished_at"])
        no_protobuf_json(wf)

        async with httpx.AsyncClient(base_url=dev.gateway.url) as http:
            rest_wf = (await http.get(f"{API}/workflows/{wf['id']}")).json()
            rest_list = (await http.get(f"{API}/workflows")).json()
        shown = loads(await run("workflow", wf["id"], "--json", *target))
        assert shown == rest_wf == wf
        listed = loads(await run("workflows", "--json", *target))
        assert listed == rest_list and listed["workflows"][0]["id"] == wf["id"]

        status = loads(await run("status", "--json", *target))
        assert status["summary"]["nodes_healthy"] == 5
        assert isinstance(status["summary"]["vram_total_bytes"], int)
        assert status["summary"]["queued_tasks"] == 0  # a zero value, present
        assert {n["state"] for n in status["nodes"]} == {"healthy"}
        assert all(RFC3339.match(n["last_heartbeat"]) for n in status["nodes"])
        no_protobuf_json(status)

        explained = loads(await run("explain", task["task_id"], "--json", *target))
        assert explained["task_id"] == task["task_id"]
        assert explained["decision"]["chosen_node"] == task["node"]
        assert isinstance(explained["estimated_prompt_tokens"], int)
        assert "rejected" in explained["decision"]  # present even when empty
        no_protobuf_json(explained)

        plan = loads(await run("optimize", "--dry-run", "--json", *target))
        assert plan["applied"] is False and isinstance(plan["deferred"], list)
        assert all(f["severity"] in ("info", "warning", "critical") for f in plan["findings"])

        assert loads(await run("nodes", "revoked", "--json", *target)) == {"nodes": []}
        assert loads(await run("tokens", "join", "list", "--json", *target)) == {"tokens": []}
        health = loads(await run("health", "--json", *target))
        assert health == {
            "target": dev.coordinator_address,
            "healthy": True,
            "status": "serving",
            "detail": "",
        }


async def test_tables_off_a_terminal_are_never_cut() -> None:
    """Into a pipe, a table is as wide as its cells: a long token name and every id whole
    (a table cut at 80 columns showed ``tok-0f3ad2a92…``)."""
    name = "the nightly release pipeline's read-only token for the dashboards and the alerts"
    async with running_dev() as dev:
        assert dev.coordinator is not None
        token, _ = await dev.coordinator.access.create_api_token(name.strip(), "read")
        shown = await run("tokens", "list", "--coordinator", dev.coordinator_address)
    assert shown.returncode == 0, shown.stderr
    assert token.id in shown.stdout and name.strip() in shown.stdout, shown.stdout
    assert "…" not in shown.stdout


async def test_submit_off_a_terminal_writes_one_whole_line_per_event() -> None:
    """Into a pipe, ``hive submit`` writes each progress event as a line of its own, with
    its time and the workflow's id, then the stages and the result: no redraws, no two
    lines run together."""
    async with running_dev() as dev:
        done = await run(
            "submit", str(WORKFLOW), "--pipeline", "quick", "--coordinator", dev.coordinator_address
        )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\r" not in out and "\x1b" not in out and out.endswith("\n")
    wf_id = re.search(r"workflow (wf-\S+) accepted", out)
    assert wf_id is not None, out
    events = [line for line in out.splitlines() if RFC3339.match(line.split(" ", 1)[0] or "-")]
    assert all(line.split(" ")[1] == wf_id[1] for line in events), events
    said = [line.split(" ", 2)[2] for line in events]
    assert said[-1] == "succeeded", said
    for stage in ("generate", "review"):
        assert f"stage {stage} succeeded" in said, said
    assert any(re.fullmatch(r"task \S+ succeeded on \S+/\S+ \(\S+\)", s) for s in said), said
    # The result has a line of its own (it used to run on after the last event's).
    lines = out.splitlines()
    assert f"{wf_id[1]} succeeded" in lines[lines.index(events[-1]) + 1 :], out


async def test_following_a_workflow_late_still_tells_what_already_finished() -> None:
    """A stage that finished between SubmitWorkflow and WatchWorkflow is told from the
    watch's snapshot, at the time it finished, in order: CI once saw ``hive submit`` of the
    quick pipeline go from "running" straight to the review (the instant emulators had
    finished the generate stage before the watch began)."""
    async with running_dev() as dev:
        async with client_channel(dev.coordinator_address) as channel:
            stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
            args = build_parser().parse_args(["submit", str(WORKFLOW), "--pipeline", "quick"])
            submitted = await stub.SubmitWorkflow(build_request(args), timeout=30)
            wf_id = submitted.workflow.id
            for _ in range(200):  # until the whole workflow is done: all of it happened before
                got = (await stub.GetWorkflow(workflow_pb2.GetWorkflowRequest(id=wf_id))).workflow
                if got.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED:
                    break
                await asyncio.sleep(0.05)
            assert got.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED, got
            out = io.StringIO()
            console = Console(file=out, force_terminal=False, width=80)
            await follow(stub, wf_id, console)
    lines = out.getvalue().splitlines()
    said = [line.split(" ", 2)[2] for line in lines]
    assert said[0] == "succeeded", said  # the snapshot, as before
    stages = [s for s in said if s.startswith("stage ")]
    assert stages == ["stage generate succeeded", "stage review succeeded"], said
    tasks = [i for i, s in enumerate(said) if s.startswith("task ")]
    assert tasks and tasks[0] < said.index("stage generate succeeded"), said
    assert all(
        re.fullmatch(r"task \S+ succeeded on \S+/\S+ \(qwen2\.5-coder:7b\)", said[i]) for i in tasks
    ), said
    times = [line.split(" ", 1)[0] for line in lines[1:]]
    assert all(RFC3339.match(t) for t in times) and times == sorted(times), lines


async def test_submit_sends_a_pipeline_file_and_may_wait_for_its_models(tmp_path: Path) -> None:
    """``hive submit --pipeline-file`` sends a template of one's own; one needing a model no
    node has is refused naming stage and model, or queued with ``--wait-for-models``, and
    the wait is a line of its own."""
    own = tmp_path / "draft_only.yaml"
    own.write_text(
        "stages:\n  - {name: draft, type: code_generation, model: qwen2.5-coder:7b, prompt: x}\n"
    )
    absent = tmp_path / "absent.yaml"
    absent.write_text(
        "stages:\n  - {name: draft, type: code_generation, model: gemma2:9b, prompt: x}\n"
    )
    async with running_dev() as dev:
        where = ("--coordinator", dev.coordinator_address)
        ran = loads(
            await run("submit", str(WORKFLOW), "--pipeline-file", str(own), "--json", *where)
        )
        assert ran["pipeline"] == "draft_only" and ran["state"] == "succeeded", ran
        assert [(s["name"], s["state"]) for s in ran["stages"]] == [("draft", "succeeded")]
        refused = await run("submit", str(WORKFLOW), "--pipeline-file", str(absent), *where)
        assert refused.returncode != 0
        assert "'draft'" in refused.stderr and "'gemma2:9b'" in refused.stderr, refused.stderr
        queued = await run(
            "submit", str(WORKFLOW), "--pipeline-file", str(absent), "--wait-for-models",
            "--no-wait", "--json", *where,
        )  # fmt: skip
        wf = loads(queued)
        assert wf["wait_for_models"] is True and wf["pipeline"] == "absent"
        bad = await run("submit", str(WORKFLOW), "--pipeline-file", str(tmp_path / "nope"), *where)
        assert bad.returncode == 2 and "nope" in bad.stderr


def test_the_emulator_explains_itself_under_its_own_name() -> None:
    done = hive("emulator", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: hive emulator")
    text = " ".join(done.stdout.split())
    assert "0 instant" in text and "OLLAMA_NUM_PARALLEL" in text and "example:" in text


async def test_watch_shows_task_events_and_replays_a_workflow_in_order() -> None:
    """``hive watch`` with no id shows the cluster's tasks as they run, workflows' too; a
    finished workflow watched by id replays its stages in the order they happened, each
    event with its own time."""
    async with running_dev(gateway_port=0) as dev:
        assert dev.gateway is not None
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hive.cli", "watch", "--json", "--gateway", dev.gateway.url,
            cwd=ROOT, env=clean_env(), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watcher.stdout is not None
        try:
            async with asyncio.timeout(30):
                while json.loads(await watcher.stdout.readline())["type"] != "subscribed":
                    pass
            done = await run(
                "submit", str(WORKFLOW), "--pipeline", "quick", "--json",
                "--coordinator", dev.coordinator_address,
            )  # fmt: skip
            wf = loads(done)
            tasks = {t["task_id"] for s in wf["stages"] for t in s["tasks"]}
            seen: dict[str, set[str]] = {}
            flow: list[tuple[str, str]] = []  # the workflow's own progress: (stage, state)
            async with asyncio.timeout(30):
                while any(seen.get(t) != {"running", "succeeded"} for t in tasks) or (
                    ("", "succeeded") not in flow
                ):
                    event = json.loads(await watcher.stdout.readline())
                    if event["type"] == "task" and event["task_id"] in tasks:
                        seen.setdefault(event["task_id"], set()).add(event["state"])
                        assert event["node"] and event["model"], event
                    if event["type"] == "workflow_changed" and event["workflow_id"] == wf["id"]:
                        flow.append((event["stage"], event["state"]))
            # Each stage started and finished, in order, and the workflow ran and ended.
            for stage in ("generate", "review"):
                assert flow.index((stage, "running")) < flow.index((stage, "succeeded")), flow
            assert flow.index(("generate", "succeeded")) < flow.index(("review", "running"))
            assert flow[-1] == ("", "succeeded") and ("", "running") in flow, flow
        finally:
            watcher.terminate()
            await watcher.wait()

        replay = await run(
            "watch", wf["id"], "--no-cluster", "--json", "--gateway", dev.gateway.url
        )
    assert replay.returncode == 0, replay.stderr
    events = [json.loads(line) for line in replay.stdout.splitlines()]
    stages = [e for e in events if e["type"] in ("stage_started", "stage_finished")]
    assert [(e["type"], e["stage"]) for e in stages] == [
        (kind, s["name"]) for s in wf["stages"] for kind in ("stage_started", "stage_finished")
    ]
    times = [datetime.fromisoformat(e["at"]) for e in stages]
    assert times == sorted(times) and len(set(times)) > 1, stages
    # Each its own time, not the replay's: a stage started before its first task did.
    first_task = {
        s["name"]: datetime.fromisoformat(s["tasks"][0]["started_at"]) for s in wf["stages"]
    }
    for event, when in zip(stages, times, strict=True):
        if event["type"] == "stage_started":
            assert when <= first_task[event["stage"]], (event, first_task)


async def test_check_finds_metrics_where_the_coordinator_serves_them() -> None:
    """With no --metrics-url, ``hive check`` asks the coordinator for its /metrics address
    (here every interface, a port chosen at start) instead of assuming port 9101."""
    async with running_dev(metrics_listen="0.0.0.0:0") as dev:
        assert dev.coordinator is not None and dev.coordinator.metrics_server is not None
        port = dev.coordinator.metrics_server.port
        done = await run(
            "check", "--single-test", "health", "--gateway", "none", "--json",
            "--coordinator", dev.coordinator_address,
        )  # fmt: skip
    report = loads(done)
    assert report["metrics_url"] == f"http://127.0.0.1:{port}/metrics"
    assert report["passed"] is True, report
    health = report["checks"][0]
    assert health["status"] == "pass" and any(
        f":{port}/metrics: 200" in d for d in health["details"]
    )


async def test_health_takes_coordinator_as_every_command_does() -> None:
    async with running_dev() as dev:
        address = dev.coordinator_address
        flag = await run("health", "--coordinator", address)
        positional = await run("health", address)  # deprecated, still working
        env = await run("health", env=clean_env(HIVE_COORDINATOR=address))
        both = await run("health", "127.0.0.1:1", "--coordinator", address)
    for done in (flag, positional, env):
        assert done.returncode == 0 and done.stdout == f"{address}: SERVING\n", done
    assert both.returncode == 2 and "give one" in both.stderr


def _options(parser: argparse.ArgumentParser, path: str = "hive") -> list[tuple[str, Any]]:
    """Every option of every command: (command path, argparse action)."""
    found: list[tuple[str, Any]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{path} {name}")
        elif action.option_strings:
            found.append((path, action))
    return found


def test_every_coordinator_and_gateway_option_names_its_environment_variable() -> None:
    """``--coordinator`` and ``--gateway`` say which variable sets their default (the
    ``hive dev`` flag is the address it listens on, and ``certs enroll``'s the enrolment
    port, which no variable sets); ``hive --help`` lists the variables."""
    options = _options(build_parser())
    named = {"--coordinator": "$HIVE_COORDINATOR", "--gateway": "$HIVE_GATEWAY"}
    exempt = {("hive dev", "--gateway"), ("hive certs enroll", "--coordinator")}
    checked = 0
    for path, action in options:
        for flag, variable in named.items():
            if flag in action.option_strings and (path, flag) not in exempt:
                assert variable in (action.help or ""), f"{path} {flag}: {action.help}"
                checked += 1
    assert checked > 20
    top = hive("--help")
    for variable in ("HIVE_COORDINATOR", "HIVE_GATEWAY", "HIVE_TOKEN", "HIVE_TLS_DIR"):
        assert variable in top.stdout


@contextlib.asynccontextmanager
async def secured_dev(tmp_path: Path) -> AsyncIterator[tuple[DevCluster, dict[str, str]]]:
    """A cluster with mutual TLS, API tokens and enrolment on a port chosen at start; the
    environment that lets ``hive`` in as admin."""
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
        gateway_port=None,
        time_scale=0.0,
        tls_dir=str(tls_dir),
    )
    try:
        await dev.start()
        await dev.wait_registered(timeout=10)
        dev.security("admin")  # issues admin.pem for the CLI
        admin = (Path(dev.cluster.coordinator.state_path).parent / "admin.token").read_text()
        yield (
            dev,
            clean_env(
                HIVE_TLS_DIR=str(tls_dir),
                HIVE_TOKEN=admin.strip(),
                HIVE_COORDINATOR=dev.coordinator_address,
            ),
        )
    finally:
        await dev.stop()


async def test_join_token_names_the_enrolment_address_the_coordinator_serves(
    tmp_path: Path,
) -> None:
    async with secured_dev(tmp_path) as (dev, env):
        assert dev.coordinator is not None and dev.coordinator.enroll_port
        done = await run("tokens", "join", "create", "--node", "NEWBIE", env=env)
        enroll = f"127.0.0.1:{dev.coordinator.enroll_port}"
    assert done.returncode == 0, done.stderr
    assert f"hive certs enroll NEWBIE --coordinator {enroll} " in done.stderr, done.stderr
    assert done.stdout.strip()  # the secret, alone on stdout


def test_grpc_core_logs_nothing_unless_asked(tmp_path: Path) -> None:
    """gRPC core's own INFO lines ("I1205 ... Got goaway", a failed TLS handshake) are not
    in a daemon's output unless the operator sets GRPC_VERBOSITY, which still works."""
    tls = tmp_path / "tls"
    for args in (("certs", "init"), ("certs", "issue", "coordinator")):
        assert hive(*args, "--dir", str(tls)).returncode == 0
    (port,) = _free_ports(1)
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "coordinator:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  metrics_listen: 'off'\n"
        "  tls: {ca: tls/ca.pem, cert: tls/coordinator.pem, key: tls/coordinator-key.pem}\n"
    )
    absl = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")
    for verbosity in ("", "INFO"):
        env = clean_env(**({"GRPC_VERBOSITY": verbosity} if verbosity else {}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "hive.cli", "coordinator", "--config", str(config)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            _plaintext_hello(port)  # a client without TLS: the handshake fails
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=60)
        lines = [line for line in out.splitlines() if absl.match(line)]
        if verbosity:
            assert lines, f"GRPC_VERBOSITY=INFO should still show gRPC's lines:\n{out}"
        else:
            assert lines == [], out


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _plaintext_hello(port: int) -> None:
    """Connect as soon as the port listens, say something that is not TLS, and wait for
    the server to hang up."""
    import socket
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with contextlib.suppress(OSError):
                    s.recv(1024)
            time.sleep(0.5)  # the server logs the failed handshake
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
