"""The bounds on what a request may ask of a model: how long it stays loaded (keep_alive) and
the counts in its options (num_ctx, num_predict, top_k, ...), shared by the gateway (a 400 in
each API's shape), the coordinator (INVALID_ARGUMENT, before routing) and the emulator.

They follow Ollama. keep_alive is a number of seconds or a Go duration string ("5m",
"1h30m"); negative means for ever; a duration is Go's ``time.Duration``, int64 nanoseconds,
so none is longer than about 292 years (Ollama refuses a longer string and mangles a larger
number). Counts are Go ints that llama.cpp reads as 32-bit ones, and the contract carries
options as doubles (``google.protobuf.Struct``), so a value past these bounds cannot mean
what the client asked; accepted, one broke the endpoint it reached (issue 17: keep_alive
1e104 made the emulator's /api/ps fail from then on, and the node left the rotation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

# The most top_logprobs Ollama gives (it refuses a request for more).
MAX_TOP_LOGPROBS = 20
# An embedding's dimensions: no embedding model comes near this.
MAX_DIMENSIONS = 65_536
# The longest keep_alive, in whole seconds: Go's longest time.Duration, (2**63 - 1) ns.
MAX_KEEP_ALIVE_SECONDS = 9_223_372_036
# Tokens of context (num_ctx) and so of one answer (num_predict, max_tokens): above the
# longest context any model offers (Llama 4 Scout's 10M tokens).
MAX_CONTEXT_TOKENS = 1 << 24
# top_k: above any model's vocabulary (Gemma 3's is 262,144 tokens).
MAX_TOP_K = 1 << 20
# The largest integer a double holds exactly: options travel as doubles, so a seed past
# this would reach the node as another number.
MAX_EXACT_INTEGER = 1 << 53
# Ollama's float options are Go float32s; a larger magnitude becomes infinity there.
MAX_FLOAT32 = 3.4028234663852886e38
_MAX_INT32 = (1 << 31) - 1

# Ollama's integer options: (lowest, highest, what the special values mean).
INTEGER_OPTIONS: dict[str, tuple[int, int, str]] = {
    "num_ctx": (1, MAX_CONTEXT_TOKENS, ""),
    "num_predict": (-2, MAX_CONTEXT_TOKENS, " (-1: no limit, -2: until the context is full)"),
    "num_keep": (-1, MAX_CONTEXT_TOKENS, " (-1: the whole prompt)"),
    "repeat_last_n": (-1, MAX_CONTEXT_TOKENS, " (-1: the whole context, 0: none)"),
    "num_batch": (1, MAX_CONTEXT_TOKENS, ""),
    "top_k": (0, MAX_TOP_K, " (0: the whole vocabulary)"),
    "num_gpu": (-1, _MAX_INT32, " (-1: as many layers on the GPUs as fit)"),
    "main_gpu": (0, _MAX_INT32, ""),
    "num_thread": (0, _MAX_INT32, " (0: Ollama chooses)"),
    "seed": (-MAX_EXACT_INTEGER, MAX_EXACT_INTEGER, ""),
}
# Ollama's float options.
FLOAT_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    }
)

# Go's duration units, in nanoseconds (both spellings of micro).
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
# A bare number of seconds in a string ("300"): not a Go duration, taken by the mesh.
_PLAIN_SECONDS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DURATION_HELP = (
    'a number of seconds or a duration like "5m" or "1h30m" (negative: for ever), '
    f"at most {MAX_KEEP_ALIVE_SECONDS} s (about 292 years)"
)


class OutOfRange(ValueError):
    """A value no request may carry; the message names the field, the value and the bound."""


def duration_seconds(text: str) -> float:
    """The seconds in ``text``: a Go duration ("5m", "1h30m", "-1s", "0"), as Ollama's
    keep_alive takes one, or a bare decimal number of seconds ("300"), which the mesh takes
    too. Raises ValueError with Go's own message (``time.ParseDuration``'s) for anything
    else, or for one longer than a Go duration holds."""
    if _PLAIN_SECONDS.fullmatch(text):
        seconds = float(text)
        if abs(seconds) > MAX_KEEP_ALIVE_SECONDS:
            raise ValueError(f"time: invalid duration {_go_quote(text)}")
        return seconds
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"time: invalid duration {_go_quote(text)}")
    total_ns = 0
    at = 0
    while at < len(body):
        part = _PART.match(body, at)
        assert part is not None  # every group may be empty
        whole, fraction, unit = part.groups()
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {_go_quote(text)}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {_go_quote(text)}")
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(text)}")
        if len(whole.lstrip("0")) > 19:  # more than any int64 holds, as Go finds
            raise ValueError(f"time: invalid duration {_go_quote(text)}")
        scale = _UNIT_NS[unit]
        total_ns += int(whole or 0) * scale
        if fraction:
            fraction = fraction[:18]  # finer than a nanosecond in any unit
            total_ns += int(fraction) * scale // 10 ** len(fraction)
        at = part.end()
    negative = text.startswith("-")
    if total_ns > (1 << 63) - (0 if negative else 1):
        raise ValueError(f"time: invalid duration {_go_quote(text)}")
    return -total_ns / 1e9 if negative else total_ns / 1e9


def keep_alive(value: object) -> str:
    """A request's keep_alive (a number of seconds, a duration string, or None) as a Go
    duration string every Ollama takes; "" when it has none. Raises OutOfRange for one that
    is not a duration, is longer than Ollama's longest, or is not finite."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ""
        try:
            seconds = duration_seconds(text)
        except ValueError as exc:
            raise OutOfRange(f"keep_alive {text[:80]!r} is not {_DURATION_HELP} ({exc})") from None
        return _seconds_text(seconds) if _PLAIN_SECONDS.fullmatch(text) else text
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRange(f"keep_alive must be {_DURATION_HELP}, not {type(value).__name__}")
    seconds = _as_float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise OutOfRange(f"keep_alive {value} is not {_DURATION_HELP}")
    if seconds < 0:
        return "-1s"  # Ollama: a negative number keeps the model loaded for ever
    if seconds > MAX_KEEP_ALIVE_SECONDS:
        raise OutOfRange(
            f"keep_alive of {_shown(value)} seconds is longer than the longest duration "
            f"Ollama takes ({MAX_KEEP_ALIVE_SECONDS} s, about 292 years); a negative "
            "keep_alive keeps the model loaded for ever"
        )
    return _seconds_text(seconds)


def check_options(options: Mapping[str, object]) -> None:
    """Refuse (OutOfRange) Ollama options a node would refuse or misread: an integer option
    outside its range (``INTEGER_OPTIONS``), a float option past float32, any number that
    is not finite, a number option that is not a number. Unknown options pass, as Ollama
    ignores them, but their numbers must be finite too."""
    for key, value in options.items():
        where = f"options.{key}"
        if key in INTEGER_OPTIONS:
            low, high, meaning = INTEGER_OPTIONS[key]
            number = _number(where, value, "an integer")
            if not low <= number <= high:
                raise OutOfRange(
                    f"{where} must be between {low} and {high}, not {_shown(value)}{meaning}"
                )
        elif key in FLOAT_OPTIONS:
            number = _number(where, value, "a number")
            if abs(number) > MAX_FLOAT32:
                raise OutOfRange(f"{where} {_shown(value)} is larger than Ollama takes")
        else:
            _finite(where, value)


def _number(where: str, value: object, kind: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRange(f"{where} must be {kind}, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise OutOfRange(f"{where} must be a finite number, not {value}")
    return _as_float(value)  # infinite for an integer past any double


def _finite(where: str, value: object) -> None:
    """Every number in ``value`` (an option's JSON value) finite and a double."""
    found = unrepresentable_at(value)
    if found is None:
        return
    path, number = found
    at = ".".join([where, *map(str, path)])
    if isinstance(number, float):
        raise OutOfRange(f"{at} must be a finite number, not {number}")
    raise OutOfRange(f"{at} {_shown(number)} is larger than a request may carry")


# Why a JSON value with such a number is refused (after what holds it).
NOT_FINITE = (
    "holds NaN, Infinity or a number past a double: JSON numbers must be finite (up to "
    "about 1.8e308)"
)


def unrepresentable_at(value: object) -> tuple[tuple[str | int, ...], int | float] | None:
    """Where in ``value`` (decoded JSON) the first number no double holds sits — NaN or an
    infinity (Python's decoder reads ``NaN``, ``Infinity`` and ``1e309`` so), or an
    integer past the largest double — and that number; None when every number is one.
    Every hop that encodes JSON refuses such a number (a node's, three attempts running),
    so the gateway, the coordinator and the option checks refuse it first. Iterative: a
    body may nest as deep as the JSON decoder allows."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int | float):
            if not math.isfinite(_as_float(item)):
                return where, item
        elif isinstance(item, Mapping):
            stack.extend((inner, (*where, key)) for key, inner in reversed(list(item.items())))
        elif isinstance(item, Sequence):
            stack.extend((inner, (*where, i)) for i, inner in reversed(list(enumerate(item))))
    return None


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer larger than any double
        return math.inf if value > 0 else -math.inf


def _shown(value: object) -> str:
    """A number as a message shows it: 1e+104, not its 105 digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)
    number = _as_float(value)
    if math.isinf(number) and isinstance(value, int):
        return "over 1e308"
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return f"{number:g}"


def _seconds_text(seconds: float) -> str:
    """``seconds`` as a Go duration string ("300s", "0.5s", "-1s" for any negative)."""
    if seconds < 0:
        return "-1s"
    if seconds.is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
