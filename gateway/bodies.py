"""Request bodies of the compatible APIs must be Unicode text with finite numbers: a check
their routers run before any route reads the body.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``; RFC 8259 allows the escape, I-JSON
does not), and Python decodes it into a ``str`` that is not Unicode text: protobuf refuses
to carry it and no JSON answer can encode it. It surfaced as a text/plain 500 with a
traceback from whichever line touched it first (issue 17).

Numbers too: Python's decoder reads ``NaN``, ``Infinity`` (not JSON) and ``1e309`` (past
any double) as non-finite floats, and an integer of 400 digits as an int no double holds.
In a field the gateway checks (options, keep_alive) that was refused already; in free-form
JSON (a tool's parameter schema, a ``format`` schema, a tool call's arguments) it reached
a node, whose JSON encoder refused it, three attempts in a row, as a 502 and a failed task
(issue 21).

Both are refused here once, naming where they are, as invalid input, which each API
answers in its own error shape (``gateway.app``'s handler for ``RequestValidationError``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from hive import limits

_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_MESSAGE = (
    "holds a lone UTF-16 surrogate, which is not a character: text must be Unicode "
    "(a character beyond U+FFFF is escaped as a pair, e.g. \\ud83d\\ude00)"
)
_NUMBER_MESSAGE = (
    "must be a finite number a double can hold (JSON has no NaN or Infinity; "
    "the largest magnitude is about 1.8e308)"
)
# What a body must contain for the decoder to produce a number no double holds: NaN or
# Infinity, an exponent of three digits, or a run of 309 digits. Bodies without any of
# these (nearly all) skip the walk.
_MAYBE_HUGE = re.compile(rb"NaN|Infinity|[eE][+-]?\d{3}|\d{309}")
Path = tuple[str | int, ...]


async def checked_body(request: Request) -> None:
    """Refuse a JSON body with a lone surrogate or a number no double holds anywhere in
    it, as invalid input."""
    body = await request.body()
    surrogates = b"\\u" in body
    if not surrogates:
        try:
            body.decode("utf-8")  # strict: valid UTF-8 holds no surrogate
        except UnicodeDecodeError:
            surrogates = True  # Python's JSON decoder lets encoded surrogates through: look
    if not surrogates and not _MAYBE_HUGE.search(body):
        return
    try:
        data = await request.json()  # kept on the request: the route reads this one
    except ValueError:
        return  # not JSON: the route's own parsing answers that
    found = _surrogate_at(data, ("body",)) if surrogates else None
    if found is not None:
        kind, message = "string_unicode", _SURROGATE_MESSAGE
    elif (number := limits.unrepresentable_at(data)) is not None:
        found = ("body", *number[0])
        kind, message = "finite_number", _NUMBER_MESSAGE
    if found is not None:
        raise RequestValidationError([{"type": kind, "loc": found, "msg": message, "input": None}])


CHECKED_BODY = Depends(checked_body)


def _surrogate_at(value: Any, path: Path) -> Path | None:
    """Where in ``value`` (decoded JSON) a string or key holds a surrogate; None: nowhere.
    Iterative: a body may nest as deep as the JSON decoder allows."""
    stack: list[tuple[Any, Path]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                if _SURROGATE.search(key):
                    return (*where, key.encode("utf-8", "backslashreplace").decode())
                stack.append((inner, (*where, key)))
        elif isinstance(item, list):
            stack.extend((inner, (*where, i)) for i, inner in reversed(list(enumerate(item))))
    return None
