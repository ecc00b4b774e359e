"""How CLI commands print: JSON for scripts (``--json``), rich tables for people.

``--json`` writes what the REST API writes for the same thing (gateway/schemas.py's
models where the REST API has one): enum values as their short lower-case names
(``"succeeded"``, ``"high"``), 64-bit numbers as numbers, every field present with its
zero value, timestamps as RFC 3339 strings in UTC (``null`` when unset). ``rest_dict``
applies those conventions to a protobuf message the REST API has no model for.

Off a terminal (a pipe, a file) nothing is cut to a width: tables are as wide as their
widest cell and lines as long as their text, so ids and names come through whole.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from pydantic import BaseModel, TypeAdapter
from rich.console import Console

# Wide enough for any table row: off a terminal the width is no limit at all.
UNLIMITED_WIDTH = 1_000_000
_DATETIME = TypeAdapter(datetime)


def print_json(data: BaseModel | Message | dict[str, Any] | list[Any]) -> None:
    """``data`` as indented JSON on stdout in the REST API's conventions: a pydantic model
    as the REST API serialises it, a protobuf message through ``rest_dict``."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, Message):
        data = rest_dict(data)
    print(json.dumps(data, indent=2))


def rest_time(ts: timestamp_pb2.Timestamp) -> str | None:
    """A protobuf timestamp as the REST API writes one (pydantic's RFC 3339, ``Z``), or
    None when unset (the zero value)."""
    if not ts.seconds and not ts.nanos:
        return None
    written: str = _DATETIME.dump_python(ts.ToDatetime(tzinfo=UTC), mode="json")
    return written


def rest_dict(message: Message) -> dict[str, Any]:
    """A protobuf message in the REST API's conventions: every field (zero values too),
    enums as short lower-case names (``TASK_STATE_SUCCEEDED`` -> ``succeeded``), integers
    as numbers (protobuf's JSON writes 64-bit ones as strings), timestamps as
    ``rest_time`` writes them, maps as objects, an unset member of a oneof as null."""
    out: dict[str, Any] = {}
    fields: Any = message.DESCRIPTOR.fields  # the upb descriptors' typing is partial
    for field in fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {str(k): _value(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.message_type is not None and field.containing_oneof is not None:
            out[field.name] = _value(field, value) if message.HasField(field.name) else None
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: Any, value: Any) -> Any:
    if field.enum_type is not None:
        return enum_value_name(field.enum_type, value)
    if field.message_type is None:
        return value  # int, float, bool, str: JSON's own (bytes do not occur in hive.v1)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return rest_time(value)
    if field.message_type.full_name == "google.protobuf.Struct":
        return json_format.MessageToDict(value)
    return rest_dict(value)


def enum_value_name(enum: Any, number: int) -> str | int:
    """``TASK_STATE_SUCCEEDED`` of enum ``TaskState`` as ``succeeded``: the value's name
    without the enum's UPPER_SNAKE prefix, lower case (a number no name has stays one)."""
    value = enum.values_by_number.get(number)
    if value is None:
        return number
    prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum.name).lstrip("_") + "_"
    name: str = value.name
    return name.removeprefix(prefix).lower()


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) is a terminal a person reads."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def table_console(min_width: int = 0, *, stderr: bool = False) -> Console:
    """The console a command prints its tables on. On a terminal: its width, at least
    ``min_width`` so wide tables stay readable; off one: no width limit, so no cell is
    cut or folded (a script gets every id whole)."""
    if not on_terminal(sys.stderr if stderr else sys.stdout):
        return Console(width=UNLIMITED_WIDTH, stderr=stderr)
    console = Console(stderr=stderr)
    if console.width < min_width:
        return Console(width=min_width, stderr=stderr)
    return console


def wide_console(min_width: int = 110) -> Console:
    """``table_console(min_width)``: tables stay readable on a narrow terminal and whole
    off one."""
    return table_console(min_width)
