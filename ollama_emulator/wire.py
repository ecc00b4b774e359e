"""How the emulator writes Ollama's answers: NDJSON lines, RFC 3339 timestamps, nanoseconds.

Wall-clock time exists only here and in the routes that stamp ``created_at`` and
``expires_at``; the scheduler runs on the injected monotonic clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

NDJSON = "application/x-ndjson"


def now() -> str:
    return rfc3339(datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()
