"""Request bodies of the compatible APIs must be Unicode text: a check their routers run
before any route reads the body.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``; RFC 8259 allows the escape, I-JSON
does not), and Python decodes it into a ``str`` that is not Unicode text: protobuf refuses
to carry it and no JSON answer can encode it. It surfaced as a text/plain 500 with a
traceback from whichever line touched it first (issue 17). Refused here once, naming where
it is, as invalid input, which each API answers in its own error shape
(``gateway.app``'s handler for ``RequestValidationError``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE = (
    "holds a lone UTF-16 surrogate, which is not a character: text must be Unicode "
    "(a character beyond U+FFFF is escaped as a pair, e.g. \\ud83d\\ude00)"
)


async def unicode_only(request: Request) -> None:
    """Refuse a JSON body with a lone surrogate anywhere in it, as invalid input."""
    body = await request.body()
    if b"\\u" not in body:
        try:
            body.decode("utf-8")  # strict: valid UTF-8 holds no surrogate
            return
        except UnicodeDecodeError:
            pass  # Python's JSON decoder lets encoded surrogates through: look
    try:
        data = await request.json()  # kept on the request: the route reads this one
    except ValueError:
        return  # not JSON: the route's own parsing answers that
    where = _surrogate_at(data, ("body",))
    if where is not None:
        raise RequestValidationError(
            [{"type": "string_unicode", "loc": where, "msg": _MESSAGE, "input": None}]
        )


UNICODE_ONLY = Depends(unicode_only)


def _surrogate_at(value: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """Where in ``value`` (decoded JSON) a string or key holds a surrogate; None: nowhere.
    Iterative: a body may nest as deep as the JSON decoder allows."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
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
