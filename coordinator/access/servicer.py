"""AccessService (admin: tokens, join tokens, node revocation) and EnrollmentService
(a new node trades a join token and a CSR for its certificate): thin translations to
the ``AccessBook`` and ``hive.pki``."""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.access.book import AccessBook, AccessDenied, ApiTokenRec, JoinTokenRec
from coordinator.registry import Registry, UnknownNode
from hive import pki
from hive.config import NODE_NAME
from hive.timestamps import timestamp
from hive.v1 import enrollment_pb2, enrollment_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_CSR_BYTES = 16 * 1024


def api_token_to_proto(rec: ApiTokenRec) -> enrollment_pb2.ApiToken:
    return enrollment_pb2.ApiToken(
        id=rec.id,
        name=rec.name,
        scope=rec.scope,
        created_at=timestamp(rec.created_at),
        expires_at=timestamp(rec.expires_at),
        revoked_at=timestamp(rec.revoked_at),
        revoked=rec.revoked_at is not None,
    )


def join_token_to_proto(rec: JoinTokenRec) -> enrollment_pb2.JoinToken:
    return enrollment_pb2.JoinToken(
        id=rec.id,
        node_name=rec.node_name,
        created_at=timestamp(rec.created_at),
        expires_at=timestamp(rec.expires_at),
        revoked=rec.revoked_at is not None,
        enrolled=rec.enrolled,
        uses_left=rec.uses_left,
    )


class AccessServicer(enrollment_pb2_grpc.AccessServiceServicer):
    def __init__(self, book: AccessBook, registry: Registry) -> None:
        self.book = book
        self.registry = registry

    async def CreateApiToken(
        self, request: enrollment_pb2.CreateApiTokenRequest, context: Ctx
    ) -> enrollment_pb2.CreateApiTokenResponse:
        try:
            rec, secret = await self.book.create_api_token(
                request.name, request.scope, request.ttl_seconds
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return enrollment_pb2.CreateApiTokenResponse(token=api_token_to_proto(rec), secret=secret)

    async def ListApiTokens(
        self, request: enrollment_pb2.ListApiTokensRequest, context: Ctx
    ) -> enrollment_pb2.ListApiTokensResponse:
        tokens = sorted(self.book.api_tokens.values(), key=lambda t: t.created_at)
        return enrollment_pb2.ListApiTokensResponse(tokens=[api_token_to_proto(t) for t in tokens])

    async def RevokeApiToken(
        self, request: enrollment_pb2.RevokeApiTokenRequest, context: Ctx
    ) -> enrollment_pb2.RevokeApiTokenResponse:
        try:
            rec = await self.book.revoke_api_token(request.id)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no API token {request.id!r}")
        return enrollment_pb2.RevokeApiTokenResponse(token=api_token_to_proto(rec))

    async def CreateJoinToken(
        self, request: enrollment_pb2.CreateJoinTokenRequest, context: Ctx
    ) -> enrollment_pb2.CreateJoinTokenResponse:
        if request.node_name and not NODE_NAME.match(request.node_name):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{request.node_name!r} is not a node name"
            )
        try:
            rec, secret = await self.book.create_join_token(
                request.node_name, request.ttl_seconds, request.uses
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return enrollment_pb2.CreateJoinTokenResponse(token=join_token_to_proto(rec), secret=secret)

    async def ListJoinTokens(
        self, request: enrollment_pb2.ListJoinTokensRequest, context: Ctx
    ) -> enrollment_pb2.ListJoinTokensResponse:
        tokens = sorted(self.book.join_tokens.values(), key=lambda t: t.created_at)
        return enrollment_pb2.ListJoinTokensResponse(
            tokens=[join_token_to_proto(t) for t in tokens]
        )

    async def RevokeJoinToken(
        self, request: enrollment_pb2.RevokeJoinTokenRequest, context: Ctx
    ) -> enrollment_pb2.RevokeJoinTokenResponse:
        try:
            rec = await self.book.revoke_join_token(request.id)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no join token {request.id!r}")
        return enrollment_pb2.RevokeJoinTokenResponse(token=join_token_to_proto(rec))

    async def RevokeNode(
        self, request: enrollment_pb2.RevokeNodeRequest, context: Ctx
    ) -> enrollment_pb2.RevokeNodeResponse:
        if not NODE_NAME.match(request.name):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{request.name!r} is not a node name"
            )
        if request.undo:
            await self.book.restore_node(request.name)
            return enrollment_pb2.RevokeNodeResponse()
        await self.book.revoke_node(request.name, request.reason)
        try:
            disconnected = self.registry.disconnect(request.name, "revoked")
        except UnknownNode:
            disconnected = False
        return enrollment_pb2.RevokeNodeResponse(disconnected=disconnected)

    async def ListRevokedNodes(
        self, request: enrollment_pb2.ListRevokedNodesRequest, context: Ctx
    ) -> enrollment_pb2.ListRevokedNodesResponse:
        return enrollment_pb2.ListRevokedNodesResponse(
            nodes=[
                enrollment_pb2.RevokedNode(
                    name=n.name, reason=n.reason, revoked_at=timestamp(n.revoked_at)
                )
                for n in sorted(self.book.revoked_nodes.values(), key=lambda n: n.name)
            ]
        )


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServiceServicer):
    """Signs a new node's CSR with the cluster CA when its join token allows it."""

    def __init__(self, book: AccessBook, ca_pem: bytes, ca_key_pem: bytes) -> None:
        self.book = book
        self.ca_pem = ca_pem
        self.ca_key_pem = ca_key_pem

    async def Enroll(
        self, request: enrollment_pb2.EnrollRequest, context: Ctx
    ) -> enrollment_pb2.EnrollResponse:
        if not NODE_NAME.match(request.node_name):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{request.node_name!r} is not a node name"
            )
        if len(request.csr_pem) > MAX_CSR_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "csr_pem is too large")
        try:
            token = self.book.check_join_token(request.join_token, request.node_name)
        except AccessDenied as exc:
            await context.abort(grpc.StatusCode[exc.code], str(exc))
        try:
            cert = pki.sign_csr(self.ca_pem, self.ca_key_pem, request.csr_pem, request.node_name)
        except pki.PkiError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self.book.use_join_token(token, request.node_name)
        return enrollment_pb2.EnrollResponse(certificate_pem=cert, ca_pem=self.ca_pem)
