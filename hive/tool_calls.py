"""Tool calls as the contract carries them (``hive.v1.ToolCall``), shared by the gateway
(calls in client messages) and the node agent (calls in Ollama's answers), and what a
caller's ``tool_choice`` asks of them (``ToolChoice``), which the gateway's OpenAI and
Anthropic APIs honour around Ollama, which has no ``tool_choice`` of its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hive.v1 import common_pb2


def tool_call(name: str, arguments: Any) -> common_pb2.ToolCall:
    """A call with ``arguments`` as an object, or as JSON text (as OpenAI sends them and
    some models' templates write them), which is kept as written."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return common_pb2.ToolCall(name=name, arguments_json=text or "{}")


def tool_name(tool: str) -> str:
    """The function name of a tool as the contract carries it (Ollama's ``{"type":
    "function", "function": {"name": ...}}`` as JSON text); "" if it names none."""
    try:
        value = json.loads(tool)
    except ValueError:
        return ""
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else ""


Mode = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """What a caller's ``tool_choice`` (and parallel-calls switch) asks of an answer, in
    the terms of every API: OpenAI's ``"none"`` / ``"auto"`` / ``"required"`` / a named
    function / ``allowed_tools``, Anthropic's ``none`` / ``auto`` / ``any`` / ``tool``.

    Ollama cannot be told, so it is honoured around the model: ``none`` offers it no tools
    (so it cannot call one); ``auto`` offers the ``allowed`` ones (every tool when None)
    and takes whatever it answers; ``required`` offers the allowed ones and takes only an
    answer that calls them (``honoured_by``), which the gateway asks for once more, told
    so (``reask``), before it reports that it could not be had. ``single``: at most one
    call (OpenAI's ``parallel_tool_calls: false``, Anthropic's
    ``disable_parallel_tool_use``), honoured by keeping the first call of an answer: what
    a model stopped after its first call would have said. ``said`` is the caller's value,
    for messages."""

    mode: Mode = "auto"
    allowed: tuple[str, ...] | None = None
    single: bool = False
    said: str = '"auto"'

    @property
    def demands_call(self) -> bool:
        return self.mode == "required"

    def offered(self, tools: Sequence[str]) -> list[str]:
        """The tools (the contract's JSON text) the model is offered."""
        if self.mode == "none":
            return []
        if self.allowed is None:
            return list(tools)
        return [t for t in tools if tool_name(t) in self.allowed]

    def problem(self, names: Sequence[str]) -> str:
        """Why this choice cannot be honoured over tools named ``names`` (the request's
        function tools), or "". A choice that needs no call is honoured without tools;
        one that demands a call, or names a tool, needs the tool among them."""
        unknown = [n for n in self.allowed or () if n not in names]
        if unknown:
            offered = ", ".join(f"`{n}`" for n in names) or "none"
            return (
                f"{self.said} names the tool `{unknown[0]}`, which is not among the "
                f"request's function tools (they are: {offered})"
            )
        if self.demands_call and not (names if self.allowed is None else self.allowed):
            what = "function tools" if self.allowed is None else "allowed tools"
            return f"{self.said} demands a call to a tool, and the request has no {what}"
        return ""

    def honoured_by(self, calls: Sequence[common_pb2.ToolCall], names: Sequence[str]) -> bool:
        """Whether an answer making ``calls`` honours the choice when the model was offered
        tools named ``names``: a demanded call is there, and every call is to one of them
        (a call to a tool it was not offered counts as none)."""
        if not self.demands_call:
            return True
        return bool(calls) and all(c.name in names for c in calls)

    def reask(self, names: Sequence[str]) -> str:
        """The instruction added (as a last system message) when the question is asked
        again because the answer did not honour the choice."""
        if len(names) == 1:
            return f"Answer with a call to the function `{names[0]}` (a tool call), not with text."
        listed = ", ".join(f"`{n}`" for n in names)
        return f"Answer with a call to one of the functions {listed} (a tool call), not with text."

    def unmet(self, calls: Sequence[common_pb2.ToolCall], names: Sequence[str]) -> str:
        """What the answer did instead of honouring the choice, for the caller's error."""
        wanted = f"`{names[0]}`" if len(names) == 1 else "one of the offered tools"
        others = [c.name for c in calls if c.name not in names]
        if others:
            return f"the model called `{others[0]}`, a tool it was not offered, not {wanted}"
        return f"the model answered in text, not with a call to {wanted}"
