"""What a request says, read and refused as Ollama refuses it: the body, the model's name,
options, keep_alive, format, think, top_logprobs and images.

Each check raises ``ApiError``, which the API turns into Ollama's ``{"error": "..."}`` body
with the same status and message Ollama sends.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from starlette.requests import Request

from hive import hardware, limits
from hive.limits import MAX_KEEP_ALIVE_SECONDS, MAX_TOP_LOGPROBS
from ollama_emulator.model_facts import capabilities

# What an image costs a vision model's prompt: llava's 576 image tokens (4 characters each).
IMAGE_TEXT = " " * (576 * 4)
# Pieces of reasoning a thinking model writes before its answer, by Ollama's think value.
_THINKING_PIECES = {True: 48, "low": 24, "medium": 48, "high": 96}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_keep_alive(value: object, default: float) -> float:
    """Seconds an idle model stays loaded; math.inf for "forever".

    Accepts what Ollama accepts: a number of seconds, or a Go duration string ("5m",
    "1h30m", "300ms", "0"); also a plain number in a string. Negative means forever, and
    so does a number past Go's longest duration (about 292 years), where Ollama's own
    conversion overflows; a longer string is refused, as Go's parser refuses it. Nothing
    accepted is NaN or beyond what ``/api/ps`` can show.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        raise ApiError(400, f"json: cannot unmarshal bool into keep_alive: {value}")
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise ApiError(400, f"invalid keep_alive: {value!r}")
        seconds = float(value) if abs(value) <= MAX_KEEP_ALIVE_SECONDS else math.inf
    elif isinstance(value, str):
        try:
            seconds = limits.duration_seconds(value.strip())
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    else:
        raise ApiError(400, f"invalid keep_alive: {value!r}")
    return math.inf if seconds < 0 or seconds > MAX_KEEP_ALIVE_SECONDS else seconds


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except ValueError as e:
        raise ApiError(400, f"invalid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "json: cannot unmarshal request body into an object")
    return body


def _not_json(name: str) -> object:
    """NaN and Infinity, which Python's decoder takes and Go's (Ollama's) refuses."""
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def model_name(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "model is required")
    return name


def int_option(options: dict[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(400, f"option {key!r} must be of type integer")
    return int(value)


def image_count(name: str, kind: hardware.ModelKind, images: object) -> int:
    """How many images a request carries, refused as Ollama refuses them: not base64, or
    for a model without vision."""
    if not images:
        return 0
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ApiError(400, "images must be a list of base64 strings")
    for image in images:
        try:
            base64.b64decode(image, validate=True)
        except binascii.Error as exc:
            raise ApiError(400, f"illegal base64 data: {exc}") from None
    if "vision" not in capabilities(kind):
        raise ApiError(400, f'"{name}" does not support vision')
    return len(images)


def thinking_pieces(name: str, kind: hardware.ModelKind, think: object) -> int:
    """How much a request makes the model reason: a thinking model does by default (as
    Ollama's thinking models do); ``false`` turns it off; ``true`` or a level on a model
    that cannot think is refused, as Ollama refuses it."""
    can = "thinking" in capabilities(kind)
    if think is None:
        return _THINKING_PIECES[True] if can else 0
    if think is False:
        return 0
    if think is not True and think not in ("low", "medium", "high"):
        raise ApiError(
            400, f'invalid think value: {json.dumps(think)} (true, false, "low", "medium", "high")'
        )
    if not can:
        raise ApiError(400, f'"{name}" does not support thinking')
    return _THINKING_PIECES[think if isinstance(think, str) else True]


def top_logprobs(body: dict[str, Any]) -> int | None:
    """How many most likely tokens a request wants with each token's log probability;
    None when it asks for no logprobs. Refused as Ollama refuses it."""
    top = body.get("top_logprobs") or 0
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return top if body.get("logprobs") is True else None


def output_format(value: object) -> str | dict[str, Any] | None:
    """Ollama's ``format``: absent, "", "json" or a JSON Schema object; anything else is
    refused as Ollama refuses it."""
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise ApiError(
        400, f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object'
    )
