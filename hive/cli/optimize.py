"""`hive optimize`: run an optimizer pass now (or show its plan), and the findings section
that `hive status` prints under the cluster table.

    hive optimize [--dry-run] [--json] [--coordinator HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from hive import coordinators
from hive.console import print_json, wide_console
from hive.coordinators import client_channel
from hive.v1 import cluster_pb2, cluster_pb2_grpc

_SEVERITY_STYLE = {
    cluster_pb2.SEVERITY_CRITICAL: ("critical", "red"),
    cluster_pb2.SEVERITY_WARNING: ("warning", "yellow"),
    cluster_pb2.SEVERITY_INFO: ("info", "cyan"),
}


def render_findings(findings: list[cluster_pb2.Finding], console: Console) -> None:
    """One line per finding with its evidence, and what to do about it."""
    if not findings:
        console.print("findings: none (no bottleneck detected)")
        return
    console.print(f"findings ({len(findings)}):")
    for f in findings:
        label, color = _SEVERITY_STYLE.get(f.severity, ("?", "white"))
        console.print(f"  [{color}]{label}[/{color}] {f.kind} {f.subject}: {f.evidence}")
        console.print(f"      -> {f.recommendation}")


def render_actions(
    title: str, actions: list[cluster_pb2.OptimizationAction], console: Console
) -> None:
    if not actions:
        console.print(f"{title}: none")
        return
    table = Table(title=title, title_justify="left")
    for col in ("action", "where", "model", "before", "after", "why"):
        table.add_column(col, overflow="fold")
    for a in actions:
        why = a.reason + (f" [held back: {a.deferred}]" if a.deferred else "")
        if a.error:
            why += f" [failed: {a.error}]"
        where = f"{a.node}/{a.endpoint_id}" if a.node else "router weights"
        table.add_row(a.kind, where, a.model or "-", a.before, a.after, why)
    console.print(table)


def render_optimize(response: cluster_pb2.OptimizeClusterResponse, console: Console) -> None:
    verb = "applied" if response.applied else "planned (dry run: nothing changed)"
    render_actions(f"changes {verb}", list(response.actions), console)
    if response.deferred:
        render_actions("held back", list(response.deferred), console)
    render_findings(list(response.findings), console)


async def fetch_findings(address: str) -> list[cluster_pb2.Finding] | None:
    """The coordinator's current findings; None when it has no optimizer."""
    async with client_channel(address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        try:
            response = await stub.GetPerformanceMetrics(
                cluster_pb2.GetPerformanceMetricsRequest(), timeout=10
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (
                grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                return None
            raise
    return list(response.findings)


def print_status_findings(address: str, console: Console) -> None:
    """The findings section of `hive status` (silent when the optimizer is off)."""
    findings = asyncio.run(fetch_findings(address))
    if findings is not None:
        render_findings(findings, console)


def optimize_json(response: cluster_pb2.OptimizeClusterResponse) -> dict[str, Any]:
    """What POST /api/distributed/cluster/optimize answers, and the actions held back
    (``deferred``: each in the same shape, with why it was held back), which only the
    command shows."""
    from gateway.schemas import optimization_from_proto

    out: dict[str, Any] = optimization_from_proto(response).model_dump(mode="json")
    held = cluster_pb2.OptimizeClusterResponse(actions=response.deferred)
    out["deferred"] = [
        {**action, "deferred": a.deferred}
        for action, a in zip(
            optimization_from_proto(held).model_dump(mode="json")["actions"],
            response.deferred,
            strict=True,
        )
    ]
    return out


def cmd_optimize(args: argparse.Namespace) -> int:
    async def main() -> cluster_pb2.OptimizeClusterResponse:
        async with client_channel(args.coordinator) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            return await stub.OptimizeCluster(
                cluster_pb2.OptimizeClusterRequest(dry_run=args.dry_run), timeout=30
            )

    response = asyncio.run(main())
    if args.json:
        print_json(optimize_json(response))
    else:
        render_optimize(response, wide_console(120))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `hive optimize` to the `hive` parser."""
    p = sub.add_parser("optimize", help="run an optimizer pass now (--dry-run: plan only)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--json", action="store_true", help="as JSON, as the REST API writes it")
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_optimize)
