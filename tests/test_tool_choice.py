"""``tool_choice`` honoured on OpenAI's /v1/chat/completions and /v1/responses and on
Anthropic's /v1/messages, through the official clients against a real in-process cluster
(issue 21): it was silently ignored ("none" still called tools, "required" or a named
tool got text).

Ollama has no tool_choice, so the gateway honours it around the model
(``hive.tool_calls.ToolChoice``): "none" offers no tools; "required" / Anthropic's "any"
and a named tool demand a call (a named one is the only tool offered) and an answer
without one is asked again, once, told to call; if that one has none either the answer
is a 502 in the API's shape. The emulated model decides as ``ollama_emulator.text`` says:
it calls a tool its last message names, answers "Say hello" in words (ignoring the
tools: the second asking, which names the tool, gets the call), and a user who said
"without tools" gets words however often asked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio

from hive.cli.dev import DevCluster
from tests.conftest import WEATHER_TOOL, running_dev

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = "llama3.1:8b"
CLOCK_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOLS: Any = [WEATHER_TOOL, CLOCK_TOOL]
# The same tools as Anthropic's and the Responses API's clients write them.
CLAUDE_TOOLS: Any = [
    {
        "name": t["function"]["name"],
        "description": t["function"]["description"],
        "input_schema": t["function"]["parameters"],
    }
    for t in TOOLS
]
RESPONSES_TOOLS: Any = [{"type": "function", **t["function"]} for t in TOOLS]

WEATHER = "What is the weather in Paris?"  # the model calls get_weather when offered it
HELLO = "Say hello"  # the model answers in words, tools or not: until told to call one
STUBBORN = "Say hello, without tools."  # words, however often it is asked
BOTH = "Call get_weather and get_time for Paris."  # two calls at once (parallel)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevCluster]:
    state = tmp_path_factory.mktemp("tool-choice") / "hive-state.sqlite"
    async with running_dev(gateway_port=0, state_path=str(state)) as dev:
        yield dev


def _openai(gw: DevCluster) -> openai.AsyncOpenAI:
    assert gw.gateway is not None
    return openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="x", max_retries=0)


def _claude(gw: DevCluster) -> anthropic.AsyncAnthropic:
    assert gw.gateway is not None
    return anthropic.AsyncAnthropic(base_url=gw.gateway.url, api_key="x", max_retries=0)


def _asked(gw: DevCluster) -> int:
    """Chat and generate requests the cluster's Ollamas have received so far."""
    return sum(e.stats.requests_total for e in gw.emulators.values())


def _user(text: str) -> Any:
    return [{"role": "user", "content": text}]


# --- OpenAI /v1/chat/completions ---------------------------------------------------------


async def _chat(oa: openai.AsyncOpenAI, text: str, **options: Any) -> Any:
    options.setdefault("tools", TOOLS)
    return await oa.chat.completions.create(model=MODEL, messages=_user(text), **options)


def _called(completion: Any) -> list[str]:
    return [c.function.name for c in completion.choices[0].message.tool_calls or ()]


async def test_chat_completions_honour_each_tool_choice(gw: DevCluster) -> None:
    oa = _openai(gw)
    # auto: as before, the model decides.
    assert _called(await _chat(oa, WEATHER)) == ["get_weather"]
    assert _called(await _chat(oa, WEATHER, tool_choice="auto")) == ["get_weather"]
    assert _called(await _chat(oa, HELLO, tool_choice="auto")) == []

    # none: the model is offered no tools, so it answers in words.
    none = await _chat(oa, WEATHER, tool_choice="none")
    assert _called(none) == [] and none.choices[0].message.content
    assert none.choices[0].finish_reason == "stop"

    # required: a model that answered in words is asked again, told to call, and calls.
    before = _asked(gw)
    required = await _chat(oa, HELLO, tools=[WEATHER_TOOL], tool_choice="required")
    assert _asked(gw) - before == 2  # the retry
    assert _called(required) == ["get_weather"]
    assert required.choices[0].finish_reason == "tool_calls"
    assert "city" in json.loads(required.choices[0].message.tool_calls[0].function.arguments)
    before = _asked(gw)
    assert _called(await _chat(oa, WEATHER, tool_choice="required")) == ["get_weather"]
    assert _asked(gw) - before == 1  # a call at once: no retry

    # A named function: the only tool offered, and the one called, whatever is asked.
    named = {"type": "function", "function": {"name": "get_time"}}
    assert _called(await _chat(oa, WEATHER, tool_choice=named)) == ["get_time"]
    assert _called(await _chat(oa, HELLO, tool_choice=named)) == ["get_time"]

    # allowed_tools: only those offered; "required" demands a call to one of them.
    allowed: Any = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [CLOCK_TOOL]},
    }
    assert _called(await _chat(oa, WEATHER, tool_choice=allowed)) == ["get_time"]
    allowed["allowed_tools"]["mode"] = "auto"
    assert _called(await _chat(oa, WEATHER, tool_choice=allowed)) == []  # weather not offered

    # parallel_tool_calls false: at most one call, the first.
    assert _called(await _chat(oa, BOTH)) == ["get_weather", "get_time"]
    single = await _chat(oa, BOTH, parallel_tool_calls=False)
    assert _called(single) == ["get_weather"]
    assert single.choices[0].finish_reason == "tool_calls"


async def test_chat_completions_streamed_tool_choice(gw: DevCluster) -> None:
    """A stream that must be a call is sent once the answer is known to be one (the first
    asking's words are never streamed); "none" and parallel_tool_calls hold in a stream."""
    oa = _openai(gw)

    async def streamed(text: str, **options: Any) -> tuple[list[str], str, str | None]:
        chunks = [c async for c in await _chat(oa, text, stream=True, **options)]
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        calls = [t.function.name for d in deltas for t in d.tool_calls or () if t.function]
        said = "".join(d.content or "" for d in deltas)
        return calls, said, chunks[-1].choices[0].finish_reason

    calls, said, finish = await streamed(HELLO, tool_choice="required")
    # Told to call one of the two, the model calls both (parallel calls).
    assert calls == ["get_weather", "get_time"] and said == "" and finish == "tool_calls"
    calls, said, finish = await streamed(WEATHER, tool_choice="none")
    assert calls == [] and said and finish == "stop"
    named = {"type": "function", "function": {"name": "get_time"}}
    assert (await streamed(WEATHER, tool_choice=named))[0] == ["get_time"]
    assert (await streamed(BOTH, parallel_tool_calls=False))[0] == ["get_weather"]
    # No call after the retry either: an HTTP error before the stream starts.
    with pytest.raises(openai.APIStatusError) as unmet:
        await _chat(oa, STUBBORN, tool_choice="required", stream=True)
    assert unmet.value.status_code == 502


async def test_chat_completions_report_a_call_the_model_would_not_make(gw: DevCluster) -> None:
    oa = _openai(gw)
    before = _asked(gw)
    with pytest.raises(openai.InternalServerError) as unmet:
        await _chat(oa, STUBBORN, tool_choice="required")
    assert _asked(gw) - before == 2  # asked, then asked again: no more
    assert unmet.value.status_code == 502
    error = unmet.value.body
    assert isinstance(error, dict)
    assert error["param"] == "tool_choice" and error["code"] == "tool_choice_unmet"
    assert "answered in text" in error["message"] and '"required"' in error["message"]
    named = {"type": "function", "function": {"name": "get_time"}}
    with pytest.raises(openai.InternalServerError) as unmet:
        await _chat(oa, STUBBORN, tool_choice=named)
    assert "`get_time`" in unmet.value.message


async def test_chat_completions_refuse_what_cannot_be_honoured(gw: DevCluster) -> None:
    oa = _openai(gw)
    before = _asked(gw)

    async def refused(**options: Any) -> Any:
        with pytest.raises(openai.BadRequestError) as err:
            await _chat(oa, WEATHER, **options)
        assert err.value.status_code == 400
        body = err.value.body
        assert isinstance(body, dict)
        return body

    missing = await refused(tool_choice={"type": "function", "function": {"name": "get_news"}})
    assert missing["param"] == "tool_choice"
    assert "`get_news`" in missing["message"] and "`get_weather`" in missing["message"]
    bare = await refused(tools=None, tool_choice="required")
    assert bare["param"] == "tool_choice" and "no function tools" in bare["message"]
    named_bare = {"type": "function", "function": {"name": "get_time"}}
    assert (await refused(tools=None, tool_choice=named_bare))["param"] == "tool_choice"
    assert '"any" is not one of' in (await refused(tool_choice="any"))["message"]
    custom = await refused(tool_choice={"type": "custom", "custom": {"name": "grep"}})
    assert "custom tools are not supported" in custom["message"]
    shapeless = await refused(tool_choice={"type": "function"})
    assert "function.name" in shapeless["message"]
    builtin = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "x"}]}}
    assert "function tools only" in (await refused(tool_choice=builtin))["message"]
    flag = await refused(extra_body={"parallel_tool_calls": "sometimes"})
    assert flag["param"] == "parallel_tool_calls"
    assert _asked(gw) == before  # refused before any node was asked
    # What needs no call is honoured without tools.
    plain = await _chat(oa, WEATHER, tools=None, tool_choice="none", parallel_tool_calls=False)
    assert _called(plain) == [] and plain.choices[0].message.content


# --- Anthropic /v1/messages ----------------------------------------------------------------


async def _message(claude: anthropic.AsyncAnthropic, text: str, **options: Any) -> Any:
    options.setdefault("tools", CLAUDE_TOOLS)
    return await claude.messages.create(model=MODEL, max_tokens=64, messages=_user(text), **options)


def _used(message: Any) -> list[str]:
    return [b.name for b in message.content if b.type == "tool_use"]


async def test_anthropic_messages_honour_each_tool_choice(gw: DevCluster) -> None:
    claude = _claude(gw)
    assert _used(await _message(claude, WEATHER, tool_choice={"type": "auto"})) == ["get_weather"]
    none = await _message(claude, WEATHER, tool_choice={"type": "none"})
    assert _used(none) == [] and none.stop_reason != "tool_use"
    assert [b.type for b in none.content] == ["text"]

    before = _asked(gw)
    anyone = await _message(claude, HELLO, tools=CLAUDE_TOOLS[:1], tool_choice={"type": "any"})
    assert _asked(gw) - before == 2  # the retry
    assert _used(anyone) == ["get_weather"] and anyone.stop_reason == "tool_use"
    named = {"type": "tool", "name": "get_time"}
    assert _used(await _message(claude, WEATHER, tool_choice=named)) == ["get_time"]
    assert _used(await _message(claude, HELLO, tool_choice=named)) == ["get_time"]

    assert _used(await _message(claude, BOTH)) == ["get_weather", "get_time"]
    one = {"type": "auto", "disable_parallel_tool_use": True}
    assert _used(await _message(claude, BOTH, tool_choice=one)) == ["get_weather"]
    one_of_any = {"type": "any", "disable_parallel_tool_use": True}
    assert _used(await _message(claude, BOTH, tool_choice=one_of_any)) == ["get_weather"]

    # Streamed: sent once the answer is known to be a call.
    async with claude.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=_user(HELLO),
        tools=CLAUDE_TOOLS[:1],
        tool_choice={"type": "any"},
    ) as stream:
        final = await stream.get_final_message()
    assert _used(final) == ["get_weather"] and final.stop_reason == "tool_use"
    assert "city" in final.content[-1].input


async def test_anthropic_messages_report_and_refuse(gw: DevCluster) -> None:
    claude = _claude(gw)
    before = _asked(gw)
    with pytest.raises(anthropic.APIStatusError) as unmet:
        await _message(claude, STUBBORN, tool_choice={"type": "any"})
    assert _asked(gw) - before == 2
    assert unmet.value.status_code == 502
    assert unmet.value.body["error"]["type"] == "api_error"
    assert "answered in text" in unmet.value.body["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as unmet:
        async with claude.messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=_user(STUBBORN),
            tools=CLAUDE_TOOLS,
            tool_choice={"type": "tool", "name": "get_time"},
        ) as stream:
            await stream.get_final_message()
    assert unmet.value.status_code == 502

    before = _asked(gw)

    async def refused(**options: Any) -> str:
        with pytest.raises(anthropic.BadRequestError) as err:
            await _message(claude, WEATHER, **options)
        assert err.value.body["error"]["type"] == "invalid_request_error"
        message: str = err.value.body["error"]["message"]
        assert message.startswith("tool_choice")
        return message

    missing = await refused(tool_choice={"type": "tool", "name": "get_news"})
    assert "`get_news`" in missing and "`get_time`" in missing
    assert "no function tools" in await refused(tools=[], tool_choice={"type": "any"})
    assert "'any'" in await refused(tool_choice={"type": "sometimes"})
    assert "tool_choice.name" in await refused(tool_choice={"type": "tool"})
    flag = {"type": "auto", "disable_parallel_tool_use": "yes"}
    assert "disable_parallel_tool_use" in await refused(tool_choice=flag)
    extra = {"type": "none", "disable_parallel_tool_use": True}
    assert "not a field of a 'none'" in await refused(tool_choice=extra)
    assert _asked(gw) == before


# --- OpenAI /v1/responses ------------------------------------------------------------------


async def _respond(oa: openai.AsyncOpenAI, text: str, **options: Any) -> Any:
    options.setdefault("tools", RESPONSES_TOOLS)
    return await oa.responses.create(model=MODEL, input=text, **options)


def _functions(response: Any) -> list[str]:
    return [o.name for o in response.output if o.type == "function_call"]


async def test_responses_honour_each_tool_choice(gw: DevCluster) -> None:
    oa = _openai(gw)
    assert _functions(await _respond(oa, WEATHER, tool_choice="auto")) == ["get_weather"]
    none = await _respond(oa, WEATHER, tool_choice="none")
    assert _functions(none) == [] and none.output_text and none.tool_choice == "none"

    before = _asked(gw)
    required = await _respond(oa, HELLO, tools=RESPONSES_TOOLS[:1], tool_choice="required")
    assert _asked(gw) - before == 2
    assert _functions(required) == ["get_weather"] and required.tool_choice == "required"
    named: Any = {"type": "function", "name": "get_time"}
    called = await _respond(oa, WEATHER, tool_choice=named)
    assert _functions(called) == ["get_time"]
    assert called.tool_choice.type == "function" and called.tool_choice.name == "get_time"
    allowed: Any = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    assert _functions(await _respond(oa, HELLO, tool_choice=allowed)) == ["get_time"]

    assert _functions(await _respond(oa, BOTH)) == ["get_weather", "get_time"]
    single = await _respond(oa, BOTH, parallel_tool_calls=False)
    assert _functions(single) == ["get_weather"] and single.parallel_tool_calls is False

    async with oa.responses.stream(
        model=MODEL, input=HELLO, tools=RESPONSES_TOOLS, tool_choice=named
    ) as stream:
        events = [e async for e in stream]
    assert events[-1].type == "response.completed"
    assert _functions(events[-1].response) == ["get_time"]
    assert not [e for e in events if e.type == "response.output_text.delta"]


async def test_responses_report_and_refuse(gw: DevCluster) -> None:
    oa = _openai(gw)
    with pytest.raises(openai.InternalServerError) as unmet:
        await _respond(oa, STUBBORN, tool_choice="required")
    assert unmet.value.status_code == 502
    body = unmet.value.body
    assert isinstance(body, dict) and body["code"] == "tool_choice_unmet"
    with pytest.raises(openai.APIStatusError) as unmet:
        async with oa.responses.stream(
            model=MODEL, input=STUBBORN, tools=RESPONSES_TOOLS, tool_choice="required"
        ) as stream:
            await stream.get_final_response()
    assert unmet.value.status_code == 502

    before = _asked(gw)

    async def refused(**options: Any) -> str:
        with pytest.raises(openai.BadRequestError) as err:
            await _respond(oa, WEATHER, **options)
        body = err.value.body
        assert isinstance(body, dict) and body["param"] == "tool_choice"
        message: str = body["message"]
        return message

    missing = await refused(tool_choice={"type": "function", "name": "get_news"})
    assert "`get_news`" in missing
    assert "no function tools" in await refused(tools=[], tool_choice="required")
    assert "built-in" in await refused(tool_choice={"type": "web_search_preview"})
    hosted: Any = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}
    assert "function tools only" in await refused(tool_choice=hosted)
    assert _asked(gw) == before
