"""The node's local Ollama endpoints: what each has, what it runs, how busy it is."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from hive.config import EndpointSpec, GpuSpec
from hive.federation import VERSION_KEY
from hive.v1 import common_pb2
from node_agent.ollama import OllamaClient, OllamaError
from node_agent.telemetry import GpuActivity

log = logging.getLogger("hive.agent.endpoints")


@dataclass
class LocalEndpoint:
    spec: EndpointSpec
    client: OllamaClient
    version: str = ""
    # Federation: the Hive cluster this endpoint is the gateway of ("" for an Ollama).
    hive_cluster: str = ""
    models: list[common_pb2.ModelInfo] = field(default_factory=list)
    loaded: list[common_pb2.LoadedModel] = field(default_factory=list)
    healthy: bool = False
    error: str = ""
    in_flight: int = 0
    # Capabilities by (model, digest): asked of Ollama once per model version.
    _capabilities: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # One refresh at a time: what they read is kept in the order they read it, so a
    # heartbeat's refresh that asked before a pull or removal finished cannot put back the
    # list from before it after the pull's own refresh (node_agent/service.py).
    _reading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.spec.id

    def has_model(self, name: str) -> bool:
        return any(m.name == name for m in self.models)

    async def refresh(self, full: bool = False) -> None:
        """Read loaded models (/api/ps); when ``full`` or unhealthy, also version and tags."""
        async with self._reading:
            await self._refresh(full)

    async def _refresh(self, full: bool) -> None:
        try:
            if full or not self.healthy:
                about = await self.client.version()
                self.version = str(about.get("version", ""))
                self.hive_cluster = str(about.get(VERSION_KEY) or "")
                models = [_model_info(m) for m in await self.client.tags()]
                for info in models:
                    info.capabilities.extend(await self._capabilities_of(info))
                self.models = models  # whole: a heartbeat never sees it half read
            self.loaded = [_loaded_model(m) for m in await self.client.ps()]
            if not self.healthy:
                log.info(
                    "endpoint %s at %s healthy (%d models%s)",
                    self.id,
                    self.client.url,
                    len(self.models),
                    f"; the gateway of Hive cluster {self.hive_cluster}"
                    if self.hive_cluster
                    else "",
                )
            self.healthy, self.error = True, ""
        except (httpx.HTTPError, OllamaError, ValueError) as exc:
            self._mark_unhealthy(exc)

    async def _capabilities_of(self, info: common_pb2.ModelInfo) -> list[str]:
        key = (info.name, info.digest)
        known = self._capabilities.get(key)
        if known is None:
            try:
                known = await self.client.capabilities(info.name)
            except OllamaError as exc:  # the model is still listed, its abilities unknown
                log.warning("endpoint %s: /api/show %s: %s", self.id, info.name, exc.message)
                known = []
            self._capabilities[key] = known
        return known

    def _mark_unhealthy(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.healthy or self.error != reason:  # one line per change, not per heartbeat
            log.warning("endpoint %s at %s unhealthy: %s", self.id, self.client.url, reason)
        self.healthy, self.error = False, reason

    def to_proto(self) -> common_pb2.OllamaEndpoint:
        return common_pb2.OllamaEndpoint(
            id=self.id,
            url=self.client.url,
            gpu_indices=self.spec.gpus,
            num_parallel=self.spec.num_parallel,
            max_queue=self.spec.max_queue,
            version=self.version,
            models=self.models,
            hive_cluster=self.hive_cluster,
        )

    def telemetry(self) -> common_pb2.EndpointTelemetry:
        return common_pb2.EndpointTelemetry(
            id=self.id,
            healthy=self.healthy,
            loaded_models=self.loaded,
            in_flight=self.in_flight,
            error=self.error,
        )


def activity_from_endpoints(
    endpoints: list[LocalEndpoint], gpus: tuple[GpuSpec, ...]
) -> list[GpuActivity]:
    """Estimate each GPU's load from what the agent knows of its endpoints.

    Used by the simulated telemetry provider: a GPU is as busy as the share of
    its endpoint's parallel slots in use, and holds its share (by memory size)
    of the models its endpoint has loaded.
    """
    util = [0.0] * len(gpus)
    used = [0] * len(gpus)
    for endpoint in endpoints:
        indices = [i for i in endpoint.spec.gpus if i < len(gpus)]
        if not indices:
            continue
        busy = min(1.0, endpoint.in_flight / max(1, endpoint.spec.num_parallel))
        resident = sum(m.size_vram_bytes for m in endpoint.loaded)
        memory = sum(gpus[i].memory_bytes for i in indices)
        for i in indices:
            util[i] = max(util[i], 100.0 * busy)
            used[i] += int(resident * gpus[i].memory_bytes / memory) if memory else 0
    return [
        GpuActivity(index=i, utilization_percent=util[i], memory_used_bytes=used[i])
        for i in range(len(gpus))
    ]


def _model_info(raw: dict[str, Any]) -> common_pb2.ModelInfo:
    details = raw.get("details") or {}
    return common_pb2.ModelInfo(
        name=str(raw.get("name") or raw.get("model", "")),
        size_bytes=int(raw.get("size", 0)),
        family=str(details.get("family", "")),
        parameter_size=str(details.get("parameter_size", "")),
        quantization_level=str(details.get("quantization_level", "")),
        digest=str(raw.get("digest", "")),
    )


def _loaded_model(raw: dict[str, Any]) -> common_pb2.LoadedModel:
    loaded = common_pb2.LoadedModel(
        name=str(raw.get("name") or raw.get("model", "")),
        size_vram_bytes=int(raw.get("size_vram", raw.get("size", 0))),
    )
    expires = raw.get("expires_at")
    if isinstance(expires, str) and expires:
        try:
            loaded.expires_at.FromDatetime(
                dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
            )
        except ValueError:
            pass
    return loaded
