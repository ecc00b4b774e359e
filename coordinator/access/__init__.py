"""Who may reach the coordinator, and how much: API tokens with scopes, join tokens for
enrolling nodes, revoked nodes (``book``), per-token submission rate limits
(``ratelimit``), the per-method policy checked before every RPC (``policy``) and the
gRPC faces, AccessService and EnrollmentService (``servicer``).
"""

from coordinator.access.book import AccessBook, AccessDenied, ApiTokenRec, JoinTokenRec
from coordinator.access.policy import ApiGuard, required_scope
from coordinator.access.ratelimit import RateLimiter

__all__ = [
    "AccessBook",
    "AccessDenied",
    "ApiGuard",
    "ApiTokenRec",
    "JoinTokenRec",
    "RateLimiter",
    "required_scope",
]
