"""How CLI commands print: JSON for scripts (``--json``), rich tables for people."""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console


def print_json(message: Message) -> None:
    """A protobuf message as indented JSON, field names as the proto spells them."""
    print(
        json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2)
    )


def wide_console(min_width: int = 110) -> Console:
    """A console at least ``min_width`` columns wide, so tables stay readable in a pipe."""
    return Console(width=max(Console().width, min_width))
