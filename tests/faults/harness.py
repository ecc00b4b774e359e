"""A Hive cluster of real OS processes, as an operator runs it, for fault injection.

One `hive coordinator`, and per node one `hive emulator` (its Ollama) and one `hive agent`,
plus a `hive gateway`: separate processes started from the project's own command line with
their own YAML files, mutual TLS on every gRPC hop (certificates from the project's PKI)
and API tokens on. The faults are real: signals to a process (SIGKILL, SIGSTOP/SIGCONT), a
node in its own network namespace whose link is cut or slowed, the coordinator's state on a
small filesystem that fills up or turns read-only.

Every process logs to a file under the cluster's directory, so a failing case can be read
afterwards; ``ProcessCluster.logs()`` returns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

from hive import pki
from hive.tls import Security, bearer
from hive.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2

ROOT = Path(__file__).resolve().parents[2]
# A network namespace's link: the RFC 2544 benchmarking range, used only between this
# machine's root namespace and the namespaces the suite creates (never routed anywhere).
NETNS_PREFIX = "198.18"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class NodeSpec:
    name: str
    gpu: str = "NVIDIA GeForce RTX 3070"
    models: tuple[str, ...] = ("llama3.2:3b",)
    num_parallel: int = 4
    # Put the agent and its emulator in their own network namespace (a veth link to the
    # coordinator), so the link can be cut or slowed.
    netns: bool = False
    # The agent's chunk_max_seconds (None: its default).
    chunk_max_seconds: float | None = None


@dataclass
class Proc:
    """One child process with its command line, restartable."""

    name: str
    argv: list[str]
    log: Path
    netns: str | None = None
    process: asyncio.subprocess.Process | None = None
    env: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        argv = self.argv
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        handle = self.log.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies too
            self.process.kill()
            await self.process.wait()

    async def stop(self, grace: float = 10.0) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.process.wait()
        except TimeoutError:
            await self.kill()


class ProcessCluster:
    """A secured cluster of separate processes under ``root``.

    ``liveness`` is the coordinator's (heartbeat, suspect, lost) seconds and
    ``reconnect`` the agents' (initial, max) backoff: the suite runs them faster than the
    defaults so that each case is short, and reports its times against these settings.
    """

    def __init__(
        self,
        root: Path,
        nodes: Sequence[NodeSpec],
        *,
        time_scale: float = 1.0,
        liveness: tuple[float, float, float] = (0.2, 1.0, 2.0),
        reconnect: tuple[float, float] = (0.2, 2.0),
        state_dir: Path | None = None,
        max_attempts: int = 3,
        coordinators: int = 1,
        store: str = "",
        lease: tuple[float, float] = (2.5, 0.5),
        coordinator_in_netns: bool = False,
    ) -> None:
        self.root = root
        self.nodes = list(nodes)
        self.time_scale = time_scale
        self.liveness = liveness
        self.reconnect = reconnect
        self.max_attempts = max_attempts
        self.tls_dir = root / "tls"
        self.state_dir = state_dir or root / "state"
        # Several coordinators share a PostgreSQL ``store``; the lease (lease, renew
        # seconds) decides the leader.
        self.store = store
        self.lease = lease
        self.coordinator_ports = [free_port() for _ in range(coordinators)]
        self.coordinator_port = self.coordinator_ports[0]
        self.gateway_port = free_port()
        self.coordinator_procs: list[Proc] = []
        self.coordinator: Proc | None = None
        self.gateway: Proc | None = None
        self.agents: dict[str, Proc] = {}
        self.emulators: dict[str, Proc] = {}
        self.netns: dict[str, str] = {}  # node -> namespace
        self.links: dict[str, str] = {}  # node -> the root namespace's end of its veth
        self.admin_token = ""
        self.admin: Security | None = None
        # The first coordinator in a network namespace of its own (link "coordinator"),
        # so the link between it and everything else (PostgreSQL too) can be cut. Made
        # now: PostgreSQL must listen on this link's host address before the start.
        self.coordinator_subnet = (
            self._setup_netns(200, "coordinator") if coordinator_in_netns else ""
        )

    # --- setup -------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki.init_dir(self.tls_dir)
        for name in ("coordinator", "gateway", "admin", *(n.name for n in self.nodes)):
            pki.issue_in_dir(self.tls_dir, name)
        self.admin = Security.load(pki.CertPaths.in_dir(self.tls_dir, "admin"))

    def _tls(self, name: str) -> dict[str, str]:
        return {
            "ca": str(self.tls_dir / "ca.pem"),
            "cert": str(self.tls_dir / f"{name}.pem"),
            "key": str(self.tls_dir / f"{name}-key.pem"),
        }

    def coordinator_address_of(self, index: int, host: str = "127.0.0.1") -> str:
        if index == 0 and self.coordinator_subnet:
            return f"{self.coordinator_subnet}.2:{self.coordinator_ports[0]}"
        return f"{host}:{self.coordinator_ports[index]}"

    def target(self, host: str = "127.0.0.1") -> str:
        """Every coordinator's address, as agents, the gateway and the CLI take them."""
        return ",".join(
            self.coordinator_address_of(i, host) for i in range(len(self.coordinator_ports))
        )

    def _coordinator_yaml(self, index: int = 0) -> Path:
        heartbeat, suspect, lost = self.liveness
        port = self.coordinator_ports[index]
        ha: dict[str, object] = {}
        if self.store:
            store = self.store
            if index == 0 and self.coordinator_subnet:
                store = store.replace("@127.0.0.1:", f"@{self.coordinator_subnet}.1:")
            ha = {
                "store": store,
                "advertise": self.coordinator_address_of(index),
                "lease_seconds": self.lease[0],
                "renew_seconds": self.lease[1],
            }
        config = {
            "coordinator": {
                **ha,
                "name": "faults",
                "listen": f"0.0.0.0:{port}",
                "heartbeat_interval_seconds": heartbeat,
                "suspect_after_seconds": suspect,
                "lost_after_seconds": lost,
                "state_path": str(self.state_dir / "state.sqlite"),
                "metrics_listen": "off",
                "enroll_listen": "off",
                "tls": {**self._tls("coordinator")},
                "auth": {
                    "api_tokens": True,
                    "submit_rate_per_second": 10_000,
                    "submit_burst": 10_000,
                },
            },
            "routing": {"scheduler": {"max_attempts": self.max_attempts}},
        }
        path = self.root / ("cluster.yaml" if index == 0 else f"cluster-{index}.yaml")
        path.write_text(yaml.safe_dump(config))
        return path

    def _setup_netns(self, index: int, node: str) -> str:
        ns, host_if, ns_if = (
            f"hivef{os.getpid() % 10000}n{index}",
            f"hf{os.getpid() % 10000}h{index}",
            "eth0",
        )
        subnet = f"{NETNS_PREFIX}.{index}"
        with contextlib.suppress(subprocess.CalledProcessError):
            run("ip", "netns", "del", ns)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", f"{host_if}p")
        run("ip", "link", "set", f"{host_if}p", "netns", ns)
        run("ip", "-n", ns, "link", "set", f"{host_if}p", "name", ns_if)
        run("ip", "addr", "add", f"{subnet}.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", f"{subnet}.2/30", "dev", ns_if)
        run("ip", "-n", ns, "link", "set", ns_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        self.netns[node] = ns
        self.links[node] = host_if
        return subnet

    def _node_procs(self, index: int, spec: NodeSpec) -> tuple[Proc, Proc]:
        ns = None
        coordinator = self.target()
        # With a coordinator in a namespace, agents listen where it can reach them too.
        listen_host = f"{self.coordinator_subnet}.1" if self.coordinator_subnet else "127.0.0.1"
        if spec.netns:
            subnet = self._setup_netns(index, spec.name)
            ns = self.netns[spec.name]
            coordinator = self.target(f"{subnet}.1")
            listen_host = f"{subnet}.2"
        emulator_port, agent_port = free_port(), free_port()
        emulator = Proc(
            f"emulator-{spec.name}",
            [
                sys.executable,
                "-m",
                "ollama_emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(emulator_port),
                "--gpu",
                spec.gpu,
                *[a for m in spec.models for a in ("--model", m)],
                "--num-parallel",
                str(spec.num_parallel),
                "--time-scale",
                str(self.time_scale),
                "--seed",
                str(index),
            ],
            self.root / f"emulator-{spec.name}.log",
            netns=ns,
        )
        heartbeat = self.liveness[0]
        config = {
            "coordinator": coordinator,
            "listen": f"{listen_host}:{agent_port}",
            "advertise": f"{listen_host}:{agent_port}",
            "metrics_listen": "off",
            "telemetry": "simulated",
            "heartbeat_interval_seconds": heartbeat,
            "reconnect_initial_seconds": self.reconnect[0],
            "reconnect_max_seconds": self.reconnect[1],
            **(
                {"chunk_max_seconds": spec.chunk_max_seconds}
                if spec.chunk_max_seconds is not None
                else {}
            ),
            "tls": self._tls(spec.name),
            "node": {
                "name": spec.name,
                "gpus": [spec.gpu],
                "endpoints": [
                    {
                        "id": "gpu0",
                        "url": f"http://127.0.0.1:{emulator_port}",
                        "gpus": [0],
                        "num_parallel": spec.num_parallel,
                    }
                ],
            },
        }
        path = self.root / f"node-{spec.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        agent = Proc(
            f"agent-{spec.name}",
            [sys.executable, "-m", "hive.cli", "agent", "--config", str(path)],
            self.root / f"agent-{spec.name}.log",
            netns=ns,
        )
        return emulator, agent

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        self.coordinator_procs = [
            Proc(
                "coordinator" if i == 0 else f"coordinator-{i}",
                [
                    sys.executable,
                    "-m",
                    "hive.cli",
                    "coordinator",
                    "--config",
                    str(self._coordinator_yaml(i)),
                ],
                self.root / ("coordinator.log" if i == 0 else f"coordinator-{i}.log"),
                netns=self.netns.get("coordinator") if i == 0 else None,
            )
            for i in range(len(self.coordinator_ports))
        ]
        self.coordinator = self.coordinator_procs[0]
        for i, spec in enumerate(self.nodes, start=1):
            emulator, agent = self._node_procs(i, spec)
            self.emulators[spec.name], self.agents[spec.name] = emulator, agent
        await asyncio.gather(*(e.start() for e in self.emulators.values()))
        # The first coordinator starts first, so that it leads (the partition case cuts
        # the leader off).
        await self.coordinator_procs[0].start()
        await self.wait_coordinator()
        await asyncio.gather(*(c.start() for c in self.coordinator_procs[1:]))
        self.admin_token = (self.state_dir / "admin.token").read_text().strip()
        await asyncio.gather(*(a.start() for a in self.agents.values()))
        self.gateway = Proc(
            "gateway",
            [
                sys.executable,
                "-m",
                "hive.cli",
                "gateway",
                "--listen",
                f"127.0.0.1:{self.gateway_port}",
                "--coordinator",
                self.target(),
                "--tls-dir",
                str(self.tls_dir),
            ],
            self.root / "gateway.log",
        )
        await self.gateway.start()
        await self.wait_healthy(set(self.agents), timeout=60)
        await self.wait_gateway()

    async def close(self) -> None:
        procs = [*self.agents.values(), *self.emulators.values()]
        if self.gateway:
            procs.append(self.gateway)
        procs += self.coordinator_procs
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        for node, ns in self.netns.items():
            with contextlib.suppress(subprocess.CalledProcessError):
                run("ip", "link", "del", self.links[node])
            with contextlib.suppress(subprocess.CalledProcessError):
                run("ip", "netns", "del", ns)

    def logs(self) -> str:
        return "\n".join(
            f"===== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    # --- clients -----------------------------------------------------------------------

    @property
    def coordinator_address(self) -> str:
        return f"127.0.0.1:{self.coordinator_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def channel(self) -> grpc.aio.Channel:
        """An mTLS channel to the coordinator (the leader, with several) as the admin,
        with the admin token."""
        from hive.coordinators import CoordinatorChannel
        from hive.tls import channel, token_interceptors

        assert self.admin is not None
        if len(self.coordinator_ports) > 1:
            return CoordinatorChannel(
                self.target(),
                security=self.admin,
                interceptors=token_interceptors(lambda: self.admin_token),
                patience=3.0,
            )
        return channel(
            self.coordinator_address,
            self.admin,
            interceptors=token_interceptors(lambda: self.admin_token),
        )

    def http(self, timeout: float = 60.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gateway_url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=timeout,
        )

    def metadata(self) -> list[tuple[str, str]]:
        return [bearer(self.admin_token)]

    async def status(self, timeout: float = 3.0) -> cluster_pb2.GetClusterStatusResponse:
        async with self.channel() as ch:
            return await cluster_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
                cluster_pb2.GetClusterStatusRequest(), timeout=timeout
            )

    async def leader_index(self, timeout: float = 2.0) -> int | None:
        """Which coordinator leads now (the one that answers GetClusterStatus), if any."""
        from hive.tls import channel, token_interceptors

        assert self.admin is not None
        for i in range(len(self.coordinator_ports)):
            if not self.coordinator_procs[i].running:
                continue
            async with channel(
                self.coordinator_address_of(i),
                self.admin,
                interceptors=token_interceptors(lambda: self.admin_token),
            ) as ch:
                try:
                    await cluster_pb2_grpc.ClusterServiceStub(ch).GetClusterStatus(
                        cluster_pb2.GetClusterStatusRequest(), timeout=timeout
                    )
                except grpc.aio.AioRpcError:
                    continue
                return i
        return None

    async def node_states(self) -> dict[str, int]:
        reply = await self.status()
        return {n.info.name: n.state for n in reply.nodes}

    # --- waiting -----------------------------------------------------------------------

    async def wait_coordinator(self, timeout: float = 30.0) -> float:
        """Seconds until the coordinator answers over mTLS."""
        return await poll(self._coordinator_up, timeout, "coordinator up", self)

    async def _coordinator_up(self) -> bool:
        if not any(c.running for c in self.coordinator_procs):
            raise AssertionError(f"the coordinator exited\n{self.logs()}")
        if not (self.state_dir / "admin.token").exists():
            return False
        self.admin_token = (self.state_dir / "admin.token").read_text().strip()
        try:
            await self.status(timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def wait_healthy(self, nodes: set[str], timeout: float = 30.0) -> float:
        async def up() -> bool:
            try:
                states = await self.node_states()
            except grpc.aio.AioRpcError:
                return False
            return all(states.get(n) == common_pb2.NODE_STATE_HEALTHY for n in nodes)

        return await poll(up, timeout, f"nodes {sorted(nodes)} healthy", self)

    async def wait_state(self, node: str, state: int, timeout: float = 30.0) -> float:
        async def reached() -> bool:
            try:
                return (await self.node_states()).get(node) == state
            except grpc.aio.AioRpcError:
                return False

        return await poll(reached, timeout, f"node {node} in state {state}", self)

    async def wait_gateway(self, timeout: float = 30.0) -> float:
        async def up() -> bool:
            try:
                async with self.http(timeout=2) as http:
                    return (await http.get("/api/version")).status_code == 200
            except httpx.HTTPError:
                return False

        return await poll(up, timeout, "gateway up", self)

    # --- faults ------------------------------------------------------------------------

    def cut(self, node: str) -> None:
        """Partition: the node's link drops every packet, both ways, silently (no RST)."""
        run("ip", "link", "set", self.links[node], "down")
        run("ip", "-n", self.netns[node], "link", "set", "eth0", "down")

    def heal(self, node: str) -> None:
        run("ip", "link", "set", self.links[node], "up")
        run("ip", "-n", self.netns[node], "link", "set", "eth0", "up")

    def slow(
        self, node: str, rate: str = "64kbit", burst: str = "2kb", latency: str = "100ms"
    ) -> None:
        """A slow, lossy link: a token bucket on both ends, dropping what overflows it.

        This kernel has no netem; tbf's small bucket and queue give a link that is slow and
        loses packets under any burst (TCP retransmits them), which is what a congested
        Wi-Fi or WAN hop does to a stream of tokens."""
        for argv in (
            ["tc", "qdisc", "replace", "dev", self.links[node], "root", "tbf"],
            [
                "ip",
                "netns",
                "exec",
                self.netns[node],
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "tbf",
            ],
        ):
            run(*argv, "rate", rate, "burst", burst, "latency", latency)

    def link_stats(self, node: str) -> tuple[int, int]:
        """(packets sent, packets dropped) by the token buckets on both ends of the link."""
        sent = dropped = 0
        for argv in (
            ["tc", "-s", "qdisc", "show", "dev", self.links[node]],
            ["ip", "netns", "exec", self.netns[node], "tc", "-s", "qdisc", "show", "dev", "eth0"],
        ):
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            found = re.search(r"Sent \d+ bytes (\d+) pkt \(dropped (\d+)", out)
            if found:
                sent += int(found.group(1))
                dropped += int(found.group(2))
        return sent, dropped

    def unslow(self, node: str) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            run("tc", "qdisc", "del", "dev", self.links[node], "root")
        with contextlib.suppress(subprocess.CalledProcessError):
            run(
                "ip", "netns", "exec", self.netns[node], "tc", "qdisc", "del", "dev", "eth0", "root"
            )


async def poll(
    check: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    cluster: ProcessCluster | None = None,
    interval: float = 0.05,
) -> float:
    """Seconds until ``check()`` holds; AssertionError (with the processes' logs) after
    ``timeout``."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            logs = cluster.logs() if cluster else ""
            raise AssertionError(f"not {what} after {timeout:.0f} s\n{logs}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def process_cluster(
    root: Path, nodes: Sequence[NodeSpec], **options: Any
) -> AsyncIterator[ProcessCluster]:
    cluster = ProcessCluster(root, nodes, **options)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()
