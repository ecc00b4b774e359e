"""`hive` commands that speak the gateway's client protocols: `hive watch` (live events
over the gateway's WebSocket) and `hive mcp` (the MCP server on stdio, for MCP clients
that launch their servers as commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from rich.console import Console

from hive import coordinators
from hive.console import table_console

ENV_GATEWAY = "HIVE_GATEWAY"
DEFAULT_GATEWAY = os.environ.get(ENV_GATEWAY) or "http://127.0.0.1:8000"

STATE_COLORS = {
    "healthy": "green",
    "suspect": "yellow",
    "lost": "red",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "queued": "white",
    "pending": "white",
}


def _ws_url(gateway: str) -> str:
    base = gateway.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    elif "://" not in base:
        base = "ws://" + base
    return base + "/api/distributed/ws"


def _color(state: str) -> str:
    color = STATE_COLORS.get(state, "white")
    return f"[{color}]{state}[/{color}]"


def describe(event: dict[str, Any]) -> str:
    """One line a person can read for one gateway event (rich markup)."""
    kind = event.get("type", "?")
    at = str(event.get("at") or "")[11:23]
    if kind in ("node_joined", "node_lost", "node_state_changed"):
        node = event["node"]
        extra = " draining" if node.get("draining") else ""
        return f"{at} node  {node['name']:<11} {kind:<19} {_color(node['state'])}{extra}"
    if kind == "telemetry":
        node = event["node"]
        gpus = node.get("gpus", [])
        util = sum(g["utilization_percent"] for g in gpus) / len(gpus) if gpus else 0.0
        used = sum(g["memory_used_bytes"] for g in gpus) / (1 << 30)
        return f"{at} tick  {node['name']:<11} util {util:5.1f}%  vram {used:5.1f} GiB"
    if kind == "task":
        where = f"{event.get('node', '')}/{event.get('endpoint_id', '')}".strip("/")
        stage = f" {event['workflow_id']}:{event['stage']}" if event.get("stage") else ""
        return (
            f"{at} task  {event['task_id']:<28} {_color(event['state'])} "
            f"{event.get('model', '')} on {where or '-'}{stage}"
        )
    if kind in ("stage_started", "stage_finished"):
        state = event.get("state", "running")
        return (
            f"{at} stage {event['workflow_id']}:{event['stage']:<13} {_color(state)} "
            f"({event.get('task_type', '')} on {event.get('node') or '-'})"
        )
    if kind == "stage_waiting":
        return (
            f"{at} stage {event['workflow_id']}:{event['stage']:<13} waiting for {event['model']}"
        )
    if kind == "workflow_changed":
        stage = f":{event['stage']}" if event.get("stage") else ""
        said = f"  {event['message']}" if event.get("message") else ""
        return f"{at} flow  {event['workflow_id']}{stage} {_color(event['state'])}{said}"
    if kind == "workflow":
        error = f"  {event['error']}" if event.get("error") else ""
        return f"{at} flow  {event['workflow_id']} {_color(event['state'])}{error}"
    if kind == "error":
        return f"[red]error[/red] {event.get('grpc_status', '')} {event.get('detail', '')}"
    return json.dumps(event)


async def watch(args: argparse.Namespace, console: Console) -> int:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    subscription: dict[str, Any] = {
        "cluster": not args.no_cluster,
        "telemetry": args.telemetry,
        "workflow_ids": args.workflow,
    }
    if args.events:
        subscription["events"] = args.events.split(",")
    async with connect(_ws_url(args.gateway), max_size=16 * 1024 * 1024) as ws:
        await ws.send(json.dumps({"subscribe": subscription}))
        finished: set[str] = set()
        try:
            async for raw in ws:
                event = json.loads(raw)
                if args.json:
                    print(json.dumps(event), flush=True)
                elif event.get("type") != "subscribed":
                    console.print(describe(event), highlight=False)
                if event.get("type") == "workflow" and event["state"] in (
                    "succeeded",
                    "failed",
                    "cancelled",
                ):
                    finished.add(event["workflow_id"])
                    # Watching only workflows: stop once every one of them has finished.
                    if args.no_cluster and args.workflow and finished >= set(args.workflow):
                        return 0
        except ConnectionClosed as closed:
            console.print(f"[red]gateway closed the stream[/red]: {closed.rcvd}")
            return 1
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    console = table_console()  # off a terminal: one whole line per event, never wrapped
    try:
        return asyncio.run(watch(args, console))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        console.print(f"hive: cannot reach the gateway at {args.gateway}: {exc}")
        return 1


def cmd_mcp(args: argparse.Namespace) -> int:
    from gateway.mcp_server import build
    from gateway.upstream import Upstream
    from hive.tls import ENV_TOKEN, security_from_env

    async def main() -> None:
        upstream = Upstream(
            args.coordinator, security=security_from_env(), token=os.environ.get(ENV_TOKEN)
        )
        try:
            await build(upstream).run_stdio_async()
        finally:
            await upstream.close()

    asyncio.run(main())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the gateway commands to the `hive` parser."""
    p = sub.add_parser(
        "watch", help="live cluster events (nodes, tasks) and workflows' stages, via the gateway"
    )
    p.add_argument("workflow", nargs="*", help="also follow these workflows' stages")
    p.add_argument(
        "--gateway",
        default=DEFAULT_GATEWAY,
        help=f"gateway URL (default ${ENV_GATEWAY} or http://127.0.0.1:8000)",
    )
    p.add_argument("--telemetry", action="store_true", help="a line per node heartbeat too")
    p.add_argument("--no-cluster", action="store_true", help="only the given workflows")
    p.add_argument(
        "--events", default="", help="only these event types, comma-separated (e.g. node_lost)"
    )
    p.add_argument("--json", action="store_true", help="one JSON event per line, for scripts")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("mcp", help="serve the MCP tools on stdio (for MCP clients)")
    coordinators.add_argument(p)
    p.set_defaults(func=cmd_mcp)


def main(argv: list[str] | None = None) -> int:
    """The gateway commands alone (``python -m hive.cli.gateway mcp``), as `hive` runs them."""
    parser = argparse.ArgumentParser(prog="hive")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
