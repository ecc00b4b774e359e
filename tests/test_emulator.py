"""The Ollama emulator over real HTTP, mostly through the official ``ollama`` client."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import ollama
import pytest

from hive import hardware
from ollama_emulator import EmulatorConfig, OllamaEmulator, decode_rate
from ollama_emulator.api import parse_keep_alive
from ollama_emulator.cli import main as cli_main
from tests.conftest import PNG, WEATHER_TOOL

GTX_1070 = hardware.gpu_kind("NVIDIA GeForce GTX 1070")  # 8 GiB
RTX_4090 = hardware.gpu_kind("NVIDIA GeForce RTX 4090")
LLAMA = "llama3.1:8b"  # 4.9 GB
CODELLAMA_13B = "codellama:13b"  # 7.4 GB: with LLAMA it does not fit in 8 GiB
SMALL = "llama3.2:3b"
TOO_BIG = "deepseek-coder-v2:16b"  # 8.9 GB > 8 GiB
# Long enough that a stream is still running whenever a test looks at it.
ENDLESS = {"num_predict": 1_000_000, "ignore_eos": True}


@asynccontextmanager
async def emulator(**overrides: Any) -> AsyncIterator[OllamaEmulator]:
    fields: dict[str, Any] = {"gpus": [GTX_1070], "models": [LLAMA, CODELLAMA_13B, SMALL]}
    fields.update({"time_scale": 0.0, **overrides})
    emu = OllamaEmulator(EmulatorConfig(**fields))
    await emu.start(host="127.0.0.1", port=0)
    try:
        yield emu
    finally:
        await emu.stop()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds rather than hang."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the emulator's counters have no event to await
            await asyncio.sleep(0.005)


async def test_start_binds_a_free_port_and_serves_root_and_version() -> None:
    async with emulator(version="0.9.9") as emu:
        assert emu.url == f"http://127.0.0.1:{emu.port}"
        assert emu.port != 0
        async with httpx.AsyncClient(base_url=emu.url) as http:
            root = await http.get("/")
            head = await http.head("/")
            version = await http.get("/api/version")
    assert root.text == "Ollama is running"
    assert head.status_code == 200
    assert version.json() == {"version": "0.9.9"}
    with pytest.raises(RuntimeError):
        _ = emu.url


async def test_generate_non_stream_reports_counts_and_modelled_durations() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        answer = await client.generate(
            model=LLAMA, prompt="Why is the sky blue?", options={"num_predict": 25}
        )
    assert answer.done and answer.done_reason == "length"
    assert answer.eval_count == 25
    assert answer.prompt_eval_count == len("Why is the sky blue?") // 4
    assert answer.response and answer.context
    assert answer.load_duration and answer.load_duration > 0
    # Durations are the modelled GPU's, so tokens per second reads as hardware says.
    assert answer.eval_duration and answer.total_duration
    speed = answer.eval_count / (answer.eval_duration / 1e9)
    expected = hardware.decode_tokens_per_second([GTX_1070], hardware.model_kind(LLAMA))
    assert speed == pytest.approx(expected, rel=0.01)
    assert answer.total_duration >= answer.load_duration + answer.eval_duration
    assert emu.stats.completed_total == 1 and emu.stats.loads_total == 1


async def test_generate_stream_yields_pieces_then_a_final_line() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        stream = await client.generate(
            model=LLAMA, prompt="Tell me about clouds", stream=True, options={"num_predict": 12}
        )
        parts = [part async for part in stream]
        whole = await client.generate(
            model=LLAMA, prompt="Tell me about clouds", options={"num_predict": 12}
        )
    assert [p.done for p in parts] == [False] * 12 + [True]
    assert parts[-1].eval_count == 12 and parts[-1].done_reason == "length"
    assert "".join(p.response or "" for p in parts) == whole.response


async def test_stream_is_ndjson_over_raw_http() -> None:
    async with emulator() as emu, httpx.AsyncClient(base_url=emu.url) as http:
        response = await http.post(
            "/api/generate", json={"model": LLAMA, "prompt": "hi", "options": {"num_predict": 3}}
        )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 4 and lines[-1]["done"] is True and "context" in lines[-1]


async def test_chat_stream_and_non_stream_agree() -> None:
    messages = [{"role": "user", "content": "Explain queues briefly."}]
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        reply = await client.chat(model=LLAMA, messages=messages)
        parts = [p async for p in await client.chat(model=LLAMA, messages=messages, stream=True)]
    assert reply.message.role == "assistant" and reply.message.content
    assert reply.done and reply.done_reason == "stop"
    assert reply.eval_count is not None and 40 <= reply.eval_count <= 400
    assert "".join(p.message.content or "" for p in parts) == reply.message.content
    assert parts[-1].done and parts[-1].eval_count == reply.eval_count


async def test_code_prompts_get_a_fenced_block_with_a_file_hint() -> None:
    prompt = "Implement a rate limiter in Python"
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        answer = await client.generate(
            model=LLAMA, prompt=prompt, options={"num_predict": 200, "ignore_eos": True}
        )
        plain = await client.generate(model=LLAMA, prompt="Describe autumn leaves")
    lines = (answer.response or "").splitlines()
    fence = lines.index("```python")
    assert lines[fence - 1].startswith("File: ") and lines[fence - 1].endswith(".py")
    assert "```" in lines[fence + 1 :]
    assert "```" not in (plain.response or "")


async def test_same_seed_same_text_and_other_seed_other_text() -> None:
    async def answer(config_seed: int, option_seed: int | None) -> str:
        async with emulator(seed=config_seed) as emu:
            client = ollama.AsyncClient(host=emu.url)
            options = {"num_predict": 30} | ({} if option_seed is None else {"seed": option_seed})
            result = await client.generate(model=LLAMA, prompt="Say something", options=options)
            return result.response or ""

    first = await answer(7, None)
    assert first == await answer(7, None)
    assert first != await answer(8, None)
    assert first != await answer(7, 123)


async def test_list_show_and_ps() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        listed = await client.list()
        shown = await client.show(CODELLAMA_13B)
        assert (await client.ps()).models == []
        await client.generate(model=SMALL, prompt="hello", keep_alive="10m")
        running = await client.ps()
        loaded = emu.loaded_models()
    assert sorted(m.model or "" for m in listed.models) == sorted([LLAMA, CODELLAMA_13B, SMALL])
    size = hardware.model_kind(LLAMA).size_bytes
    assert any(m.size == size and m.details and m.details.format == "gguf" for m in listed.models)
    assert shown.details and shown.details.parameter_size == "13B"
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.capabilities and "completion" in shown.capabilities
    assert [m.model for m in running.models] == [SMALL]
    only = running.models[0]
    assert only.size_vram == hardware.model_kind(SMALL).size_bytes and only.expires_at
    assert [(name, vram) for name, vram, _ in loaded] == [(SMALL, only.size_vram)]
    (_, _, expires_at), now = loaded[0], asyncio.get_running_loop().time()
    assert 590 < expires_at - now <= 600


async def test_unknown_model_is_404_and_bad_requests_are_400() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        with pytest.raises(ollama.ResponseError) as generate_error:
            await client.generate(model="nope:1b", prompt="hi")
        with pytest.raises(ollama.ResponseError) as chat_error:
            await client.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(ollama.ResponseError) as show_error:
            await client.show("nope:1b")
        async with httpx.AsyncClient(base_url=emu.url) as http:
            bad_json = await http.post("/api/generate", content=b"{not json")
            no_model = await http.post("/api/chat", json={"messages": []})
            bad_keep_alive = await http.post(
                "/api/generate", json={"model": LLAMA, "keep_alive": "soon"}
            )
        errors = emu.stats.errors_total
    assert generate_error.value.status_code == 404
    assert generate_error.value.error == 'model "nope:1b" not found, try pulling it first'
    assert chat_error.value.status_code == 404
    assert show_error.value.status_code == 404
    assert show_error.value.error == "model 'nope:1b' not found"
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
    assert bad_keep_alive.status_code == 400
    assert errors == 6


async def test_model_bigger_than_the_endpoint_is_500() -> None:
    async with emulator(models=[TOO_BIG]) as emu:
        client = ollama.AsyncClient(host=emu.url)
        with pytest.raises(ollama.ResponseError) as error:
            await client.generate(model=TOO_BIG, prompt="hi")
    assert error.value.status_code == 500
    assert error.value.error == (
        "model requires more system memory (8.3 GiB) than is available (8.0 GiB)"
    )


async def test_pull_streams_progress_and_adds_the_model() -> None:
    async with emulator(models=[]) as emu:
        client = ollama.AsyncClient(host=emu.url)
        statuses = [p.status async for p in await client.pull(LLAMA, stream=True)]
        final = await client.pull(SMALL)
        listed = await client.list()
        with pytest.raises(ollama.ResponseError) as streamed_error:
            async for _ in await client.pull("nope:1b", stream=True):
                pass
        with pytest.raises(ollama.ResponseError) as error:
            await client.pull("nope:1b")
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    assert any(s and s.startswith("pulling ") and s != "pulling manifest" for s in statuses)
    assert final.status == "success"
    assert sorted(m.model or "" for m in listed.models) == sorted([LLAMA, SMALL])
    assert "file does not exist" in streamed_error.value.error
    assert error.value.status_code == 500


async def test_empty_prompt_loads_and_keep_alive_zero_unloads() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        loaded = await client.generate(model=LLAMA, keep_alive=-1)
        assert loaded.done_reason == "load" and loaded.response == ""
        assert [m.model for m in (await client.ps()).models] == [LLAMA]
        assert emu.loaded_models()[0].expires_at == math.inf
        unloaded = await client.generate(model=LLAMA, keep_alive=0)
        assert unloaded.done_reason == "unload"
        assert (await client.ps()).models == []
        chat_load = await client.chat(model=SMALL, messages=[])
        assert chat_load.done_reason == "load" and chat_load.message.content == ""
        # keep_alive 0 on a real request unloads as soon as it completes.
        await client.generate(model=LLAMA, prompt="once", keep_alive=0)
        names = [m.model for m in (await client.ps()).models]
        stats = emu.stats
    assert names == [SMALL]
    assert stats.loads_total == 3 and stats.unloads_total == 2


async def test_expired_keep_alive_unloads_on_the_injected_clock() -> None:
    now = [1000.0]
    config = EmulatorConfig(gpus=[GTX_1070], models=[SMALL], time_scale=0.0)
    emu = OllamaEmulator(config, clock=lambda: now[0])
    await emu.start()
    try:
        client = ollama.AsyncClient(host=emu.url)
        await client.generate(model=SMALL, keep_alive="30s")
        assert [m.name for m in emu.loaded_models()] == [SMALL]
        now[0] += 29.0
        assert [m.name for m in emu.loaded_models()] == [SMALL]
        now[0] += 2.0
        assert emu.loaded_models() == []
        assert emu.stats.unloads_total == 1
    finally:
        await emu.stop()


async def test_full_vram_evicts_the_least_recently_used_idle_model() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        await client.generate(model=LLAMA, prompt="first")
        assert [m.name for m in emu.loaded_models()] == [LLAMA]
        await client.generate(model=CODELLAMA_13B, prompt="second")
        running = await client.ps()
        stats = emu.stats
        memory = emu.gpu_activity()[0].memory_used_bytes
    assert [m.model for m in running.models] == [CODELLAMA_13B]
    assert stats.evictions_total == 1 and stats.loads_total == 2
    assert memory == hardware.model_kind(CODELLAMA_13B).size_bytes


async def test_a_model_waits_for_vram_held_by_a_busy_model() -> None:
    async with emulator(time_scale=0.001) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        client = ollama.AsyncClient(host=emu.url)
        body = {"model": LLAMA, "prompt": "long", "options": ENDLESS}
        async with http.stream("POST", "/api/generate", json=body) as busy:
            busy_lines = busy.aiter_lines()  # kept: dropping it closes the stream
            await anext(busy_lines)
            waiting = asyncio.create_task(client.generate(model=CODELLAMA_13B, prompt="next"))
            await eventually(lambda: emu.stats.queued == 1)
            # Busy models are never evicted: the request queues instead.
            assert emu.stats.evictions_total == 0 and not waiting.done()
        answer = await asyncio.wait_for(waiting, 5.0)
    assert answer.done and emu.stats.evictions_total == 1


async def test_slots_are_limited_and_the_next_request_waits() -> None:
    async with (
        emulator(num_parallel=1, time_scale=0.001) as emu,
        httpx.AsyncClient(base_url=emu.url) as http,
    ):
        client = ollama.AsyncClient(host=emu.url)
        body = {"model": LLAMA, "prompt": "long", "options": ENDLESS}
        async with http.stream("POST", "/api/generate", json=body) as first:
            first_lines = first.aiter_lines()  # kept: dropping it closes the stream
            await anext(first_lines)
            second = asyncio.create_task(
                client.generate(model=LLAMA, prompt="short", options={"num_predict": 5})
            )
            await eventually(lambda: emu.stats.queued == 1)
            assert emu.stats.active == 1 and not second.done()
            busy = emu.gpu_activity()[0].utilization_percent
        answer = await asyncio.wait_for(second, 5.0)
    assert answer.eval_count == 5
    assert busy > 0
    assert emu.gpu_activity()[0].utilization_percent == 0


async def test_queue_beyond_max_queue_is_503() -> None:
    async with (
        emulator(num_parallel=1, max_queue=1, time_scale=0.001) as emu,
        httpx.AsyncClient(base_url=emu.url, timeout=10.0) as http,
    ):
        client = ollama.AsyncClient(host=emu.url)
        body = {"model": LLAMA, "prompt": "long", "options": ENDLESS}
        async with http.stream("POST", "/api/generate", json=body) as first:
            first_lines = first.aiter_lines()  # kept: dropping it closes the stream
            await anext(first_lines)
            queued = asyncio.create_task(client.generate(model=LLAMA, prompt="queued"))
            await eventually(lambda: emu.stats.queued == 1)
            with pytest.raises(ollama.ResponseError) as error:
                await client.generate(model=LLAMA, prompt="one too many")
        assert (await asyncio.wait_for(queued, 5.0)).done
    assert error.value.status_code == 503
    assert error.value.error == "server busy, please try again.  maximum pending requests exceeded"


async def test_client_disconnect_mid_stream_cancels_and_frees_the_slot() -> None:
    async with emulator(time_scale=0.001) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        body = {"model": LLAMA, "prompt": "long", "options": ENDLESS}
        async with http.stream("POST", "/api/generate", json=body) as response:
            response_lines = response.aiter_lines()  # kept: dropping it closes the stream
            first = json.loads(await anext(response_lines))
            assert first["done"] is False
            assert emu.stats.active == 1
        await eventually(lambda: emu.stats.cancelled_total == 1)
        await eventually(lambda: emu.stats.active == 0)
        assert emu.stats.completed_total == 0
        # The freed slot serves the next request.
        after = await ollama.AsyncClient(host=emu.url).generate(model=LLAMA, prompt="again")
    assert after.done and emu.stats.completed_total == 1


async def test_client_disconnect_during_non_stream_request_cancels() -> None:
    async with emulator(time_scale=0.001) as emu:
        client = ollama.AsyncClient(host=emu.url)
        request = asyncio.create_task(client.generate(model=LLAMA, prompt="long", options=ENDLESS))
        await eventually(lambda: emu.stats.active == 1)
        request.cancel()
        await eventually(lambda: emu.stats.cancelled_total == 1)
        await eventually(lambda: emu.stats.active == 0)


async def test_decode_slows_sublinearly_with_batching() -> None:
    single = 100.0
    assert decode_rate(single, 1, 1) == single
    assert decode_rate(single, 4, 1) == pytest.approx(single / 1.75)
    aggregate = [n * decode_rate(single, n, 1) for n in (1, 2, 4, 8)]
    assert aggregate == sorted(aggregate) and aggregate[-1] < 4 * single
    assert decode_rate(single, 1, 2) == single / 2


async def test_gpu_memory_splits_in_proportion_to_gpu_memory() -> None:
    async with emulator(gpus=[GTX_1070, RTX_4090]) as emu:
        await ollama.AsyncClient(host=emu.url).generate(model=CODELLAMA_13B, keep_alive="1m")
        small, big = emu.gpu_activity()
    size = hardware.model_kind(CODELLAMA_13B).size_bytes
    assert small.memory_used_bytes + big.memory_used_bytes == pytest.approx(size, abs=2)
    assert big.memory_used_bytes == pytest.approx(3 * small.memory_used_bytes, rel=1e-6)
    assert (small.index, big.index) == (0, 1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 300.0), (10, 10.0), ("5m", 300.0), ("1h30m", 5400.0), ("0", 0.0), (-1, math.inf)],
)
def test_keep_alive_parses_like_ollama(value: object, seconds: float) -> None:
    assert parse_keep_alive(value, 300.0) == seconds


async def test_stop_cuts_off_an_endless_stream() -> None:
    async with emulator(time_scale=0.001) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        body = {"model": SMALL, "prompt": "long", "options": ENDLESS}
        async with http.stream("POST", "/api/generate", json=body) as response:
            response_lines = response.aiter_lines()  # kept: dropping it closes the stream
            await anext(response_lines)
            async with asyncio.timeout(5.0):
                await emu.stop()
        assert emu.stats.active == 0 and emu.stats.cancelled_total == 1


async def test_cli_serves_until_interrupted() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ollama_emulator",
        "--port",
        "0",
        "--gpu",
        GTX_1070.name,
        "--model",
        SMALL,
        "--time-scale",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20.0):
            banner = (await process.stdout.readline()).decode()
            url = banner.split()[3]
            listed = await ollama.AsyncClient(host=url).list()
            process.send_signal(signal.SIGINT)
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert banner.startswith("Ollama emulator on http://127.0.0.1:")
    assert [m.model for m in listed.models] == [SMALL]
    assert code == 0


def test_cli_rejects_an_unknown_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--gpu", "Imaginary GPU", "--port", "0"]) == 2
    assert "unknown GPU" in capsys.readouterr().err


async def test_load_duration_follows_the_hosts_disk_speed() -> None:
    size = hardware.model_kind(LLAMA).size_bytes
    for gbps in (1.5, 0.5):
        async with emulator(model_load_gbps=gbps) as emu:
            answer = await ollama.AsyncClient(host=emu.url).generate(
                model=LLAMA, prompt="hi", options={"num_predict": 1}
            )
        assert answer.load_duration / 1e9 == pytest.approx(
            hardware.LOAD_FIXED_SECONDS + size / (gbps * hardware.GB), rel=1e-3
        )
    with pytest.raises(ValueError, match="model_load_gbps"):
        EmulatorConfig(gpus=[GTX_1070], model_load_gbps=0)


EMBEDDER = "nomic-embed-text"  # 768 dimensions, 2,048-token context


async def test_embed_returns_one_normalised_vector_per_input_like_ollama() -> None:
    async with emulator(models=[LLAMA, EMBEDDER]) as emu:
        client = ollama.AsyncClient(host=emu.url)
        many = await client.embed(model=EMBEDDER, input=["a cat", "a dog", "a cat"])
        one = await client.embed(model=EMBEDDER, input="a cat")
        short = await client.embed(model=EMBEDDER, input="a cat", dimensions=256)
        legacy = await client.embeddings(model=EMBEDDER, prompt="a cat")
        from_llm = await client.embed(model=LLAMA, input="a cat")
        shown = await client.show(EMBEDDER)
        loaded_empty = await client.embed(model=EMBEDDER, input=[])
        with pytest.raises(ollama.ResponseError) as no_generate:
            await client.generate(model=EMBEDDER, prompt="hi")
        with pytest.raises(ollama.ResponseError) as too_long:
            await client.embed(model=EMBEDDER, input="word " * 20_000, truncate=False)
        truncated = await client.embed(model=EMBEDDER, input="word " * 20_000)
        async with httpx.AsyncClient(base_url=emu.url) as http:
            bad_input = await http.post("/api/embed", json={"model": EMBEDDER, "input": [1, 2]})
            bad_dims = await http.post(
                "/api/embed", json={"model": EMBEDDER, "input": "x", "dimensions": 9999}
            )
    vectors = many.embeddings
    assert [len(v) for v in vectors] == [768, 768, 768]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-6 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]  # same text, same vector
    assert one.embeddings == [vectors[0]]
    assert many.prompt_eval_count == 3 * max(1, len("a cat") // 4)
    assert (many.load_duration or 0) > 0 and (one.load_duration or 0) == 0  # loaded once
    assert len(short.embeddings[0]) == 256
    assert abs(math.sqrt(sum(x * x for x in short.embeddings[0])) - 1.0) < 1e-6
    assert list(legacy.embedding) == vectors[0]
    assert len(from_llm.embeddings[0]) == 4096  # a generative model embeds with its hidden size
    assert shown.capabilities == ["embedding"]
    assert loaded_empty.embeddings == []
    assert no_generate.value.status_code == 400
    assert no_generate.value.error == f'"{EMBEDDER}" does not support generate'
    assert too_long.value.status_code == 400 and "context length" in too_long.value.error
    assert truncated.prompt_eval_count == 2048
    assert bad_input.status_code == 400 and "list of strings" in bad_input.json()["error"]
    assert bad_dims.status_code == 400 and "768" in bad_dims.json()["error"]


async def test_format_json_and_schema_give_json_answers_like_ollama() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "population": {"type": "integer", "minimum": 1},
            "languages": {"type": "array", "items": {"type": "string"}},
            "capital": {"type": "boolean"},
        },
        "required": ["name", "population", "languages"],
    }
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        shaped = await client.chat(
            model=LLAMA, messages=[{"role": "user", "content": "Canada?"}], format=schema
        )
        free = await client.generate(model=LLAMA, prompt="Describe a cat", format="json")
        cut = await client.generate(
            model=LLAMA, prompt="Describe a cat", format="json", options={"num_predict": 3}
        )
        async with httpx.AsyncClient(base_url=emu.url) as http:  # the client refuses "xml"
            bad = await http.post(
                "/api/generate", json={"model": LLAMA, "prompt": "hi", "format": "xml"}
            )
    answer = json.loads(shaped.message.content or "")
    assert set(answer) == {"name", "population", "languages", "capital"}
    assert isinstance(answer["name"], str) and isinstance(answer["population"], int)
    assert answer["population"] >= 1 and isinstance(answer["capital"], bool)
    assert all(isinstance(x, str) for x in answer["languages"])
    assert shaped.done_reason == "stop" and shaped.eval_count and shaped.eval_count > 5
    assert isinstance(json.loads(free.response), dict) and free.done_reason == "stop"
    assert cut.done_reason == "length" and cut.eval_count == 3
    assert bad.status_code == 400 and bad.json()["error"].startswith('invalid format: "xml"')


CLOCK_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {}}}


async def test_tools_are_called_then_the_result_answered_like_ollama() -> None:
    ask = [{"role": "user", "content": "Use get_weather: is it raining in Paris?"}]
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        called = await client.chat(model=LLAMA, messages=ask, tools=[CLOCK_TOOL, WEATHER_TOOL])
        streamed = [
            part
            async for part in await client.chat(
                model=LLAMA, messages=ask, tools=[CLOCK_TOOL, WEATHER_TOOL], stream=True
            )
        ]
        calls = called.message.tool_calls or []
        answered = await client.chat(
            model=LLAMA,
            messages=[
                *ask,
                {"role": "assistant", "content": "", "tool_calls": calls},
                {"role": "tool", "content": "light rain, 12 C", "tool_name": "get_weather"},
            ],
            tools=[CLOCK_TOOL, WEATHER_TOOL],
        )
        chatted = await client.chat(
            model=LLAMA,
            messages=[{"role": "user", "content": "Say hello"}],
            tools=[CLOCK_TOOL, WEATHER_TOOL],
        )
        what_time = await client.chat(
            model=LLAMA,
            messages=[{"role": "user", "content": "What time is it?"}],
            tools=[CLOCK_TOOL, WEATHER_TOOL],
        )
        with pytest.raises(ollama.ResponseError) as refused:
            await client.chat(model=CODELLAMA_13B, messages=ask, tools=[WEATHER_TOOL])
    # A request about none of the tools gets words, as from a real model; a word of a
    # tool's name ("time" of get_time) is enough to call it.
    assert not chatted.message.tool_calls and chatted.message.content
    assert [c.function.name for c in what_time.message.tool_calls or []] == ["get_time"]
    assert [c.function.name for c in calls] == ["get_weather"]  # the one the request names
    arguments = calls[0].function.arguments
    assert set(arguments) == {"city", "days"} and isinstance(arguments["days"], int)
    assert called.message.content == "" and called.done_reason == "stop"
    assert called.eval_count and called.eval_count > 3  # writing the call took tokens
    with_calls = [p for p in streamed if p.message.tool_calls]
    assert len(with_calls) == 1 and not with_calls[0].done and streamed[-1].done
    assert with_calls[0].message.tool_calls == calls
    assert not answered.message.tool_calls and answered.message.content  # an answer now
    assert refused.value.status_code == 400 and "does not support tools" in refused.value.error


async def test_images_go_to_vision_models_only_like_ollama() -> None:
    async with emulator(models=[LLAMA, "llava:7b"]) as emu:
        client = ollama.AsyncClient(host=emu.url)
        seen = await client.generate(model="llava:7b", prompt="What is this?", images=[PNG])
        plain = await client.generate(model="llava:7b", prompt="What is this?")
        chatted = await client.chat(
            model="llava:7b",
            messages=[{"role": "user", "content": "And this?", "images": [PNG, PNG]}],
        )
        with pytest.raises(ollama.ResponseError) as blind:
            await client.generate(model=LLAMA, prompt="What is this?", images=[PNG])
        async with httpx.AsyncClient(base_url=emu.url) as http:
            garbled = await http.post(
                "/api/generate", json={"model": "llava:7b", "prompt": "x", "images": ["%%%"]}
            )
    assert seen.response and seen.prompt_eval_count == (plain.prompt_eval_count or 0) + 576
    assert chatted.prompt_eval_count and chatted.prompt_eval_count > 2 * 576
    assert (
        blind.value.status_code == 400 and blind.value.error == f'"{LLAMA}" does not support vision'
    )
    assert garbled.status_code == 400 and "base64" in garbled.json()["error"]


async def test_thinking_models_reason_apart_from_the_answer_like_ollama() -> None:
    thinker = "qwen3:8b"
    async with emulator(models=[LLAMA, thinker]) as emu:
        client = ollama.AsyncClient(host=emu.url)
        default = await client.generate(model=thinker, prompt="Why is the sky blue?")
        off = await client.generate(model=thinker, prompt="Why is the sky blue?", think=False)
        high = await client.chat(
            model=thinker, messages=[{"role": "user", "content": "Why?"}], think="high"
        )
        parts = [
            p
            async for p in await client.chat(
                model=thinker, messages=[{"role": "user", "content": "Why?"}], stream=True
            )
        ]
        with pytest.raises(ollama.ResponseError) as cannot:
            await client.generate(model=LLAMA, prompt="Why?", think=True)
        plain = await client.generate(model=LLAMA, prompt="Why?", think=False)
    assert default.thinking and default.response and default.thinking != default.response
    assert default.response == off.response and not off.thinking  # the same answer, no reasoning
    assert (default.eval_count or 0) == (off.eval_count or 0) + 48  # reasoning costs tokens
    assert high.message.thinking and len(high.message.thinking.split()) > 60
    thought = "".join(p.message.thinking or "" for p in parts)
    said = "".join(p.message.content or "" for p in parts)
    assert thought and said and not any(p.message.thinking and p.message.content for p in parts)
    assert cannot.value.status_code == 400
    assert cannot.value.error == f'"{LLAMA}" does not support thinking'
    assert plain.response and not plain.thinking


async def test_logprobs_come_with_each_token_like_ollama() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        whole = await client.generate(
            model=LLAMA, prompt="Why?", logprobs=True, top_logprobs=3, options={"num_predict": 12}
        )
        parts = [
            p
            async for p in await client.chat(
                model=LLAMA,
                messages=[{"role": "user", "content": "Why?"}],
                logprobs=True,
                stream=True,
                options={"num_predict": 12},
            )
        ]
        again = await client.generate(
            model=LLAMA, prompt="Why?", logprobs=True, top_logprobs=3, options={"num_predict": 12}
        )
        plain = await client.generate(model=LLAMA, prompt="Why?", options={"num_predict": 12})
        async with httpx.AsyncClient() as http:
            asked = {"model": LLAMA, "prompt": "Why?", "stream": False, "logprobs": True}
            raw = (await http.post(f"{emu.url}/api/generate", json=asked)).json()
        with pytest.raises(ollama.ResponseError) as too_many:
            await client.generate(model=LLAMA, prompt="Why?", logprobs=True, top_logprobs=21)
    entries = whole.logprobs or []
    assert "".join(e.token for e in entries) == whole.response and len(entries) == 12
    for e in entries:
        assert e.logprob < 0
        top = e.top_logprobs or []
        assert len(top) == 3 and top[0].token == e.token  # the chosen token is the likeliest
        assert [t.logprob for t in top] == sorted((t.logprob for t in top), reverse=True)
        assert sum(math.exp(t.logprob) for t in top) < 1.0
    assert again.logprobs == whole.logprobs  # deterministic, like the text
    streamed = [e for p in parts[:-1] for e in p.logprobs or []]
    assert len(streamed) == 12 and all(len(p.logprobs or []) == 1 for p in parts[:-1])
    assert "".join(e.token for e in streamed) == "".join(p.message.content for p in parts)
    assert all(not e.top_logprobs for e in streamed)  # top_logprobs 0: the chosen token only
    assert plain.logprobs is None
    # Ollama's bytes (the official client's types drop them):
    assert all(bytes(e["bytes"]) == e["token"].encode() for e in raw["logprobs"])
    assert too_many.value.status_code == 400
    assert too_many.value.error == "top_logprobs must be between 0 and 20"


async def test_delete_removes_a_model_like_ollama() -> None:
    async with emulator() as emu:
        client = ollama.AsyncClient(host=emu.url)
        await client.generate(model=SMALL, prompt="")  # loaded, idle
        await client.delete(SMALL)
        listed = {m.model for m in (await client.list()).models}
        running = {m.model for m in (await client.ps()).models}
        with pytest.raises(ollama.ResponseError) as gone:
            await client.delete(SMALL)
    assert SMALL not in listed and LLAMA in listed
    assert SMALL not in running  # an idle copy leaves VRAM too
    assert gone.value.status_code == 404 and gone.value.error == f"model '{SMALL}' not found"
