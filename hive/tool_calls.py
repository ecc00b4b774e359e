"""Tool calls as the contract carries them (``hive.v1.ToolCall``), shared by the gateway
(calls in client messages) and the node agent (calls in Ollama's answers)."""

from __future__ import annotations

import json
from typing import Any

from hive.v1 import common_pb2


def tool_call(name: str, arguments: Any) -> common_pb2.ToolCall:
    """A call with ``arguments`` as an object, or as JSON text (as OpenAI sends them and
    some models' templates write them), which is kept as written."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return common_pb2.ToolCall(name=name, arguments_json=text or "{}")
