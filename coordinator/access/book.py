"""The access book: API tokens, join tokens and revoked nodes, kept in memory and written
through to the state store (``StateStore`` tables ``api_tokens``, ``join_tokens``,
``revoked_nodes``).

Secrets are 256-bit random strings (``hive_…`` for API tokens, ``hivejoin_…`` for join
tokens) shown once when made; only their SHA-256 is stored. A presented secret is hashed
and looked up; the stored hash is compared again with ``hmac.compare_digest``. Because
the secret is high-entropy, an unsalted fast hash is enough: nobody can guess a
preimage, and the database alone does not let anyone call the API.

Scopes are ordered: ``read`` < ``submit`` < ``admin``; a token may do what its scope and
the ones below it allow. Revocations take effect in memory at once (the next call with
the token is refused) and are committed before the admin is answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.workflows.store import StateStore

log = logging.getLogger("hive.coordinator.access")

SCOPES = ("read", "submit", "admin")
API_PREFIX = "hive_"
JOIN_PREFIX = "hivejoin_"
DEFAULT_JOIN_TTL_SECONDS = 3600.0
MAX_JOIN_TTL_SECONDS = 7 * 24 * 3600.0


class AccessDenied(Exception):
    """A credential that does not grant what was asked; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def scope_allows(held: str, needed: str) -> bool:
    return held in SCOPES and SCOPES.index(held) >= SCOPES.index(needed)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class ApiTokenRec:
    id: str
    name: str
    scope: str
    hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def live(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass
class JoinTokenRec:
    id: str
    node_name: str
    hash: str
    created_at: float
    expires_at: float
    uses_left: int
    revoked_at: float | None = None
    enrolled: list[str] = field(default_factory=list)


@dataclass
class RevokedNodeRec:
    name: str
    reason: str
    revoked_at: float


def _api_row(rec: ApiTokenRec) -> dict[str, object]:
    return {
        "id": rec.id,
        "name": rec.name,
        "scope": rec.scope,
        "hash": rec.hash,
        "created_at": rec.created_at,
        "expires_at": rec.expires_at,
        "revoked_at": rec.revoked_at,
    }


def _join_row(rec: JoinTokenRec) -> dict[str, object]:
    return {
        "id": rec.id,
        "node_name": rec.node_name,
        "hash": rec.hash,
        "created_at": rec.created_at,
        "expires_at": rec.expires_at,
        "revoked_at": rec.revoked_at,
        "uses_left": rec.uses_left,
        "enrolled": json.dumps(rec.enrolled),
    }


class AccessBook:
    """Owner of the access tables; use on the coordinator's event loop."""

    def __init__(self, store: StateStore, wall_clock: Callable[[], float]) -> None:
        self.store = store
        self._wall = wall_clock
        self.api_tokens: dict[str, ApiTokenRec] = {}  # by id
        self._by_hash: dict[str, ApiTokenRec] = {}
        self.join_tokens: dict[str, JoinTokenRec] = {}
        self.revoked_nodes: dict[str, RevokedNodeRec] = {}

    async def load(self) -> None:
        """Read the tables (after the store is open)."""
        for r in await self.store.read_access("api_tokens"):
            rec = ApiTokenRec(
                r["id"], r["name"], r["scope"], r["hash"], r["created_at"], r["expires_at"],
                r["revoked_at"],
            )  # fmt: skip
            self.api_tokens[rec.id] = rec
            self._by_hash[rec.hash] = rec
        for r in await self.store.read_access("join_tokens"):
            self.join_tokens[r["id"]] = JoinTokenRec(
                r["id"], r["node_name"], r["hash"], r["created_at"], r["expires_at"],
                r["uses_left"], r["revoked_at"], json.loads(r["enrolled"]),
            )  # fmt: skip
        for r in await self.store.read_access("revoked_nodes"):
            self.revoked_nodes[r["name"]] = RevokedNodeRec(r["name"], r["reason"], r["revoked_at"])

    # --- API tokens ---------------------------------------------------------------

    def authenticate(self, secret: str) -> ApiTokenRec:
        """The live token ``secret`` is, or AccessDenied(UNAUTHENTICATED)."""
        digest = token_hash(secret)
        rec = self._by_hash.get(digest)
        if rec is None or not hmac.compare_digest(rec.hash, digest):
            raise AccessDenied("UNAUTHENTICATED", "the API token is not known to this cluster")
        if not rec.live(self._wall()):
            state = "revoked" if rec.revoked_at is not None else "expired"
            raise AccessDenied("UNAUTHENTICATED", f"API token {rec.id} is {state}")
        return rec

    async def create_api_token(
        self, name: str, scope: str, ttl_seconds: float = 0.0
    ) -> tuple[ApiTokenRec, str]:
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must not be negative")
        if len(name) > 128:
            raise ValueError("name is longer than 128 characters")
        secret = API_PREFIX + secrets.token_urlsafe(32)
        now = self._wall()
        rec = ApiTokenRec(
            "tok-" + uuid.uuid4().hex[:12],
            name,
            scope,
            token_hash(secret),
            now,
            now + ttl_seconds if ttl_seconds else None,
        )
        await self.store.put_access("api_tokens", _api_row(rec))
        self.api_tokens[rec.id] = rec
        self._by_hash[rec.hash] = rec
        log.info("API token %s (%s, scope %s) created", rec.id, name or "-", scope)
        return rec, secret

    async def revoke_api_token(self, token_id: str) -> ApiTokenRec:
        rec = self.api_tokens.get(token_id)
        if rec is None:
            raise KeyError(token_id)
        if rec.revoked_at is None:
            rec.revoked_at = self._wall()  # refused from now on, before the commit
            await self.store.put_access("api_tokens", _api_row(rec))
            log.info("API token %s revoked", rec.id)
        return rec

    def has_live_admin(self) -> bool:
        now = self._wall()
        return any(t.scope == "admin" and t.live(now) for t in self.api_tokens.values())

    # --- join tokens --------------------------------------------------------------

    async def create_join_token(
        self, node_name: str, ttl_seconds: float = 0.0, uses: int = 0
    ) -> tuple[JoinTokenRec, str]:
        ttl = ttl_seconds or DEFAULT_JOIN_TTL_SECONDS
        if not 0 < ttl <= MAX_JOIN_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be in (0, {MAX_JOIN_TTL_SECONDS:.0f}]")
        if uses < 0 or uses > 1000:
            raise ValueError("uses must be between 0 (one) and 1000")
        secret = JOIN_PREFIX + secrets.token_urlsafe(32)
        now = self._wall()
        rec = JoinTokenRec(
            "join-" + uuid.uuid4().hex[:12],
            node_name,
            token_hash(secret),
            now,
            now + ttl,
            uses or 1,
        )
        await self.store.put_access("join_tokens", _join_row(rec))
        self.join_tokens[rec.id] = rec
        log.info("join token %s created for %s", rec.id, node_name or "any node")
        return rec, secret

    def check_join_token(self, secret: str, node_name: str) -> JoinTokenRec:
        """The join token that lets ``node_name`` enrol now, or AccessDenied."""
        digest = token_hash(secret)
        rec = next(
            (t for t in self.join_tokens.values() if hmac.compare_digest(t.hash, digest)), None
        )
        if rec is None:
            raise AccessDenied("UNAUTHENTICATED", "the join token is not known to this cluster")
        if rec.revoked_at is not None or self._wall() >= rec.expires_at or rec.uses_left <= 0:
            raise AccessDenied(
                "UNAUTHENTICATED", f"join token {rec.id} is revoked, expired or used up"
            )
        if rec.node_name and rec.node_name != node_name:
            raise AccessDenied(
                "PERMISSION_DENIED", f"join token {rec.id} is for {rec.node_name}, not {node_name}"
            )
        if node_name in self.revoked_nodes:
            raise AccessDenied("PERMISSION_DENIED", f"node {node_name} is revoked")
        return rec

    async def use_join_token(self, rec: JoinTokenRec, node_name: str) -> None:
        rec.uses_left -= 1
        rec.enrolled.append(node_name)
        await self.store.put_access("join_tokens", _join_row(rec))
        log.info("node %s enrolled with join token %s", node_name, rec.id)

    async def revoke_join_token(self, token_id: str) -> JoinTokenRec:
        rec = self.join_tokens.get(token_id)
        if rec is None:
            raise KeyError(token_id)
        if rec.revoked_at is None:
            rec.revoked_at = self._wall()
            await self.store.put_access("join_tokens", _join_row(rec))
        return rec

    # --- nodes --------------------------------------------------------------------

    def node_revoked(self, name: str) -> bool:
        return name in self.revoked_nodes

    async def revoke_node(self, name: str, reason: str) -> None:
        rec = RevokedNodeRec(name, reason, self._wall())
        self.revoked_nodes[name] = rec
        await self.store.put_access(
            "revoked_nodes", {"name": name, "reason": reason, "revoked_at": rec.revoked_at}
        )
        log.warning("node %s revoked: %s", name, reason or "-")

    async def restore_node(self, name: str) -> None:
        if self.revoked_nodes.pop(name, None) is not None:
            await self.store.delete_access("revoked_nodes", name)
            log.info("node %s no longer revoked", name)
