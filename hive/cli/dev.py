"""`hive dev`: a whole Hive cluster on one machine.

Starts the coordinator, one emulated Ollama per endpoint of every node in the
cluster file (the seed's five nodes by default), one node agent per node with
simulated GPU telemetry, and the gateway; prints where everything listens.

`hive dev --coordinators 3` shows high availability instead of the one coordinator on
SQLite: a throwaway PostgreSQL (hive.pgtemp, removed at the end) and three coordinators
on it, each kept serving by a ``CoordinatorSupervisor`` on its own port, one leading;
agents and gateway are given all three and follow the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from dataclasses import dataclass, field

from coordinator.server import Coordinator, CoordinatorSupervisor
from gateway.app import create_app
from hive import hardware, pgtemp, pki
from hive.asgi import AsgiServer
from hive.config import POSTGRES_SCHEMES, AgentConfig, ClusterConfig, NodeSpec
from hive.tls import Security
from node_agent.agent import Agent
from ollama_emulator import EmulatorConfig, OllamaEmulator

log = logging.getLogger("hive.cli.dev")

# Where `hive dev` keeps workflow state across runs (HIVE_DEV_STATE overrides).
DEV_STATE_PATH = ".hive/dev-state.sqlite"

# How long `hive dev --coordinators N` waits for the first leader (an election takes a
# round trip to PostgreSQL; a lease left over from an earlier run expires within its
# lease_seconds).
FIRST_LEADER_SECONDS = 30.0

# Bandwidth assumed for a GPU the catalog does not know (a mid-range card).
UNKNOWN_GPU_BANDWIDTH = 300 * hardware.GB


def emulated_gpus(node: NodeSpec, indices: tuple[int, ...]) -> list[hardware.GpuKind]:
    kinds = []
    for i in indices:
        spec = node.gpus[i]
        kind = hardware.GPU_CATALOG.get(spec.name) or hardware.GpuKind(
            spec.name, spec.vendor, spec.memory_bytes, UNKNOWN_GPU_BANDWIDTH, 150
        )
        kinds.append(kind)
    return kinds


@dataclass
class DevCluster:
    cluster: ClusterConfig
    coordinator_listen: str = "127.0.0.1:50051"
    gateway_host: str = "127.0.0.1"
    gateway_port: int | None = 8000
    # (certificate, key) PEM files: the gateway serves HTTPS; None: HTTP.
    gateway_https: tuple[str, str] | None = None
    time_scale: float = 1.0
    heartbeat_interval: float | None = None
    # Coordinator /metrics address (port 0 = any); agents then serve theirs on port 0 of
    # the same host. None: no metrics servers (the numbers are still kept in-process).
    metrics_listen: str | None = None
    coordinator: Coordinator | None = None
    emulators: dict[str, OllamaEmulator] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    gateway: AsgiServer | None = None
    # A certificate directory: run every hop with mutual TLS, issuing certificates there
    # (and a CA if it has none). None: plaintext, no authentication (insecure mode).
    tls_dir: str | None = None
    # Durable workflow state file; None keeps the cluster file's coordinator.state_path.
    state_path: str | None = field(
        default_factory=lambda: os.environ.get("HIVE_DEV_STATE", DEV_STATE_PATH)
    )
    # The coordinator's state store (coordinator.store: a postgresql:// URL, say; HIVE_DEV_STORE
    # sets it); None keeps the cluster file's (by default the SQLite file above).
    store: str | None = field(default_factory=lambda: os.environ.get("HIVE_DEV_STORE") or None)
    # More than one: that many coordinators on PostgreSQL (the store above when it is a
    # postgresql:// URL, else a throwaway server), on consecutive ports from
    # coordinator_listen's (port 0: free ports picked once, kept across restarts).
    coordinators: int = 1
    # With several coordinators: each one's supervisor, by the address it listens on and
    # advertises; the throwaway PostgreSQL when this cluster started one.
    supervisors: dict[str, CoordinatorSupervisor] = field(default_factory=dict)
    postgres: pgtemp.TempPostgres | None = None

    @property
    def coordinator_address(self) -> str:
        assert self.coordinator is not None
        host = self.coordinator_listen.rsplit(":", 1)[0]
        return f"{host}:{self.coordinator.port}"

    @property
    def coordinator_target(self) -> str:
        """What clients are given: the one coordinator's address, or all of them."""
        if self.coordinators > 1:
            return ",".join(self.supervisors)
        return self.coordinator_address

    def leader(self) -> Coordinator | None:
        """The coordinator that leads now (None: an election is under way)."""
        if self.coordinators == 1:
            return self.coordinator
        return next((s.current for s in self.supervisors.values() if s.current.is_leader), None)

    async def wait_leader(self, timeout: float = FIRST_LEADER_SECONDS) -> Coordinator:
        async with asyncio.timeout(timeout):
            # Leadership (lease held and state loaded) is a flag on whichever
            # coordinator a supervisor runs now; the poll is bounded by the timeout.
            while (leader := self.leader()) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return leader

    async def start(self) -> None:
        if self.coordinators > 1:
            await self._start_several()
            return
        if self.state_path is not None:
            settings = dataclasses.replace(self.cluster.coordinator, state_path=self.state_path)
            self.cluster = dataclasses.replace(self.cluster, coordinator=settings)
        if self.store is not None:
            settings = dataclasses.replace(self.cluster.coordinator, store=self.store)
            self.cluster = dataclasses.replace(self.cluster, coordinator=settings)
        self.coordinator = Coordinator(self.cluster, self.security("coordinator"))
        await self.coordinator.start(self.coordinator_listen)
        if self.metrics_listen is not None:
            await self.coordinator.start_metrics(self.metrics_listen)
        await self._start_clients(self.coordinator)

    async def _start_several(self) -> None:
        """A PostgreSQL store, ``coordinators`` coordinators on it, then the clients."""
        store = self.store if self.store and self.store.startswith(POSTGRES_SCHEMES) else None
        if store is None:
            self.postgres = pgtemp.TempPostgres()
            # Blocking (initdb, then waiting for the server): off the loop.
            await asyncio.to_thread(self.postgres.start)
            store = self.postgres.url
        host, _, port = self.coordinator_listen.rpartition(":")
        ports = _free_ports(host, self.coordinators) if int(port) == 0 else None
        for i in range(self.coordinators):
            address = f"{host}:{ports[i] if ports else int(port) + i}"
            settings = dataclasses.replace(
                self.cluster.coordinator,
                listen=address,
                advertise=address,
                store=store,
                metrics_listen=self._metrics_address(i),
            )
            supervisor = CoordinatorSupervisor(
                dataclasses.replace(self.cluster, coordinator=settings),
                self.security("coordinator"),
            )
            self.supervisors[address] = supervisor
            await supervisor.start()
        await self._start_clients(await self.wait_leader())

    def _metrics_address(self, index: int) -> str:
        """Coordinator ``index``'s /metrics: consecutive ports from metrics_listen's."""
        if self.metrics_listen is None:
            return "off"
        host, _, port = self.metrics_listen.rpartition(":")
        return f"{host}:{int(port) + index if int(port) else 0}"

    async def _start_clients(self, leader: Coordinator) -> None:
        for node in self.cluster.nodes:
            await self.start_node(node)
        if self.gateway_port is not None:
            service_token = None
            if leader.api_auth:  # the gateway's own token, for its health checks
                _, service_token = await leader.access.create_api_token(
                    "dev gateway health", "read"
                )
            self.gateway = AsgiServer(
                create_app(
                    self.coordinator_target,
                    security=self.security("gateway"),
                    service_token=service_token,
                    # Every agent is on this host: streamed answers skip the coordinator.
                    direct=True,
                ),
                self.gateway_host,
                self.gateway_port,
                https=self.gateway_https,
            )
            await self.gateway.start()

    async def start_node(self, node: NodeSpec) -> Agent:
        endpoints = []
        for seed, endpoint in enumerate(node.endpoints):
            key = f"{node.name}/{endpoint.id}"
            emulator = self.emulators.get(key)
            if emulator is None:
                emulator = OllamaEmulator(
                    EmulatorConfig(
                        gpus=emulated_gpus(node, endpoint.gpus),
                        models=list(endpoint.models),
                        num_parallel=endpoint.num_parallel,
                        max_queue=endpoint.max_queue,
                        time_scale=self.time_scale,
                        seed=seed,
                        model_load_gbps=node.model_load_gbps,
                    )
                )
                await emulator.start(host="127.0.0.1", port=0)
                self.emulators[key] = emulator
            endpoints.append(dataclasses.replace(endpoint, url=emulator.url))
        agent = Agent(
            AgentConfig(
                source="hive dev",
                coordinator=self.coordinator_target,
                node=dataclasses.replace(node, endpoints=tuple(endpoints)),
                listen="127.0.0.1:0",
                telemetry="simulated",
                heartbeat_interval_seconds=self.heartbeat_interval
                or self.cluster.coordinator.heartbeat_interval_seconds,
            ),
            security=self.security(node.name),
        )
        await agent.start()
        if self.metrics_listen is not None:
            await agent.start_metrics(f"{self.metrics_listen.rsplit(':', 1)[0]}:0")
        self.agents[node.name] = agent
        return agent

    def security(self, name: str) -> Security | None:
        """TLS material for ``name``, issued on first use; None in insecure mode."""
        if self.tls_dir is None:
            return None
        paths = pki.CertPaths.in_dir(self.tls_dir, name)
        if not paths.ca.exists():
            pki.init_dir(self.tls_dir)
        if not paths.cert.exists():
            pki.issue_in_dir(self.tls_dir, name)
        return Security.load(paths)

    async def stop_node(self, name: str) -> None:
        """Stop one node's agent (its emulated Ollama keeps running, as a host's would)."""
        agent = self.agents.pop(name)
        await agent.stop(grace=0)

    async def wait_registered(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(a.connected.wait() for a in self.agents.values()))

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        for agent in self.agents.values():
            await agent.stop(grace=0)
        self.agents.clear()
        if self.coordinator is not None:
            await self.coordinator.stop(grace=0)
        for address in list(self.supervisors):
            await self.stop_coordinator(address)
        for emulator in self.emulators.values():
            await emulator.stop()
        self.emulators.clear()
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)  # and removes its directory
            self.postgres = None

    async def stop_coordinator(self, address: str, *, hand_over: bool = True) -> None:
        """Stop the coordinator at ``address`` for good (one of several). ``hand_over``
        False leaves its lease to expire, as a crash would."""
        supervisor = self.supervisors.pop(address)
        await supervisor.stop(hand_over=hand_over)

    def describe(self) -> str:
        lines = ["Hive mesh dev cluster is up:"]
        lines.append(
            f"  security           mutual TLS, certificates in {self.tls_dir}"
            if self.tls_dir
            else "  security           INSECURE: plaintext gRPC, no certificates, no API tokens"
        )
        if self.coordinators > 1:
            lines.extend(self._describe_coordinators())
        else:
            lines.extend(self._describe_coordinator())
        if self.gateway is not None:
            lines.append(
                f"  gateway HTTP       {self.gateway.url}"
                f"  (try {self.gateway.url}/api/distributed/cluster/status)"
            )
        for name, agent in self.agents.items():
            lines.append(f"  agent {name:<12} {agent.address}")
            if agent.metrics_server is not None:
                lines.append(f"    metrics           {agent.metrics_server.url}")
            for endpoint in agent.endpoints.values():
                lines.append(f"    ollama {endpoint.id:<10} {endpoint.client.url}")
        if self.coordinators > 1:
            lines.append(
                f"In another shell: `export HIVE_COORDINATOR={self.coordinator_target}`, then "
                '`hive status`, `hive run --model llama3.1:8b "hello"`. Ctrl-C stops.'
            )
        else:
            lines.append(
                'In another shell: `hive status`, `hive run --model llama3.1:8b "hello"`.'
                " Ctrl-C stops."
            )
        return "\n".join(lines)

    def _describe_coordinator(self) -> list[str]:
        lines = [f"  coordinator gRPC   {self.coordinator_address}"]
        state = (
            self.coordinator.workflow_store.describe()
            if self.coordinator is not None
            else self.cluster.coordinator.state_path
        )
        lines.append(f"  workflow state     {state}")
        if self.coordinator is not None and self.coordinator.metrics_server is not None:
            lines.append(f"  coordinator metrics {self.coordinator.metrics_server.url}")
        return lines

    def _describe_coordinators(self) -> list[str]:
        lines = []
        for address, supervisor in self.supervisors.items():
            coordinator = supervisor.current
            role = "leader" if coordinator.is_leader else "standby"
            lines.append(f"  coordinator gRPC   {address}  ({role})")
            if coordinator.metrics_server is not None:
                lines.append(f"    metrics          {coordinator.metrics_server.url}")
        if self.supervisors:
            store = next(iter(self.supervisors.values())).current.workflow_store.describe()
            temporary = "  (temporary: removed at exit)" if self.postgres is not None else ""
            lines.append(f"  workflow state     {store}{temporary}")
        return lines


def _free_ports(host: str, count: int) -> list[int]:
    """``count`` ports free on ``host`` now, held open together so they differ. A
    coordinator restarted as a standby binds its port again, so it cannot be 0."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
