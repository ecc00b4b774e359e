"""`hive certs`, `hive tokens` and `hive nodes`: the cluster CA, certificates, enrolment,
API and join tokens, node revocation.

`hive certs init/issue` work on files (run them where the CA key lives); `hive certs
enroll` trades a join token for a certificate at the coordinator's enrolment port; the
others call the coordinator's AccessService with ``$HIVE_TOKEN`` (an admin token) over
TLS from ``$HIVE_TLS_DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from rich.table import Table

from hive import coordinators, pki
from hive.cli.check import reachable
from hive.console import print_json, rest_dict, table_console
from hive.coordinators import client_channel
from hive.tls import COORDINATOR_NAME
from hive.v1 import cluster_pb2, cluster_pb2_grpc, enrollment_pb2, enrollment_pb2_grpc

DEFAULT_TLS_DIR = os.environ.get("HIVE_TLS_DIR", "hive-tls")
JSON_HELP = "as JSON, in the REST API's conventions"
DIR_HELP = "certificate directory (default $HIVE_TLS_DIR or hive-tls)"
T = TypeVar("T")


def _when(ts: Any) -> str:
    if not ts.seconds:
        return "-"
    return datetime.datetime.fromtimestamp(ts.seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _access(
    args: argparse.Namespace,
    call: Callable[[enrollment_pb2_grpc.AccessServiceAsyncStub], Awaitable[T]],
) -> T:
    async def main() -> T:
        async with client_channel(args.coordinator) as channel:
            return await call(enrollment_pb2_grpc.AccessServiceStub(channel))

    return asyncio.run(main())


# --- certs ---------------------------------------------------------------------------


def cmd_certs_init(args: argparse.Namespace) -> int:
    paths = pki.init_dir(args.dir, force=args.force)
    print(f"cluster CA created: {paths.ca} (copy to every host) and {paths.key} (secret)")
    print(f"next: hive certs issue coordinator --dir {args.dir} --dns <coordinator host>")
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    paths = pki.issue_in_dir(
        args.dir, args.name, dns=tuple(args.dns), ips=tuple(args.ip), days=args.days
    )
    print(f"issued {pki.describe(paths.cert.read_bytes())}")
    print(f"  certificate {paths.cert}\n  key         {paths.key} (secret, mode 0600)")
    return 0


def cmd_certs_enroll(args: argparse.Namespace) -> int:
    """Make a key here, send only the CSR; the key never leaves this host."""
    token = args.join_token or os.environ.get("HIVE_JOIN_TOKEN", "")
    if not token:
        print("hive: a join token is needed: --join-token or $HIVE_JOIN_TOKEN", file=sys.stderr)
        return 2
    ca = Path(args.ca).read_bytes()
    csr, key = pki.make_csr(args.name)

    async def main() -> enrollment_pb2.EnrollResponse:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        options = [("grpc.ssl_target_name_override", args.coordinator_name)]
        async with grpc.aio.secure_channel(args.coordinator, credentials, options) as channel:
            stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
            return await stub.Enroll(
                enrollment_pb2.EnrollRequest(join_token=token, node_name=args.name, csr_pem=csr),
                timeout=30,
            )

    reply = asyncio.run(main())
    paths = pki.write_identity(args.dir, args.name, reply.ca_pem, reply.certificate_pem, key)
    print(f"enrolled: {pki.describe(reply.certificate_pem)}")
    print(f"  ca {paths.ca}\n  certificate {paths.cert}\n  key {paths.key}")
    return 0


def cmd_certs_show(args: argparse.Namespace) -> int:
    print(pki.describe(Path(args.file).read_bytes()))
    return 0


# --- tokens --------------------------------------------------------------------------


def cmd_tokens_create(args: argparse.Namespace) -> int:
    reply = _access(
        args,
        lambda s: s.CreateApiToken(
            enrollment_pb2.CreateApiTokenRequest(
                name=args.name, scope=args.scope, ttl_seconds=args.ttl
            ),
            timeout=10,
        ),
    )
    print(
        f"token {reply.token.id} ({reply.token.scope}); shown once, store it now:", file=sys.stderr
    )
    print(reply.secret)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    reply = _access(
        args, lambda s: s.ListApiTokens(enrollment_pb2.ListApiTokensRequest(), timeout=10)
    )
    if args.json:
        print_json(_tokens_json(reply.tokens))
        return 0
    table = Table(title="API tokens", title_justify="left")
    for column in ("id", "name", "scope", "created", "expires", "state"):
        table.add_column(column)
    for t in reply.tokens:
        table.add_row(
            t.id,
            t.name,
            t.scope,
            _when(t.created_at),
            _when(t.expires_at),
            "revoked" if t.revoked else "live",
        )
    table_console().print(table)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    """Revoke the token whose id is, or uniquely starts with, ``args.id`` (a table cut to
    the terminal's width shows ids cut short)."""
    listed = _access(
        args, lambda s: s.ListApiTokens(enrollment_pb2.ListApiTokensRequest(), timeout=10)
    )
    ids = [t.id for t in listed.tokens]
    matches = [args.id] if args.id in ids else [i for i in ids if i.startswith(args.id)]
    if len(matches) != 1:
        found = f"{len(matches)} do: {', '.join(matches)}" if matches else "none does"
        print(
            f"hive tokens revoke: no single token id starts with {args.id!r} ({found})",
            file=sys.stderr,
        )
        return 2
    reply = _access(
        args,
        lambda s: s.RevokeApiToken(enrollment_pb2.RevokeApiTokenRequest(id=matches[0]), timeout=10),
    )
    print(f"token {reply.token.id} revoked")
    return 0


def cmd_join_create(args: argparse.Namespace) -> int:
    """Create a join token; say the enrolment address to use with it as the coordinator
    reports it (GetClusterStatus's enroll_address, from coordinator.enroll_listen)."""

    async def main() -> tuple[enrollment_pb2.CreateJoinTokenResponse, str | None]:
        async with client_channel(args.coordinator) as channel:
            reply = await enrollment_pb2_grpc.AccessServiceStub(channel).CreateJoinToken(
                enrollment_pb2.CreateJoinTokenRequest(
                    node_name=args.node, ttl_seconds=args.ttl, uses=args.uses
                ),
                timeout=10,
            )
            try:
                status = await cluster_pb2_grpc.ClusterServiceStub(channel).GetClusterStatus(
                    cluster_pb2.GetClusterStatusRequest(), timeout=10
                )
            except grpc.aio.AioRpcError:
                return reply, None  # the token stands; only the address is not known
            bound = status.enroll_address
            return reply, reachable(bound, channel.address or args.coordinator) if bound else ""

    reply, enroll = asyncio.run(main())
    if enroll == "":
        print(
            "hive: note: this coordinator serves no enrolment (coordinator.enroll_listen is "
            "off, or TLS or tls.ca_key is not set): the token cannot be used until it does",
            file=sys.stderr,
        )
    print(
        f"join token {reply.token.id} for {reply.token.node_name or 'any node'}, "
        f"expires {_when(reply.token.expires_at)} UTC; on the new host run:\n"
        f"  hive certs enroll {reply.token.node_name or 'NAME'} "
        f"--coordinator {enroll or 'HOST:PORT (coordinator.enroll_listen)'} "
        "--ca ca.pem --join-token <the token below>",
        file=sys.stderr,
    )
    print(reply.secret)
    return 0


def _tokens_json(
    tokens: Iterable[enrollment_pb2.ApiToken] | Iterable[enrollment_pb2.JoinToken],
) -> dict[str, Any]:
    """API or join tokens in the REST API's conventions (every field, times as RFC 3339),
    with a state in words (live, revoked) instead of the ``revoked`` flag."""
    rows = []
    for t in tokens:
        row = rest_dict(t)
        del row["revoked"]
        rows.append({**row, "state": "revoked" if t.revoked else "live"})
    return {"tokens": rows}


def cmd_join_list(args: argparse.Namespace) -> int:
    reply = _access(
        args, lambda s: s.ListJoinTokens(enrollment_pb2.ListJoinTokensRequest(), timeout=10)
    )
    if args.json:
        print_json(_tokens_json(reply.tokens))
        return 0
    table = Table(title="join tokens", title_justify="left")
    for column in ("id", "node", "expires", "uses left", "enrolled", "state"):
        table.add_column(column)
    for t in reply.tokens:
        table.add_row(
            t.id,
            t.node_name or "any",
            _when(t.expires_at),
            str(t.uses_left),
            ", ".join(t.enrolled) or "-",
            "revoked" if t.revoked else "live",
        )
    table_console().print(table)
    return 0


def cmd_join_revoke(args: argparse.Namespace) -> int:
    reply = _access(
        args,
        lambda s: s.RevokeJoinToken(enrollment_pb2.RevokeJoinTokenRequest(id=args.id), timeout=10),
    )
    print(f"join token {reply.token.id} revoked")
    return 0


# --- nodes ---------------------------------------------------------------------------


def cmd_nodes_revoke(args: argparse.Namespace) -> int:
    reply = _access(
        args,
        lambda s: s.RevokeNode(
            enrollment_pb2.RevokeNodeRequest(name=args.name, reason=args.reason, undo=args.undo),
            timeout=10,
        ),
    )
    if args.undo:
        print(f"node {args.name} may register again")
    else:
        state = "its session was ended" if reply.disconnected else "it had no open session"
        print(f"node {args.name} revoked; {state}")
    return 0


def cmd_nodes_revoked(args: argparse.Namespace) -> int:
    reply = _access(
        args, lambda s: s.ListRevokedNodes(enrollment_pb2.ListRevokedNodesRequest(), timeout=10)
    )
    if args.json:
        print_json(reply)
        return 0
    for n in reply.nodes:
        print(f"{n.name}\t{_when(n.revoked_at)}\t{n.reason or '-'}")
    return 0


def _coordinator(p: argparse.ArgumentParser) -> None:
    coordinators.add_argument(p)


def register(sub: Any) -> None:
    certs = sub.add_parser("certs", help="the cluster CA and certificates").add_subparsers(
        dest="certs_command", required=True
    )
    p = certs.add_parser("init", help="create the cluster CA")
    p.add_argument("--dir", default=DEFAULT_TLS_DIR, help=DIR_HELP)
    p.add_argument("--force", action="store_true", help="replace an existing CA")
    p.set_defaults(func=cmd_certs_init)
    p = certs.add_parser("issue", help="issue NAME.pem/NAME-key.pem with the CA")
    p.add_argument("name", help="node name, or coordinator / gateway / admin")
    p.add_argument("--dir", default=DEFAULT_TLS_DIR, help=DIR_HELP)
    p.add_argument("--dns", action="append", default=[], help="extra DNS name (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="IP address (repeatable)")
    p.add_argument("--days", type=int, default=pki.CERT_DAYS)
    p.set_defaults(func=cmd_certs_issue)
    p = certs.add_parser("enroll", help="get this node's certificate with a join token")
    p.add_argument("name", help="this node's name")
    p.add_argument(
        "--coordinator",
        required=True,
        help="the enrolment address, host:port (coordinator.enroll_listen; `hive tokens join "
        "create` prints it)",
    )
    p.add_argument("--ca", required=True, help="the cluster's ca.pem")
    p.add_argument("--join-token", help="the join token (default $HIVE_JOIN_TOKEN)")
    p.add_argument("--dir", default=DEFAULT_TLS_DIR, help=DIR_HELP)
    p.add_argument("--coordinator-name", default=COORDINATOR_NAME)
    p.set_defaults(func=cmd_certs_enroll)
    p = certs.add_parser("show", help="describe a certificate")
    p.add_argument("file")
    p.set_defaults(func=cmd_certs_show)

    tokens = sub.add_parser("tokens", help="API tokens and join tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    p = tokens.add_parser("create", help="create an API token (printed once)")
    p.add_argument("--scope", required=True, choices=["read", "submit", "admin"])
    p.add_argument("--name", default="", help="what the token is for")
    p.add_argument("--ttl", type=float, default=0.0, help="seconds until it expires (0: never)")
    _coordinator(p)
    p.set_defaults(func=cmd_tokens_create)
    p = tokens.add_parser("list", help="list API tokens (never their secrets)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    _coordinator(p)
    p.set_defaults(func=cmd_tokens_list)
    p = tokens.add_parser("revoke", help="revoke an API token by id")
    p.add_argument("id", help="the token's id, or any prefix of it that only it has")
    _coordinator(p)
    p.set_defaults(func=cmd_tokens_revoke)
    join = tokens.add_parser("join", help="join tokens for enrolling nodes").add_subparsers(
        dest="join_command", required=True
    )
    p = join.add_parser("create", help="create a join token (printed once)")
    p.add_argument("--node", default="", help="the only node name it may enrol")
    p.add_argument("--ttl", type=float, default=0.0, help="seconds (default one hour)")
    p.add_argument("--uses", type=int, default=0, help="enrolments allowed (default one)")
    _coordinator(p)
    p.set_defaults(func=cmd_join_create)
    p = join.add_parser("list", help="list join tokens")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    _coordinator(p)
    p.set_defaults(func=cmd_join_list)
    p = join.add_parser("revoke", help="revoke a join token by id")
    p.add_argument("id")
    _coordinator(p)
    p.set_defaults(func=cmd_join_revoke)

    nodes = sub.add_parser("nodes", help="node revocation").add_subparsers(
        dest="nodes_command", required=True
    )
    p = nodes.add_parser("revoke", help="disconnect a node now and refuse it from now on")
    p.add_argument("name")
    p.add_argument("--reason", default="")
    p.add_argument("--undo", action="store_true", help="let it register again")
    _coordinator(p)
    p.set_defaults(func=cmd_nodes_revoke)
    p = nodes.add_parser("revoked", help="list revoked nodes")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    _coordinator(p)
    p.set_defaults(func=cmd_nodes_revoked)
