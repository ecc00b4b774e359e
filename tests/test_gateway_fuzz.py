"""Property-based fuzzing of the gateway's HTTP API from its own /openapi.json
(schemathesis): random valid and invalid requests to every operation must never get a
5xx, except 501 from a coordinator that does not implement an RPC yet (the problem then
says UNIMPLEMENTED)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from hive.cli.dev import DevCluster
from tests.conftest import fast_cluster

EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dev cluster served from its own thread and event loop, so the synchronous
    schemathesis client can call it."""
    state = tmp_path_factory.mktemp("fuzz") / "hive-state.sqlite"
    started = threading.Event()
    url: list[str] = []
    failure: list[BaseException] = []
    loop_box: list[asyncio.AbstractEventLoop] = []
    stop_box: list[asyncio.Event] = []

    async def serve() -> None:
        dev = DevCluster(
            fast_cluster(),
            coordinator_listen="127.0.0.1:0",
            gateway_port=0,
            time_scale=0.0,
            state_path=str(state),
        )
        stop = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        stop_box.append(stop)
        try:
            await dev.start()
            await dev.wait_registered(timeout=10)
            assert dev.gateway is not None
            url.append(dev.gateway.url)
            started.set()
            await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            started.set()
        finally:
            await dev.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30), "the dev cluster did not start"
    if failure:
        raise failure[0]
    try:
        yield url[0]
    finally:
        loop_box[0].call_soon_threadsafe(stop_box[0].set)
        thread.join(30)


def fuzz_every_operation(
    url: str, examples: int, headers: dict[str, str] | None = None
) -> tuple[int, int, list[str]]:
    """Schemathesis over every operation of ``url``'s /openapi.json: (operations, calls,
    the 5xx answers seen). A 501 saying UNIMPLEMENTED is a refusal, not a fault."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures: list[str] = []
    operations = calls = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=url, headers=headers, timeout=30)
            status = response.status_code
            if status < 500:
                return
            body = response.text
            if status == 501 and '"grpc_status":"UNIMPLEMENTED"' in body.replace(" ", ""):
                return
            failures.append(f"{case.method} {case.formatted_path} -> {status}: {body[:300]}")

        check()
    return operations, calls, failures


def test_no_server_errors_on_any_operation(gateway_url: str) -> None:
    operations, _, failures = fuzz_every_operation(gateway_url, EXAMPLES_PER_OPERATION)
    assert operations >= 19, f"only {operations} operations in the OpenAPI schema"
    assert not failures, "\n".join(failures[:20])
