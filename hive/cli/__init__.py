"""The `hive` command: run the daemons, the dev cluster, and talk to a running cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

# gRPC core logs through absl at INFO unless told otherwise: a stray "I1205 ...
# chttp2_transport.cc ... Got goaway" at shutdown, a line per failed TLS handshake, beside
# the processes' own logs, which say what matters. GRPC_VERBOSITY set by the operator
# (INFO, DEBUG, with GRPC_TRACE) still wins. Before grpc is imported: it reads it then.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from hive import __version__, coordinators
from hive.config import (
    ConfigError,
    load_agent_config,
    load_cluster_config,
    print_schema,
    read_token_file,
    seed_cluster,
)
from hive.console import print_json, wide_console
from hive.coordinators import client_channel
from hive.pki import CertPaths, PkiError
from hive.serving import tune_gc_for_serving
from hive.tls import HOW_TO_SECURE, InsecureRefused, Security
from hive.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2, inference_pb2, inference_pb2_grpc

GIB = 1 << 30


def _run_until_signal(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run a long-lived coroutine (a daemon: coordinator, agent, gateway, dev cluster);
    Ctrl-C or SIGTERM cancel it and let it clean up."""
    tune_gc_for_serving()

    async def runner() -> None:
        task = asyncio.create_task(main())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(runner())
    return 0


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --- daemons ---------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    from hive import pgtemp
    from hive.cli.dev import DevCluster

    if args.coordinators > 1 and (reason := pgtemp.missing_reason()):
        print(
            f"hive dev --coordinators {args.coordinators}: needs PostgreSQL: {reason}",
            file=sys.stderr,
        )
        return 2
    cluster = load_cluster_config(args.cluster) if args.cluster else seed_cluster()
    host, _, port = args.gateway.rpartition(":")

    async def main() -> None:
        dev = DevCluster(
            cluster,
            coordinator_listen=args.listen,
            gateway_host=host,
            gateway_port=None if args.no_gateway else int(port),
            time_scale=args.time_scale,
            metrics_listen=None if args.metrics_listen == "off" else args.metrics_listen,
            coordinators=args.coordinators,
        )
        try:
            print(
                "hive dev: INSECURE mode: plaintext gRPC, no certificates, no API tokens "
                "(a one-machine development cluster; see docs/security.md for a secured one)",
                flush=True,
            )
            await dev.start()
            await dev.wait_registered()
            print(dev.describe(), flush=True)
            await asyncio.Event().wait()
        finally:
            print("stopping the dev cluster...", flush=True)
            await dev.stop()
            print("stopped.", flush=True)

    return _run_until_signal(main)


def cmd_coordinator(args: argparse.Namespace) -> int:
    import dataclasses

    from coordinator.server import serve
    from coordinator.state_lock import StateLocked
    from coordinator.workflows.store import StateFileError
    from hive.config import check_store, store_with_password

    config = load_cluster_config(args.config)
    if args.store:  # --store, else $HIVE_STORE: overrides coordinator.store
        try:
            check_store(args.store)
        except ValueError as exc:
            print(f"hive coordinator: --store / HIVE_STORE: {exc}", file=sys.stderr)
            return 2
        settings = dataclasses.replace(config.coordinator, store=args.store)
        config = dataclasses.replace(config, coordinator=settings)
    if args.store_password_file:  # a Docker secret, or a file only the hive user reads
        try:
            password = Path(args.store_password_file).read_text().rstrip("\r\n")
            store = store_with_password(config.coordinator.store, password)
        except (OSError, ValueError) as exc:
            print(
                f"hive coordinator: --store-password-file / HIVE_STORE_PASSWORD_FILE: {exc}",
                file=sys.stderr,
            )
            return 2
        settings = dataclasses.replace(config.coordinator, store=store)
        config = dataclasses.replace(config, coordinator=settings)
    if args.advertise:  # --advertise, else $HIVE_ADVERTISE: overrides coordinator.advertise
        settings = dataclasses.replace(config.coordinator, advertise=args.advertise)
        config = dataclasses.replace(config, coordinator=settings)
    try:
        config.coordinator.security(config.source, args.insecure)  # refuse before starting
        return _run_until_signal(lambda: serve(config, args.listen, insecure=args.insecure))
    except InsecureRefused as exc:
        print(f"hive coordinator: refusing to start: {exc}", file=sys.stderr)
        return 2
    except (StateLocked, StateFileError) as exc:
        print(f"hive coordinator: refusing to start: {exc}", file=sys.stderr)
        return 1


def cmd_agent(args: argparse.Namespace) -> int:
    from node_agent.agent import serve

    config = load_agent_config(args.config)
    try:
        config.security(args.insecure)  # refuse before starting
    except InsecureRefused as exc:
        print(f"hive agent: refusing to start: {exc}", file=sys.stderr)
        return 2
    return _run_until_signal(lambda: serve(config, insecure=args.insecure))


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from hive.asgi import AsgiServer
    from hive.sdnotify import Notifier

    host, _, port = args.listen.rpartition(":")
    log = logging.getLogger("hive.gateway")
    security: Security | None = None
    if args.tls_dir:
        try:
            security = Security.load(CertPaths.in_dir(args.tls_dir, args.tls_name))
        except (OSError, ValueError) as exc:
            raise ConfigError("--tls-dir", args.tls_name, str(exc)) from None
    elif not args.insecure:
        print(f"hive gateway: refusing to start: --tls-dir: {HOW_TO_SECURE}", file=sys.stderr)
        return 2
    else:
        log.warning("INSECURE: plaintext gRPC to the coordinator (--insecure)")
    service_token = None
    if args.token_file:
        service_token = read_token_file(args.token_file, args.token_file, "--token-file")
    https = None
    if bool(args.https_cert) != bool(args.https_key):
        print("hive gateway: --https-cert and --https-key go together", file=sys.stderr)
        return 2
    if args.https_cert:
        for flag, path in (("--https-cert", args.https_cert), ("--https-key", args.https_key)):
            if not Path(path).is_file():
                raise ConfigError(path, flag, "no such file")
        https = (args.https_cert, args.https_key)

    async def main() -> None:
        app = create_app(
            args.coordinator,
            security=security,
            service_token=service_token,
            protect_metrics=args.protect_metrics,
            direct=args.direct,
        )
        server = AsgiServer(app, host, int(port), https=https)
        await server.start()
        logging.getLogger("hive.gateway").info("gateway on %s -> %s", server.url, args.coordinator)
        try:
            async with Notifier.from_environ().serving(f"serving HTTP on port {server.port}"):
                await asyncio.Event().wait()
        finally:
            await server.stop()

    return _run_until_signal(main)


# --- clients ---------------------------------------------------------------------


def _state(state: int) -> str:
    return common_pb2.NodeState.Name(state).removeprefix("NODE_STATE_").lower()


def _short_gpu(name: str) -> str:
    for prefix in ("NVIDIA GeForce ", "NVIDIA ", "AMD Radeon ", "AMD "):
        name = name.removeprefix(prefix)
    return name


# A node's state in `hive status`: degraded (every endpoint unhealthy) stands out from
# healthy as suspect does, lost is red.
STATE_COLORS = {"healthy": "green", "degraded": "dark_orange", "suspect": "yellow", "lost": "red"}


def _endpoint_line(
    endpoint: common_pb2.OllamaEndpoint, sample: common_pb2.EndpointTelemetry | None
) -> str:
    """``id: loaded models``, or ``id: unhealthy (why)`` in red when the agent's last probe
    of it failed (what makes a node degraded when it is true of all of them)."""
    peer = f" (Hive cluster {endpoint.hive_cluster})" if endpoint.hive_cluster else ""
    if sample is not None and not sample.healthy:
        why = f" ({escape(sample.error)})" if sample.error else ""
        return f"{endpoint.id}{peer}: [red]unhealthy{why}[/red]"
    loaded = [m.name for m in sample.loaded_models] if sample is not None else []
    return f"{endpoint.id}{peer}: {', '.join(loaded) or '-'}"


def render_status(response: cluster_pb2.GetClusterStatusResponse, console: Console) -> None:
    title = f"Hive cluster {response.cluster_name}".rstrip()
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("node", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("gpus")
    table.add_column("vram", no_wrap=True, justify="right")
    table.add_column("util", no_wrap=True, justify="right")
    table.add_column("temp", no_wrap=True, justify="right")
    table.add_column("endpoints: loaded models")
    table.add_column("run", no_wrap=True, justify="right")
    for node in response.nodes:
        info, tel = node.info, node.telemetry
        total = sum(g.memory_total_bytes for g in info.gpus)
        used = sum(g.memory_used_bytes for g in tel.gpus)
        util = sum(g.utilization_percent for g in tel.gpus) / len(tel.gpus) if tel.gpus else 0.0
        temp = max((g.temperature_celsius for g in tel.gpus), default=0.0)
        gpu_names: dict[str, int] = {}
        for g in info.gpus:
            short = _short_gpu(g.name)
            gpu_names[short] = gpu_names.get(short, 0) + 1
        state = _state(node.state)
        color = STATE_COLORS.get(state, "white")
        if node.draining:
            state += ",drain"
        samples = {e.id: e for e in tel.endpoints}
        endpoints = "\n".join(_endpoint_line(e, samples.get(e.id)) for e in info.endpoints)
        table.add_row(
            info.name,
            f"[{color}]{state}[/{color}]",
            ", ".join(f"{n}x {name}" for name, n in gpu_names.items()),
            f"{used / GIB:.1f}/{total / GIB:.0f}G",
            f"{util:.0f}%",
            f"{temp:.0f}C" if tel.gpus else "-",
            endpoints,
            str(node.running_tasks),
        )
    console.print(table)
    s = response.summary
    degraded = f", {s.nodes_degraded} degraded" if s.nodes_degraded else ""
    console.print(
        f"{s.nodes_total} nodes ({s.nodes_healthy} healthy{degraded}), {s.gpus} GPUs, "
        f"{s.vram_total_bytes / GIB:.0f} GiB VRAM ({s.vram_used_bytes / GIB:.1f} GiB used), "
        f"{s.endpoints} Ollama endpoints, {s.running_tasks} tasks running"
    )
    console.print(f"models: {', '.join(s.models) or 'none'}")
    render_coordinators(response.coordinators, console)


# A coordinator's role in `hive status`: the leader stands out, a gone one (no sign of
# life for a lease) is red.
ROLE_COLORS = {"leader": "green", "standby": "white", "gone": "red"}


def render_coordinators(
    coordinators: Sequence[cluster_pb2.CoordinatorStatus], console: Console
) -> None:
    """One line for the only coordinator; a table when several share a PostgreSQL store
    (the leader first, with its epoch and lease age). Nothing from a coordinator that
    did not list them (an older one, or its store did not answer in time)."""
    if len(coordinators) == 1:
        c = coordinators[0]
        console.print(f"coordinator: {c.address} ({c.role}, epoch {c.epoch})")
        return
    if not coordinators:
        return
    table = Table(title="Coordinators", title_justify="left", expand=False)
    table.add_column("address", no_wrap=True)
    table.add_column("role", no_wrap=True)
    table.add_column("epoch", no_wrap=True, justify="right")
    table.add_column("lease age", no_wrap=True, justify="right")
    table.add_column("seen", no_wrap=True, justify="right")
    for c in coordinators:
        color = ROLE_COLORS.get(c.role, "white")
        table.add_row(
            c.address,
            f"[{color}]{c.role}[/{color}]",
            str(c.epoch),
            f"{c.lease_age_seconds:.1f}s" if c.role == "leader" else "-",
            f"{c.seen_age_seconds:.1f}s ago",
        )
    console.print(table)


def cmd_status(args: argparse.Namespace) -> int:
    async def main() -> cluster_pb2.GetClusterStatusResponse:
        async with client_channel(args.coordinator) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            return await stub.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=10)

    response = asyncio.run(main())
    if args.json:
        from gateway.schemas import cluster_status_from_proto

        print_json(cluster_status_from_proto(response))  # GET /api/distributed/cluster/status
    else:
        console = wide_console()
        render_status(response, console)
        from hive.cli.optimize import print_status_findings

        print_status_findings(args.coordinator, console)
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    async def main() -> cluster_pb2.DrainNodeResponse:
        async with client_channel(args.coordinator) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            return await stub.DrainNode(
                cluster_pb2.DrainNodeRequest(
                    node=args.node, drain=not args.undo, reason=args.reason
                ),
                timeout=10,
            )

    response = asyncio.run(main())
    print(f"{response.node.info.name}: draining={response.node.draining}")
    return 0


_ESTIMATE_SOURCES = {
    "learned_for_cap": "the mean answer of recent tasks of this type and model with this "
    "num_predict cap",
    "learned": "the mean answer of recent tasks of this type and model",
    "default": "the task type's default; nothing learned yet",
    "num_predict": "the request's num_predict cap",
}


def render_decision(response: cluster_pb2.ExplainTaskResponse, console: Console) -> None:
    decision = response.decision
    console.print(
        f"task {response.task_id} -> "
        f"[bold]{decision.chosen_node}/{decision.chosen_endpoint_id}[/bold]"
        " (lowest expected completion time, in seconds; lower is better)"
    )
    if len(response.via) > 1:
        console.print(f"came from another Hive cluster: via {' -> '.join(response.via)}")
    if response.output_estimate_source == "embedding":
        console.print(f"priced as {response.estimated_prompt_tokens} prompt tokens (an embedding)")
    elif response.estimated_output_tokens:
        console.print(
            f"priced as {response.estimated_prompt_tokens} prompt tokens and "
            f"{response.estimated_output_tokens} answer tokens "
            f"({_ESTIMATE_SOURCES.get(response.output_estimate_source, 'estimate')})"
        )
    if decision.candidates:
        names = [c.name for c in decision.candidates[0].components]
        table = Table(title="candidates", title_justify="left")
        table.add_column("endpoint", no_wrap=True)
        table.add_column("total", justify="right")
        for name in names:
            table.add_column(name, justify="right")
        for candidate in decision.candidates:
            table.add_row(
                f"{candidate.node}/{candidate.endpoint_id}",
                f"{candidate.total:.2f}",
                *(f"{c.value * c.weight:.2f}" for c in candidate.components),
            )
        console.print(table)
    for rejection in decision.rejected:
        where = f"{rejection.node}/{rejection.endpoint_id}".rstrip("/")
        console.print(f"  filtered {where}: {rejection.reason} ({rejection.detail})")


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull a model onto the cluster, a progress bar per endpoint (bytes of the layer it
    is pulling, then Ollama's status); exit 1 if any endpoint failed."""
    request = inference_pb2.PullRequest(
        model=args.model, endpoints=args.endpoint, insecure=args.insecure
    )

    async def main() -> list[str]:
        failed: list[str] = []
        columns = (
            TextColumn("{task.description:<20}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[status]}"),
        )
        with Progress(*columns, console=Console(stderr=True)) as progress:
            bars: dict[str, Any] = {}
            async with client_channel(args.coordinator) as channel:
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                async for step in stub.Pull(request, timeout=args.timeout):
                    if not step.endpoint:
                        progress.console.print(f"{args.model}: every endpoint has it already")
                        continue
                    bar = bars.get(step.endpoint)
                    if bar is None:
                        bar = bars[step.endpoint] = progress.add_task(
                            step.endpoint, total=None, status=""
                        )
                    if step.error:
                        failed.append(f"{step.endpoint}: {step.error}")
                        progress.update(bar, status=f"failed: {step.error}")
                    elif step.total:
                        progress.update(
                            bar, total=step.total, completed=step.completed, status=step.status
                        )
                    else:
                        progress.update(bar, status=step.status)
        return failed

    failed = asyncio.run(main())
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Remove a model from the endpoints that have it (``ollama rm``, cluster-wide)."""

    async def main() -> inference_pb2.DeleteResponse:
        async with client_channel(args.coordinator) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            ask = inference_pb2.DeleteRequest(model=args.model, endpoints=args.endpoint)
            return await stub.Delete(ask, timeout=60)

    reply = asyncio.run(main())
    done = f"removed from {', '.join(reply.deleted_from) or 'no endpoint'}"
    return _report(args.model, done, "remove", reply.failed)


def _report(model: str, done: str, verb: str, failed: Sequence[str]) -> int:
    """Print what a cluster-wide model command did and where it could not; 1 if it failed
    anywhere."""
    print(f"{model}: {done}")
    for line in failed:
        print(f"could not {verb}: {line}", file=sys.stderr)
    return 1 if failed else 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Unload a model from every endpoint that has it (``ollama stop``, cluster-wide)."""

    async def main() -> inference_pb2.UnloadResponse:
        async with client_channel(args.coordinator) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            return await stub.Unload(inference_pb2.UnloadRequest(model=args.model), timeout=60)

    reply = asyncio.run(main())
    done = f"unloaded on {len(reply.unloaded_from)} endpoints"
    return _report(args.model, done, "unload", reply.failed)


def cmd_explain(args: argparse.Namespace) -> int:
    async def main() -> cluster_pb2.ExplainTaskResponse:
        async with client_channel(args.coordinator) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            return await stub.ExplainTask(
                cluster_pb2.ExplainTaskRequest(task_id=args.task_id), timeout=10
            )

    response = asyncio.run(main())
    if args.json:
        print_json(response)
    else:
        render_decision(response, wide_console(120))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Stream one completion through the mesh, printing text as it arrives (a thinking
    model's reasoning goes to stderr, between "Thinking..." and "...done thinking.", as
    Ollama's CLI shows it, so stdout holds the answer alone)."""
    request = inference_pb2.GenerateRequest(
        model=args.model,
        prompt=args.prompt,
        system=args.system,
        think=args.think,
        format=args.format,
    )
    if args.num_predict:
        request.options.update({"num_predict": args.num_predict})

    async def main() -> int:
        thinking = False
        async with client_channel(args.coordinator) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            async for event in stub.Generate(request, timeout=args.timeout):
                if event.HasField("chunk") and event.chunk.thinking:
                    if not thinking:
                        print("Thinking...", file=sys.stderr)
                        thinking = True
                    sys.stderr.write(event.chunk.thinking)
                    sys.stderr.flush()
                if thinking and (event.HasField("result") or event.chunk.text):
                    print("\n...done thinking.\n", file=sys.stderr, flush=True)
                    thinking = False
                if event.HasField("assigned"):
                    a = event.assigned
                    print(
                        f"[task {a.task_id} on {a.node}/{a.endpoint_id}, attempt {a.attempt}]",
                        file=sys.stderr,
                        flush=True,
                    )
                elif event.HasField("chunk"):
                    sys.stdout.write(event.chunk.text)
                    sys.stdout.flush()
                elif event.HasField("result"):
                    st = event.result.stats
                    tps = (
                        st.eval_count / (st.eval_duration_ns / 1e9) if st.eval_duration_ns else 0.0
                    )
                    print(
                        f"\n[{st.prompt_eval_count} prompt + {st.eval_count} output tokens, "
                        f"{st.total_duration_ns / 1e9:.2f}s total, "
                        f"load {st.load_duration_ns / 1e9:.2f}s, "
                        f"{tps:.1f} tokens/s, {event.result.done_reason}]",
                        file=sys.stderr,
                    )
        return 0

    return asyncio.run(main())


def cmd_sim(args: argparse.Namespace, rest: list[str]) -> int:
    from coordinator.sim.cli import main

    result: int = main(rest)
    return result


def cmd_emulator(args: argparse.Namespace, rest: list[str]) -> int:
    from ollama_emulator.cli import main

    result: int = main(rest, prog="hive emulator")
    return result


def _coordinator_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= 9:
        raise argparse.ArgumentTypeError(f"{count}: between 1 and 9 coordinators")
    return count


ENVIRONMENT_HELP = """\
environment (the commands that talk to a running cluster):
  HIVE_COORDINATOR       the coordinator(s), host:port[,host:port...], for --coordinator
                         (default 127.0.0.1:50051)
  HIVE_GATEWAY           the gateway's URL, for --gateway (default http://127.0.0.1:8000)
  HIVE_TOKEN             the API token sent to the coordinator (a secured cluster)
  HIVE_TLS_DIR           ca.pem, NAME.pem and NAME-key.pem for TLS to the coordinator
  HIVE_TLS_NAME          NAME of that certificate (default admin)
  HIVE_COORDINATOR_NAME  the name the coordinator's certificate is checked for

--json writes what the REST API writes: states as words ("succeeded"), numbers as
numbers, every field present, times in RFC 3339 UTC. Output into a pipe or a file is
never cut to a width: one complete line per event, tables as wide as their cells."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hive",
        description="Hive mesh: many Ollama hosts, one cluster.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hive {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run a whole cluster on this machine (the seed's five nodes)")
    p.add_argument("--cluster", help="cluster YAML (default: the seed cluster)")
    p.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        help="coordinator gRPC address (several coordinators: this port and the next ones)",
    )
    p.add_argument(
        "--coordinators",
        type=_coordinator_count,
        default=1,
        metavar="N",
        help="run N coordinators on a throwaway PostgreSQL, one leading (high availability; "
        "needs Debian's postgresql package); default 1, on SQLite",
    )
    p.add_argument("--gateway", default="127.0.0.1:8000", help="gateway HTTP address")
    p.add_argument("--no-gateway", action="store_true")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply emulated load and generation times (0 = instant)",
    )
    p.add_argument(
        "--metrics-listen",
        default="127.0.0.1:9101",
        help="coordinator /metrics address (agents use port 0 on its host); off disables",
    )
    p.set_defaults(func=cmd_dev)

    insecure_help = "accept plaintext, unauthenticated gRPC (without it, TLS must be configured)"
    p = sub.add_parser("coordinator", help="run the coordinator")
    p.add_argument("--config", required=True, help="cluster YAML")
    p.add_argument("--listen", help="override coordinator.listen")
    p.add_argument(
        "--store",
        default=os.environ.get("HIVE_STORE"),
        help="state store: postgresql://user:password@host/db, sqlite:///path or a path "
        "(default $HIVE_STORE, else coordinator.store, else coordinator.state_path)",
    )
    p.add_argument(
        "--store-password-file",
        default=os.environ.get("HIVE_STORE_PASSWORD_FILE"),
        metavar="PATH",
        help="read the PostgreSQL store's password from this file (the whole file, one "
        "trailing newline ignored; e.g. a Docker secret), for a URL written without one "
        "(default $HIVE_STORE_PASSWORD_FILE)",
    )
    p.add_argument(
        "--advertise",
        default=os.environ.get("HIVE_ADVERTISE"),
        metavar="HOST:PORT",
        help="the address clients and agents use for this coordinator, which standbys name "
        "as the leader's (default $HIVE_ADVERTISE, else coordinator.advertise)",
    )
    p.add_argument("--insecure", action="store_true", help=insecure_help)
    p.set_defaults(func=cmd_coordinator)

    p = sub.add_parser("agent", help="run a node agent")
    p.add_argument("--config", required=True, help="node YAML")
    p.add_argument("--insecure", action="store_true", help=insecure_help)
    p.set_defaults(func=cmd_agent)

    p = sub.add_parser("gateway", help="run the HTTP gateway")
    p.add_argument("--listen", default="127.0.0.1:8000")
    coordinators.add_argument(p)
    p.add_argument(
        "--tls-dir",
        default=os.environ.get("HIVE_TLS_DIR"),
        help="directory with ca.pem, NAME.pem, NAME-key.pem (default $HIVE_TLS_DIR)",
    )
    p.add_argument("--tls-name", default="gateway", help="certificate name (default gateway)")
    p.add_argument(
        "--token-file", help="the gateway's own API token (read scope), for /health only"
    )
    p.add_argument(
        "--protect-metrics", action="store_true", help="/metrics needs a read-scope token"
    )
    p.add_argument(
        "--direct",
        action="store_true",
        default=os.environ.get("HIVE_GATEWAY_DIRECT", "") not in ("", "0"),
        help="read streamed answers from the agents (FollowTask), not through the "
        "coordinator; the gateway must reach the agents' RunTask addresses "
        "(default $HIVE_GATEWAY_DIRECT)",
    )
    p.add_argument(
        "--https-cert",
        default=os.environ.get("HIVE_GATEWAY_HTTPS_CERT"),
        help="serve HTTPS with this certificate, PEM (e.g. from hive certs issue gateway "
        "--dns HOST); default $HIVE_GATEWAY_HTTPS_CERT",
    )
    p.add_argument(
        "--https-key",
        default=os.environ.get("HIVE_GATEWAY_HTTPS_KEY"),
        help="the certificate's key, PEM (default $HIVE_GATEWAY_HTTPS_KEY)",
    )
    p.add_argument("--insecure", action="store_true", help=insecure_help)
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("status", help="show the cluster")
    coordinators.add_argument(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="as JSON, as the REST API writes it (GET /api/distributed/cluster/status)",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("drain", help="stop placing new work on a node (or --undo)")
    p.add_argument("node")
    p.add_argument("--undo", action="store_true")
    p.add_argument("--reason", default="")
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("explain", help="why a task went where it went")
    p.add_argument("task_id")
    p.add_argument("--json", action="store_true", help="as JSON, in the REST API's conventions")
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("pull", help="pull a model onto the cluster's nodes, with progress")
    p.add_argument("model")
    p.add_argument(
        "--endpoint",
        action="append",
        default=[],
        help="NODE/endpoint to pull onto (repeatable; default: every one without the model)",
    )
    p.add_argument("--insecure", action="store_true", help="allow a registry without TLS")
    p.add_argument("--timeout", type=float, default=24 * 3600)
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("rm", help="remove a model from the cluster's nodes (ollama rm)")
    p.add_argument("model")
    p.add_argument(
        "--endpoint",
        action="append",
        default=[],
        help="NODE/endpoint to remove it from (repeatable; default: every one that has it)",
    )
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("stop", help="unload a model from every endpoint (ollama stop)")
    p.add_argument("model")
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("run", help="stream one completion through the mesh")
    p.add_argument("prompt")
    p.add_argument("--model", required=True)
    p.add_argument("--system", default="")
    p.add_argument("--num-predict", type=int, default=0)
    p.add_argument(
        "--think",
        choices=["true", "false", "low", "medium", "high"],
        default="",
        help="reasoning, for a model that thinks (default: the model's own)",
    )
    p.add_argument("--format", default="", help='"json" or a JSON Schema, for a JSON answer')
    p.add_argument("--timeout", type=float, default=600)
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="the cluster and node files' JSON Schemas")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    p = config_sub.add_parser("schema", help="print a config file's JSON Schema (for editors)")
    p.add_argument("file", choices=("cluster", "node"))
    p.set_defaults(func=lambda args: print_schema(args.file))

    sub.add_parser("sim", help="discrete-event simulation of routing policies", add_help=False)
    sub.add_parser("emulator", help="run one emulated Ollama server", add_help=False)
    from hive.cli import check, gateway, optimize, security, workflows

    workflows.register(sub)  # submit, workflows, workflow
    check.register(sub)  # check, health
    gateway.register(sub)  # watch, mcp
    optimize.register(sub)  # optimize
    security.register(sub)  # certs, tokens, nodes
    return parser


PASSTHROUGH: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {
    "sim": cmd_sim,
    "emulator": cmd_emulator,
}


def main(argv: list[str] | None = None) -> int:
    """``hive``: its exit status. Output to a pipe that closed early (``hive status --json
    | head -1``) ends it quietly with 141, as a command killed by SIGPIPE (git does)."""
    try:
        result = _main(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return result
    except BrokenPipeError:
        # Whatever is still buffered must not be written again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: list[str]) -> int:
    parser = build_parser()
    if argv and argv[0] in PASSTHROUGH:
        return PASSTHROUGH[argv[0]](argparse.Namespace(), argv[1:])
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"hive: configuration error: {exc}", file=sys.stderr)
        return 2
    except PkiError as exc:
        print(f"hive: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as err:
        print(f"hive: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
