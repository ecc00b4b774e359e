"""Serving Prometheus metrics from inside a Hive process's event loop.

Each process keeps its metrics in its own ``CollectorRegistry`` (the coordinator's in
``coordinator/metrics.py``, the agent's in ``node_agent/metrics.py``), so several
components in one process (``hive dev``, the tests) never mix their numbers.

``/metrics`` is served by ``MetricsServer``: prometheus-client's ASGI app on
``hive.asgi.AsgiServer``, not ``prometheus_client.start_http_server``'s thread. Why:

* Collectors read live state (the registry of nodes, the scheduler's queues) at scrape
  time. On the event loop they read it between two steps of the owner, with no lock and
  no "dictionary changed size during iteration"; a thread would race the loop.
* A hung event loop stops answering scrapes, so Prometheus's ``up`` goes to 0, the
  same signal systemd's watchdog acts on. A side thread would keep reporting stale
  numbers from a process that no longer works.
* It binds like every other server here: port 0 in tests, the real port read back.

The gateway serves the same app under its own HTTP port: ``gateway_registry`` below is the
registry it mounts (``app.mount("/metrics", metrics_app(gateway_registry))``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.asgi import make_asgi_app
from prometheus_client.core import GaugeMetricFamily

from hive import __version__
from hive.asgi import AsgiServer
from hive.v1 import common_pb2

# ``*_created`` series double every counter's series for a timestamp nobody alerts on.
disable_created_metrics()  # type: ignore[no-untyped-call]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

# Buckets for latencies from a millisecond to minutes (assignment, task duration).
LATENCY_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)


def build_info(registry: CollectorRegistry, component: str) -> Gauge:
    """``hive_build_info{component,version} 1``: which build each scraped process runs."""
    gauge = Gauge(
        "hive_build_info",
        "Always 1; labels name the Hive component and its version.",
        ["component", "version"],
        registry=registry,
    )
    gauge.labels(component=component, version=__version__).set(1)
    return gauge


def metrics_app(registry: CollectorRegistry) -> Asgi:
    """An ASGI app serving ``registry`` in the Prometheus text format at any path it is
    mounted on."""
    app: Asgi = make_asgi_app(registry)
    return app


def _standalone_app(registry: CollectorRegistry) -> Asgi:
    """``/metrics`` for a process whose only HTTP server is this one; 404 elsewhere."""
    metrics = metrics_app(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            return
        if scope.get("path") in ("/metrics", "/metrics/"):
            await metrics(scope, receive, send)
            return
        body = b"Hive metrics are at /metrics\n"
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def split_listen(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``, ``:port`` = every interface) as a bindable pair."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class MetricsServer:
    """``/metrics`` for one registry on its own port; start() returns the bound port."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        host, port = split_listen(address)
        self._server = AsgiServer(_standalone_app(registry), host, port, graceful_seconds=0.0)
        self.registry = registry

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"{self._server.url}/metrics"

    async def start(self) -> int:
        return await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()


# The gateway process's metrics. The gateway mounts ``metrics_app(gateway_registry)`` at
# ``/metrics`` on its HTTP port and defines its own metrics on this registry.
gateway_registry = CollectorRegistry()
build_info(gateway_registry, "gateway")


class HttpMetrics:
    """ASGI middleware counting requests by route template (never the raw path, which
    would make a label per workflow id), method and status, and timing them.

    ``app = HttpMetrics(app, gateway_registry)`` in the gateway gives
    ``hive_http_requests_total`` and ``hive_http_request_duration_seconds``.
    """

    def __init__(self, app: Asgi, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "hive_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "hive_http_request_duration_seconds",
            "Time to the end of the HTTP response (streams: the whole stream).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message: MutableMapping[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 500))
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.requests.labels(route, method, str(status[0])).inc()
            self.duration.labels(route, method).observe(time.perf_counter() - start)


class GpuGauges:
    """The per-GPU gauges, labelled node, gpu index, model name and vendor.

    The agent exports its own GPUs as ``hive_gpu_*``; the coordinator exports every node's,
    as of its last heartbeat, as ``hive_cluster_gpu_*``. Both fill them from the same
    telemetry samples, so one piece of code names and fills them.
    """

    LABELS = ("node", "gpu", "model", "vendor")

    def __init__(self, prefix: str, source: str = "") -> None:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{prefix}{name}", f"{text}{source}.", labels=self.LABELS)

        self.utilization = gauge("gpu_utilization_ratio", "GPU utilisation 0..1")
        self.memory_used = gauge("gpu_memory_used_bytes", "GPU memory in use")
        self.memory_total = gauge("gpu_memory_total_bytes", "GPU memory size")
        self.temperature = gauge("gpu_temperature_celsius", "GPU temperature")
        self.power = gauge("gpu_power_watts", "GPU power draw")

    def add(
        self,
        node: str,
        sample: common_pb2.GpuTelemetry,
        name: str,
        vendor: str,
        memory_total_bytes: int | None = None,
    ) -> None:
        """One GPU's sample; ``memory_total_bytes`` stands in when the sample has none."""
        labels = [node, str(sample.index), name, vendor]
        total = sample.memory_total_bytes or memory_total_bytes or 0
        self.utilization.add_metric(labels, sample.utilization_percent / 100.0)
        self.memory_used.add_metric(labels, float(sample.memory_used_bytes))
        self.memory_total.add_metric(labels, float(total))
        self.temperature.add_metric(labels, sample.temperature_celsius)
        self.power.add_metric(labels, sample.power_watts)

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            self.utilization,
            self.memory_used,
            self.memory_total,
            self.temperature,
            self.power,
        )
