"""Hive against the routers a user would pick instead (issue 19), on the same backends.

Four emulated Ollama servers, one per GPU of a heterogeneous cluster (RTX 4090, RTX
3070, GTX 1070, Tesla P4; two slots each, all serving llama3.2:3b, all with the same
seed so that a prompt gets the same answer wherever it runs), and in front of them, one
router after another, each in separate OS processes as an operator runs it:

* Hive: ``hive coordinator``, one ``hive agent`` per GPU and ``hive gateway``, from
  their own YAML files, ``--insecure`` (plaintext, no tokens);
* LiteLLM's proxy (``litellm[proxy]``, one worker), routing strategies ``least-busy``
  and ``simple-shuffle``, one ``ollama_chat/`` deployment per emulator, a master key;
* SOLLOL's gateway (``sollol up``), given the emulators as its Ollama nodes.

Each peer is installed into a virtualenv of its own under
``~/.cache/hive-bench-peers/<name>-<version>/`` from the pinned freeze in
``benchmarks/peers/`` (created once, reused). Per router, each phase after its own
warm-up:

1. added latency: one whole (non-streamed) 64-token chat answer at a time, interleaved
   request by request with the same request sent directly to an emulator (instant
   emulators, time scale 0); p50 and p95 of both, and the difference;
2. most requests/s: closed loop at a fixed concurrency for a fixed time, instant
   emulators; the same loop straight at the emulators is the ceiling;
3. CPU per 1,000 requests over that loop: utime + stime (children's too) of every
   process in the router's sessions, from /proc;
4. mixed load at realistic speed: a seeded workload of 70 % 64-token and 30 % 400-token
   answers, Poisson arrivals at 85 % of the cluster's capacity (computed from the
   emulator's speed model: every slot busy, perfect placement), a fixed number of
   requests; p50/p95/p99 end to end, failures and timeouts, the router's CPU.

Hive and LiteLLM are asked through OpenAI's ``/v1/chat/completions``; SOLLOL serves only
Ollama's ``/api/chat``, so it is asked that way, and ``hive-ollama-api`` runs Hive over
the same Ollama API for a like-for-like row. The emulators speak only Ollama's API, so
the direct path is ``/api/chat``. Answers have exact lengths whatever a router does with
``max_tokens``: the prompts are picked so that the emulator's natural answer is 64 or 400
pieces long (the emulator ends its answers by itself after at most 400).

Everything binds 127.0.0.1 on free ports (SOLLOL's own gateway too, through a wrapper;
Ray, which SOLLOL starts, binds what it binds). Progress goes to stderr, one JSON object
to stdout. Every child runs in a session of its own and the whole session is killed at
the end, on errors and on Ctrl-C.

    python benchmarks/bench_peers.py [--quick] [--seed N] [--requests N]
        [--routers hive,hive-ollama-api,litellm-least-busy,litellm-shuffle,sollol]
        [--mismatch SIGMA] [--mixed-only]

``hive-<policy>`` (e.g. ``hive-least_work_warm``) runs Hive's processes with
``routing.policy: <policy>``: one of the simulator's baselines placing the tasks in the
real coordinator, so the router meets the strongest baseline on the real stack (issue
20). ``--mismatch`` makes each GPU's emulator slower or faster than the catalog by a
seeded lognormal factor, which the agents do not report: the priors are off and the
speeds must be learned from answers, as in ``hive sim --mismatch``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import free_port  # noqa: E402

from coordinator.sim import POLICY_NAMES  # noqa: E402
from hive import hardware  # noqa: E402
from ollama_emulator import generation, text  # noqa: E402

MODEL = "llama3.2:3b"
GPUS = (
    "NVIDIA GeForce RTX 4090",
    "NVIDIA GeForce RTX 3070",
    "NVIDIA GeForce GTX 1070",
    "NVIDIA Tesla P4",
)
NUM_PARALLEL = 2
# One seed for every emulator: a prompt's answer (and its length) is the same on each.
EMULATOR_SEED = 7
SHORT_TOKENS = 64
LONG_TOKENS = 400  # the longest answer the emulator ends by itself
LONG_SHARE = 0.3
LOAD_FACTOR = 0.85
CONCURRENCY = 32
MASTER_KEY = "sk-hive-bench"
ROUTERS = ("hive", "hive-ollama-api", "litellm-least-busy", "litellm-shuffle", "sollol")

PEERS_DIR = ROOT / "benchmarks" / "peers"
CACHE = Path.home() / ".cache" / "hive-bench-peers"
# name -> version; the venv is installed from benchmarks/peers/<name>-<version>.txt, a
# pip freeze of a venv where the peer ran (LiteLLM 1.108.8 to 1.110.2's proxy extra pins
# packages that are not on the index: 1.108.7 is the newest whose extra installs).
PEERS = {"litellm": "1.108.7", "sollol": "0.9.66"}

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- peers' virtualenvs ----------------------------------------------------------------


def peer_venv(name: str) -> Path:
    """The virtualenv of peer ``name`` at its pinned version, installed on first use
    (a marker file holds the hash of the pin file it was installed from)."""
    version = PEERS[name]
    pins = PEERS_DIR / f"{name}-{version}.txt"
    venv = CACHE / f"{name}-{version}"
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    marker = venv / ".hive-bench-installed"
    if marker.exists() and marker.read_text().strip() == digest:
        return venv
    log(f"installing {name} {version} into {venv} (once)")
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-r", str(pins)],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    marker.write_text(digest + "\n")
    return venv


# --- child processes -------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (field 3), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def session_members(sid: int, zombies: bool = True) -> list[int]:
    """Every process of session ``sid`` (a router's forks and grandchildren: Ray gives
    its workers process groups of their own, but they stay in the session)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[3]) == sid and (zombies or fields[0] != "Z"):
                members.append(int(entry.name))
    return members


def session_cpu_seconds(sid: int) -> float:
    """utime + stime + cutime + cstime of the session's live processes: a reaped child's
    time is in its parent's cutime, a live one's in its own, so none is counted twice."""
    ticks = 0
    for pid in session_members(sid):
        fields = _proc_stat(pid)
        if fields is not None:
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / CLK_TCK


@dataclass
class Child:
    """One command in a session of its own, logging to a file; ``stop`` ends the whole
    session (SIGTERM, then SIGKILL to whatever is left)."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        LIVE.append(self)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return session_cpu_seconds(self.pid)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{tail}")

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None:
            return
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and session_members(self.pid, zombies=False):
            self.process.poll()
            time.sleep(0.1)
        for pid in session_members(self.pid, zombies=False):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self in LIVE:
            LIVE.remove(self)
        self.process = None


LIVE: list[Child] = []


def stop_all(children: list[Child], grace: float = 10.0) -> None:
    for child in list(children):
        with contextlib.suppress(Exception):
            child.stop(grace)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, children: list[Child]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            child.check_alive()
        with contextlib.suppress(Exception):
            if await check():
                return
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


# --- the backends ----------------------------------------------------------------------


@dataclass
class Backends:
    """One emulator per GPU of the cluster, at one time scale (each GPU's times the
    factor of ``slowness``, when mismatched)."""

    time_scale: float
    urls: list[str]
    children: list[Child]


def mismatch_factors(sigma: float, seed: int) -> list[float]:
    """How much slower than the catalog says each GPU of ``GPUS`` really is (a seeded
    lognormal factor per GPU, as ``hive sim --mismatch``): its emulator runs at that
    multiple of the time scale, while its agent reports the catalog's GPU, so the
    router's prior speed is wrong by the factor and must be learned. All 1 at sigma 0."""
    rng = random.Random(f"bench_peers-mismatch-{seed}")
    return [math.exp(rng.gauss(0.0, sigma)) if sigma > 0 else 1.0 for _ in GPUS]


async def start_backends(
    workdir: Path, time_scale: float, slowness: list[float] | None = None
) -> Backends:
    urls, children = [], []
    for i, gpu in enumerate(GPUS):
        port = free_port()
        scale = time_scale * (slowness[i] if slowness else 1.0)
        child = Child(
            f"emulator-{i}-{time_scale:g}",
            [
                sys.executable,
                "-m",
                "ollama_emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--gpu",
                gpu,
                "--model",
                MODEL,
                "--num-parallel",
                str(NUM_PARALLEL),
                "--time-scale",
                str(scale),
                "--seed",
                str(EMULATOR_SEED),
                "--keep-alive",
                "86400",
            ],
            workdir / f"emulator-{i}-{time_scale:g}.log",
        )
        child.start()
        urls.append(f"http://127.0.0.1:{port}")
        children.append(child)
    async with httpx.AsyncClient(timeout=30) as http:

        async def up() -> bool:
            replies = [await http.get(f"{u}/api/version") for u in urls]
            return all(r.status_code == 200 for r in replies)

        await wait_until(up, 30, "emulators", children)
        # Load the model everywhere now (an empty chat loads it, as in Ollama), so that no
        # router pays a load that another did not.
        for url in urls:
            reply = await http.post(
                f"{url}/api/chat", json={"model": MODEL, "messages": [], "keep_alive": "24h"}
            )
            reply.raise_for_status()
    return Backends(time_scale, urls, children)


def capacity_per_second(
    mean_tokens: float, slowness: list[float] | None = None
) -> dict[str, float]:
    """Requests/s the cluster can serve at most: every GPU's slots all decoding (the
    emulator's batched rate, ``generation.decode_rate``, over the GPU's true slowness
    when mismatched), perfect placement, prompt evaluation ignored; divided by the
    workload's mean answer length."""
    kind = hardware.model_kind(MODEL)
    factors = slowness or [1.0] * len(GPUS)
    tokens = sum(
        NUM_PARALLEL
        * generation.decode_rate(
            hardware.decode_tokens_per_second([hardware.gpu_kind(g)], kind), NUM_PARALLEL, 1
        )
        / f
        for g, f in zip(GPUS, factors, strict=True)
    )
    return {"tokens_per_second": round(tokens, 1), "requests_per_second": tokens / mean_tokens}


# --- prompts with answers of known length ----------------------------------------------


class PromptBook:
    """Prompts whose emulated answer (same seed on every emulator) is exactly
    ``SHORT_TOKENS`` or ``LONG_TOKENS`` pieces long by itself, so a router that drops
    ``max_tokens`` still gets the same work done."""

    def __init__(self, shorts: int, longs: int) -> None:
        self.short: list[str] = []
        self.long: list[str] = []
        i = 0
        while len(self.short) < shorts or len(self.long) < longs:
            prompt = f"Request {i}: say how the cluster should route this."
            n = text.generate(
                seed=EMULATOR_SEED,
                model=MODEL,
                prompt=f"user: {prompt}",  # how the emulator renders a one-message chat
                num_predict=None,
                options_seed=None,
            ).count
            if n == SHORT_TOKENS and len(self.short) < shorts:
                self.short.append(prompt)
            elif n == LONG_TOKENS and len(self.long) < longs:
                self.long.append(prompt)
            i += 1


# --- the client ------------------------------------------------------------------------


@dataclass
class Target:
    """Where chats go: ``api`` "openai" (``/v1/chat/completions``) or "ollama"
    (``/api/chat``); several ``urls`` are used in turn (the direct path)."""

    name: str
    api: str
    urls: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    _next: int = 0

    def url(self) -> str:
        self._next = (self._next + 1) % len(self.urls)
        return self.urls[self._next]


@dataclass
class Outcome:
    ok: bool
    seconds: float
    tokens: int = 0
    error: str = ""
    mode: str = ""  # SOLLOL's _sollol_routing.mode, when it says


async def chat(
    http: httpx.AsyncClient, target: Target, prompt: str, tokens: int, timeout: float
) -> Outcome:
    """One non-streamed chat; an answer without content (or with an error) is a
    failure, whatever the status."""
    messages = [{"role": "user", "content": prompt}]
    if target.api == "openai":
        path = "/v1/chat/completions"
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": messages,
            "max_tokens": tokens,
            "stream": False,
        }
    else:
        path = "/api/chat"
        body = {
            "model": MODEL,
            "messages": messages,
            "stream": False,
            "options": {"num_predict": tokens},
        }
    start = time.perf_counter()
    try:
        reply = await http.post(
            target.url() + path, json=body, headers=target.headers, timeout=timeout
        )
        seconds = time.perf_counter() - start
        data = reply.json()
    except httpx.TimeoutException:
        return Outcome(False, time.perf_counter() - start, error="timeout")
    except (httpx.HTTPError, ValueError) as e:
        return Outcome(False, time.perf_counter() - start, error=type(e).__name__)
    if reply.status_code != 200 or not isinstance(data, dict) or "error" in data:
        return Outcome(False, seconds, error=f"HTTP {reply.status_code}")
    if target.api == "openai":
        content = (data.get("choices") or [{}])[0].get("message", {}).get("content")
        count = int((data.get("usage") or {}).get("completion_tokens") or 0)
    else:
        content = (data.get("message") or {}).get("content")
        count = int(data.get("eval_count") or 0)
    if not content:
        return Outcome(False, seconds, error="empty answer")
    mode = str((data.get("_sollol_routing") or {}).get("mode", ""))
    return Outcome(True, seconds, count, mode=mode)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
        timeout=60,
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of ``values``, in milliseconds."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return round(ordered[rank] * 1000, 2)


def latency_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


def failures(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            counts[o.error] = counts.get(o.error, 0) + 1
    return counts


async def warm_up(
    target: Target, prompts: list[str], concurrency: int, timeout: float
) -> list[Outcome]:
    async with client() as http:
        queue = iter(prompts)
        outcomes: list[Outcome] = []

        async def lane() -> None:
            for prompt in queue:
                outcomes.append(await chat(http, target, prompt, SHORT_TOKENS, timeout))

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    return outcomes


async def added_latency(router: Target, direct: Target, prompts: list[str]) -> dict[str, Any]:
    """Sequential whole answers, router and direct interleaved request by request."""
    via, straight = [], []
    async with client() as http:
        for prompt in prompts:
            via.append(await chat(http, router, prompt, SHORT_TOKENS, 30))
            straight.append(await chat(http, direct, prompt, SHORT_TOKENS, 30))
    ok_via = [o.seconds for o in via if o.ok]
    ok_direct = [o.seconds for o in straight if o.ok]
    result: dict[str, Any] = {
        "requests": len(prompts),
        "router": latency_summary(ok_via),
        "direct": latency_summary(ok_direct),
        "failures": failures(via),
        "answer_tokens": sorted({o.tokens for o in via if o.ok}),
    }
    if ok_via and ok_direct:
        result["added_p50_ms"] = round(percentile(ok_via, 50) - percentile(ok_direct, 50), 2)
        result["added_p95_ms"] = round(percentile(ok_via, 95) - percentile(ok_direct, 95), 2)
    return result


async def closed_loop(
    target: Target,
    prompts: list[str],
    seconds: float,
    cpu: Callable[[], dict[str, float]] | None,
) -> dict[str, Any]:
    """``CONCURRENCY`` lanes, each sending its next chat when the last is answered, for
    ``seconds``; CPU of the router's processes (``cpu``) from before the first request
    until the last answer."""
    cursor = 0
    outcomes: list[Outcome] = []
    async with client() as http:
        before = cpu() if cpu else {}
        start = time.perf_counter()
        deadline = start + seconds

        async def lane() -> None:
            nonlocal cursor
            while time.perf_counter() < deadline:
                prompt = prompts[cursor % len(prompts)]
                cursor += 1
                outcomes.append(await chat(http, target, prompt, SHORT_TOKENS, 30))

        await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
        after = cpu() if cpu else {}
    done = sum(1 for o in outcomes if o.ok)
    result: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "seconds": round(elapsed, 2),
        "completed": done,
        "requests_per_second": round(done / elapsed, 1),
        "failures": failures(outcomes),
        "latency": latency_summary([o.seconds for o in outcomes if o.ok]),
    }
    if cpu:
        used = {k: after[k] - before[k] for k in after}
        result["cpu_seconds"] = {k: round(v, 2) for k, v in used.items()}
        if done:
            result["cpu_seconds_per_1000"] = {k: round(v / done * 1000, 2) for k, v in used.items()}
    return result


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the start
    long: bool
    prompt: str


def mixed_workload(
    book: PromptBook, requests: int, rate: float, seed: int, skip: int
) -> list[Arrival]:
    """Poisson arrivals at ``rate``/s, each long with probability ``LONG_SHARE``; the
    same list for every router. The first ``skip`` short prompts are the warm-up's
    (SOLLOL caches answers: a prompt it has seen would not reach a backend)."""
    rng = random.Random(seed)
    arrivals, at, shorts, longs = [], 0.0, iter(book.short[skip:]), iter(book.long)
    for _ in range(requests):
        at += rng.expovariate(rate)
        long = rng.random() < LONG_SHARE
        arrivals.append(Arrival(at, long, next(longs) if long else next(shorts)))
    return arrivals


async def mixed_load(
    target: Target,
    arrivals: list[Arrival],
    timeout: float,
    cpu: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    """Open loop: every arrival sent at its time, whatever is still unanswered; each
    request given ``timeout`` s, the whole run its last arrival plus ``timeout`` + 30 s."""
    outcomes: list[tuple[Arrival, Outcome]] = []
    async with client() as http:

        async def one(arrival: Arrival) -> None:
            await asyncio.sleep(max(0.0, start + arrival.at - time.perf_counter()))
            tokens = LONG_TOKENS if arrival.long else SHORT_TOKENS
            outcomes.append((arrival, await chat(http, target, arrival.prompt, tokens, timeout)))

        before = cpu()
        start = time.perf_counter()
        tasks = [asyncio.create_task(one(a)) for a in arrivals]
        _, pending = await asyncio.wait(tasks, timeout=arrivals[-1].at + timeout + 30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - start
        after = cpu()
    ok = [o for _, o in outcomes if o.ok]
    used = {k: after[k] - before[k] for k in after}
    modes: dict[str, int] = {}
    for o in ok:
        if o.mode:
            modes[o.mode] = modes.get(o.mode, 0) + 1
    result: dict[str, Any] = {
        "requests": len(arrivals),
        "completed": len(ok),
        "failures": failures([o for _, o in outcomes]),
        "unfinished_at_deadline": len(pending),
        "seconds": round(elapsed, 1),
        "latency": latency_summary([o.seconds for o in ok]),
        "latency_short": latency_summary([o.seconds for a, o in outcomes if o.ok and not a.long]),
        "latency_long": latency_summary([o.seconds for a, o in outcomes if o.ok and a.long]),
        "answer_tokens": sorted({o.tokens for o in ok}),
        "cpu_seconds": {k: round(v, 2) for k, v in used.items()},
    }
    if modes:
        result["sollol_modes"] = modes
    return result


# --- the routers -----------------------------------------------------------------------


@dataclass
class Router:
    """A running router: where to ask it, and its processes by role."""

    target: Target
    roles: dict[str, list[Child]]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def children(self) -> list[Child]:
        return [c for group in self.roles.values() for c in group]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by role, and their "total"."""
        by_role = {role: sum(c.cpu_seconds() for c in group) for role, group in self.roles.items()}
        return {**by_role, "total": sum(by_role.values())}

    def stop(self) -> None:
        stop_all(self.children)


async def ready_chat(target: Target, children: list[Child], timeout: float) -> None:
    async with client() as http:

        async def answers() -> bool:
            return (await chat(http, target, "Are you there?", 8, 30)).ok

        await wait_until(answers, timeout, f"{target.name} answering", children)


async def start_hive(
    name: str,
    backends: Backends,
    workdir: Path,
    api: str,
    hive_routing: Mapping[str, Any],
    policy: str = "hive",
) -> Router:
    """The coordinator, one agent per emulator and the gateway, each from its own file;
    the cluster file's routing section ``hive_routing`` (``--hive-routing``), tasks
    placed by ``policy`` (``routing.policy``: hive's router, or one of the simulator's
    baselines run by the real coordinator)."""
    coordinator_port, gateway_port = free_port(), free_port()
    cluster: dict[str, Any] = {
        "coordinator": {
            "listen": f"127.0.0.1:{coordinator_port}",
            "state_path": str(workdir / "state.sqlite"),
            "metrics_listen": "off",
            "enroll_listen": "off",
        }
    }
    routing = {**hive_routing, **({"policy": policy} if policy != "hive" else {})}
    if routing:
        cluster["routing"] = routing
    (workdir / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    hive = [sys.executable, "-m", "hive.cli"]
    coordinator = Child(
        "coordinator",
        [*hive, "coordinator", "--config", str(workdir / "cluster.yaml"), "--insecure"],
        workdir / "coordinator.log",
    )
    agents = []
    for i, (gpu, url) in enumerate(zip(GPUS, backends.urls, strict=True)):
        port = free_port()
        node = {
            "coordinator": f"127.0.0.1:{coordinator_port}",
            "listen": f"127.0.0.1:{port}",
            "advertise": f"127.0.0.1:{port}",
            "metrics_listen": "off",
            "telemetry": "simulated",
            "node": {
                "name": f"NODE{i}",
                "gpus": [gpu],
                "endpoints": [
                    {"id": "gpu0", "url": url, "gpus": [0], "num_parallel": NUM_PARALLEL}
                ],
            },
        }
        path = workdir / f"node-{i}.yaml"
        path.write_text(yaml.safe_dump(node))
        agents.append(
            Child(
                f"agent-{i}",
                [*hive, "agent", "--config", str(path), "--insecure"],
                workdir / f"agent-{i}.log",
            )
        )
    gateway = Child(
        "gateway",
        [
            *hive,
            "gateway",
            "--listen",
            f"127.0.0.1:{gateway_port}",
            "--coordinator",
            f"127.0.0.1:{coordinator_port}",
            "--insecure",
        ],
        workdir / "gateway.log",
    )
    router = Router(
        Target(name, api, [f"http://127.0.0.1:{gateway_port}"]),
        {"coordinator": [coordinator], "gateway": [gateway], "agents": agents},
        {
            "flags": "--insecure on the coordinator, agents and gateway (plaintext, no tokens)",
            "routing": routing or "defaults",
        },
    )
    try:
        coordinator.start()

        async def listening() -> bool:
            _, writer = await asyncio.open_connection("127.0.0.1", coordinator_port)
            writer.close()
            return True

        await wait_until(listening, 60, "coordinator", [coordinator])
        for agent in agents:
            agent.start()
        gateway.start()
        async with client() as http:

            async def all_nodes() -> bool:
                url = f"http://127.0.0.1:{gateway_port}/api/distributed/cluster/status"
                summary = (await http.get(url)).json()["summary"]
                return bool(summary["nodes_healthy"] == len(GPUS))

            await wait_until(all_nodes, 60, "hive nodes", router.children)
        await ready_chat(router.target, router.children, 60)
    except BaseException:
        router.stop()
        raise
    return router


async def start_litellm(name: str, strategy: str, backends: Backends, workdir: Path) -> Router:
    """LiteLLM's proxy, one uvicorn worker, one ``ollama_chat/`` deployment per emulator."""
    venv = peer_venv("litellm")
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {"model": f"ollama_chat/{MODEL}", "api_base": u},
            }
            for u in backends.urls
        ],
        "router_settings": {"routing_strategy": strategy},
        "general_settings": {"master_key": MASTER_KEY},
    }
    path = workdir / f"litellm-{strategy}.yaml"
    path.write_text(yaml.safe_dump(config))
    proxy = Child(
        "litellm",
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        workdir / f"litellm-{strategy}.log",
        # The model cost map is otherwise fetched from GitHub at every start.
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    router = Router(
        Target(
            name,
            "openai",
            [f"http://127.0.0.1:{port}"],
            {"Authorization": f"Bearer {MASTER_KEY}"},
        ),
        {"proxy": [proxy]},
        {
            "version": PEERS["litellm"],
            "routing_strategy": strategy,
            "master_key": "general_settings.master_key set; every request carries it "
            "as a Bearer token",
            "deployments": f"{len(GPUS)} x ollama_chat/{MODEL}, api_base = one emulator each",
            "env": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            "workers": 1,
        },
    )
    try:
        proxy.start()
        await ready_chat(router.target, router.children, 120)
    except BaseException:
        router.stop()
        raise
    return router


# SOLLOL's gateway calls uvicorn.run(app, host="0.0.0.0"); this makes it 127.0.0.1. The
# __main__ guard matters: SOLLOL's pool starts processes with multiprocessing's spawn,
# which imports the main module again (without it, every such child starts SOLLOL).
SOLLOL_WRAPPER = """
import sys

import uvicorn

_run = uvicorn.run


def _run_on_loopback(app, **kwargs):
    kwargs["host"] = "127.0.0.1"
    return _run(app, **kwargs)


if __name__ == "__main__":
    uvicorn.run = _run_on_loopback
    from sollol.cli import app

    app(sys.argv[1:])
"""

SOLLOL_ENV = {
    # Its defaults, 100 requests/s globally and 50 per node, would answer 429s here.
    "SOLLOL_GLOBAL_RATE_LIMIT": "1000000",
    "SOLLOL_PER_NODE_RATE_LIMIT": "1000000",
    "RAY_USAGE_STATS_ENABLED": "0",
}


async def start_sollol(name: str, backends: Backends, workdir: Path) -> Router:
    """``sollol up`` with the emulators as its Ollama nodes; no GPU monitoring (it would
    install and start a Redis reporter) and no Dask batch processing."""
    venv = peer_venv("sollol")
    port = free_port()
    wrapper = workdir / "sollol_up.py"
    wrapper.write_text(SOLLOL_WRAPPER)
    nodes = ",".join(u.removeprefix("http://") for u in backends.urls)
    argv = [
        str(venv / "bin" / "python"),
        str(wrapper),
        "up",
        "--port",
        str(port),
        "--no-batch-processing",
        "--no-setup-gpu-monitoring",
        "--ollama-nodes",
        nodes,
    ]
    gateway = Child("sollol", argv, workdir / "sollol.log", env=SOLLOL_ENV)
    router = Router(
        Target(name, "ollama", [f"http://127.0.0.1:{port}"]),
        {"sollol": [gateway]},
        {
            "version": PEERS["sollol"],
            "command": "sollol up --port PORT --no-batch-processing "
            "--no-setup-gpu-monitoring --ollama-nodes HOST:PORT,... (4 emulators); "
            "Ray with its default 4 OllamaWorker actors",
            "env": SOLLOL_ENV,
            "api": "Ollama /api/chat only (no /v1/chat/completions)",
            "loopback": "its gateway's uvicorn.run(host='0.0.0.0') is replaced by "
            "127.0.0.1 through a wrapper script; the Ray cluster it starts binds "
            "its own ports as Ray does",
            "rpc_discovery": "RPC_BACKENDS unset: at start it looks for llama.cpp RPC "
            "servers (Redis, then a network scan of port 50052), finds none",
        },
    )
    try:
        gateway.start()
        await ready_chat(router.target, router.children, 180)
    except BaseException:
        router.stop()
        raise
    return router


def fresh_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def start_router(name: str, backends: Backends, workdir: Path, plan: Plan) -> Router:
    if name == "hive":
        return await start_hive(name, backends, workdir, "openai", plan.hive_routing)
    if name == "hive-ollama-api":
        return await start_hive(name, backends, workdir, "ollama", plan.hive_routing)
    if name == "litellm-least-busy":
        return await start_litellm(name, "least-busy", backends, workdir)
    if name == "litellm-shuffle":
        return await start_litellm(name, "simple-shuffle", backends, workdir)
    if name == "sollol":
        return await start_sollol(name, backends, workdir)
    policy = name.removeprefix("hive-")
    if name.startswith("hive-") and policy in POLICY_NAMES:
        return await start_hive(name, backends, workdir, "openai", plan.hive_routing, policy)
    raise ValueError(
        f"unknown router {name!r}; known: {', '.join(ROUTERS)}, or hive-<policy> for a "
        f"baseline of the simulator run by hive's coordinator: "
        f"{', '.join('hive-' + p for p in POLICY_NAMES if p != 'hive')}"
    )


# --- the run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    latency_requests: int
    loop_seconds: float
    mixed_requests: int
    time_scale: float
    warm_up: int
    mixed_timeout: float
    # Only the mixed load at realistic speed (no instant phases: added latency, requests/s).
    mixed_only: bool = False
    # The routing section of every Hive router's cluster file (``--hive-routing``).
    hive_routing: Mapping[str, Any] = field(default_factory=dict)


async def bench_router(
    name: str,
    plan: Plan,
    instant: Backends | None,
    realistic: Backends,
    book: PromptBook,
    arrivals: list[Arrival],
    workdir: Path,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    w = plan.warm_up
    if instant is not None:  # not --mixed-only
        await instant_phases(name, plan, instant, book, workdir, result)
    log(f"{name}: starting against the emulators at time scale {realistic.time_scale:g}")
    router = await start_router(name, realistic, fresh_dir(workdir / f"{name}-realistic"), plan)
    try:
        # What ran, also when only the mixed load did (--mixed-only).
        result.setdefault("setup", router.notes)
        log(f"{name}: warm-up ({w // 4} requests)")
        await warm_up(router.target, book.short[: w // 4], 8, plan.mixed_timeout)
        log(f"{name}: mixed load ({len(arrivals)} requests over {arrivals[-1].at:.0f} s)")
        result["mixed"] = await mixed_load(router.target, arrivals, plan.mixed_timeout, router.cpu)
        mixed = result["mixed"]
        log(f"{name}: mixed p50/p95/p99 {mixed['latency']}, failures {mixed['failures']}")
    finally:
        router.stop()
    return result


async def instant_phases(
    name: str,
    plan: Plan,
    instant: Backends,
    book: PromptBook,
    workdir: Path,
    result: dict[str, Any],
) -> None:
    """Added latency and requests/s on instant emulators, into ``result``."""
    direct = Target("direct", "ollama", instant.urls)
    w, n = plan.warm_up, plan.latency_requests
    log(f"{name}: starting against the instant emulators")
    started = time.perf_counter()
    router = await start_router(name, instant, fresh_dir(workdir / f"{name}-instant"), plan)
    try:
        result["api"] = "/v1/chat/completions" if router.target.api == "openai" else "/api/chat"
        result["setup"] = router.notes
        result["start_seconds"] = round(time.perf_counter() - started, 1)
        log(f"{name}: warm-up ({w} requests)")
        await warm_up(router.target, book.short[:w], 8, 30)
        log(f"{name}: added latency ({n} sequential requests, interleaved with direct)")
        result["added_latency"] = await added_latency(router.target, direct, book.short[w : w + n])
        log(f"{name}: requests/s ({CONCURRENCY} lanes, {plan.loop_seconds:g} s)")
        result["throughput"] = await closed_loop(
            router.target, book.short[w + n :], plan.loop_seconds, router.cpu
        )
        log(f"{name}: {result['throughput']['requests_per_second']} requests/s")
    finally:
        router.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    plan = Plan(
        latency_requests=30 if quick else 300,
        loop_seconds=3 if quick else 15,
        mixed_requests=args.requests or (30 if quick else 300),
        time_scale=1.0,
        warm_up=20 if quick else 80,
        mixed_timeout=120,
        mixed_only=args.mixed_only,
        hive_routing=json.loads(args.hive_routing),
    )
    routers = [r for r in args.routers.split(",") if r]
    mean_tokens = (1 - LONG_SHARE) * SHORT_TOKENS + LONG_SHARE * LONG_TOKENS
    slowness = mismatch_factors(args.mismatch, args.seed)
    capacity = capacity_per_second(mean_tokens, slowness)
    rate = LOAD_FACTOR * capacity["requests_per_second"]
    log("finding prompts whose answers are 64 and 400 pieces long")
    book = PromptBook(shorts=800 if quick else 4000, longs=plan.mixed_requests)
    arrivals = mixed_workload(book, plan.mixed_requests, rate, args.seed, plan.warm_up)
    result: dict[str, Any] = {
        "benchmark": "bench_peers",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": {
            "model": MODEL,
            "gpus": list(GPUS),
            "num_parallel": NUM_PARALLEL,
            "emulator_seed": EMULATOR_SEED,
            "client": "httpx, in this process; whole (non-streamed) chat answers",
            "latency_and_throughput": "emulators at time scale 0 (instant)",
            "added_latency_requests": plan.latency_requests,
            "added_latency_answer_tokens": SHORT_TOKENS,
            "loop": {"concurrency": CONCURRENCY, "seconds": plan.loop_seconds},
            "mixed": {
                "time_scale": plan.time_scale,
                "requests": plan.mixed_requests,
                "answer_tokens": {
                    str(SHORT_TOKENS): 1 - LONG_SHARE,
                    str(LONG_TOKENS): LONG_SHARE,
                },
                "mean_answer_tokens": mean_tokens,
                "capacity": {
                    **capacity,
                    "requests_per_second": round(capacity["requests_per_second"], 3),
                    "how": "computed from the emulator's speed model: every slot of every "
                    "GPU decoding (batched rate), perfect placement, prompt time ignored",
                },
                "mismatch": {
                    "sigma": args.mismatch,
                    "slowness": dict(zip(GPUS, (round(f, 3) for f in slowness), strict=True)),
                    "how": "each GPU's emulator runs its time scale times a seeded lognormal "
                    "factor; its agent reports the catalog's GPU, so the priors are off",
                },
                "load_factor": LOAD_FACTOR,
                "arrival_rate_per_second": round(rate, 3),
                "arrivals": "Poisson, seeded; the same list for every router",
                "request_timeout_seconds": plan.mixed_timeout,
                "percentiles": "over the requests answered; failures counted apart",
            },
            "cpu": "utime+stime (and reaped children's) of every process in the "
            "router's sessions, /proc/<pid>/stat; emulators and client not included",
        },
        "routers": {},
    }
    with tempfile.TemporaryDirectory(prefix="hive-bench-peers-") as tmp:
        workdir = Path(tmp)
        backends: list[Backends] = []
        try:
            log("starting the emulators")
            # The instant emulators serve only the instant phases (not --mixed-only).
            instant = None if plan.mixed_only else await start_backends(workdir, 0.0)
            realistic = await start_backends(workdir, plan.time_scale, slowness)
            backends += [b for b in (instant, realistic) if b is not None]
            if instant is not None:
                direct = Target("direct", "ollama", instant.urls)
                log("direct to the emulators: warm-up and requests/s (the ceiling)")
                await warm_up(direct, book.short[: plan.warm_up], 8, 30)
                result["direct"] = {
                    "api": "/api/chat",
                    "throughput": await closed_loop(
                        direct, book.short[plan.warm_up :], plan.loop_seconds, None
                    ),
                }
            for name in routers:
                try:
                    result["routers"][name] = await bench_router(
                        name, plan, instant, realistic, book, arrivals, workdir
                    )
                except Exception as e:  # one router failing does not stop the others
                    log(f"{name}: FAILED: {e}")
                    result["routers"][name] = {"error": f"{type(e).__name__}: {e}"}
        finally:
            for b in backends:
                stop_all(b.children)
            stop_all(LIVE)
    result["against_the_first"] = against_first(result["routers"])
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def against_first(routers: dict[str, Any]) -> dict[str, Any]:
    """Each router's mixed-load percentiles over the first router's (same arrivals, same
    run): a ratio above 1 means the first router (``--routers``' first name) was faster."""
    names = [n for n, r in routers.items() if "mixed" in r]
    if len(names) < 2:
        return {}
    first = routers[names[0]]["mixed"]["latency"]
    out: dict[str, Any] = {"first": names[0]}
    for name in names[1:]:
        other = routers[name]["mixed"]["latency"]
        out[name] = {
            q: round(other[q] / first[q], 3) for q in ("p50_ms", "p95_ms", "p99_ms") if first.get(q)
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--seed", type=int, default=1, help="the mixed workload's seed")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--requests", type=int, default=0, help="mixed-load requests")
    parser.add_argument(
        "--mismatch",
        type=float,
        default=0.0,
        help="lognormal sigma of each GPU's true slowness over the catalog's (0: none)",
    )
    parser.add_argument(
        "--mixed-only",
        action="store_true",
        help="only the mixed load at realistic speed (no added latency or requests/s)",
    )
    parser.add_argument(
        "--hive-routing",
        default="{}",
        help="JSON: the routing section of every Hive router's cluster file "
        '(e.g. \'{"weights": {"interference": 0}}\' to try a weight)',
    )
    args = parser.parse_args()

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        result = asyncio.run(run(args))
    finally:
        stop_all(LIVE, grace=3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
