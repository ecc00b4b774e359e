"""Operations: sd_notify from real daemons, the state lock, systemd units, the swarm stack,
Prometheus config, rules and rule tests."""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from coordinator.state_lock import StateLock, StateLocked
from hive.config import load_agent_config, load_cluster_config, store_with_password
from hive.sdnotify import Notifier

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
HIVE = str(Path(sys.executable).with_name("hive"))
PROMTOOL = shutil.which("promtool")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus; scripts/install-system-deps.sh)",
)
UNITS = sorted((DEPLOY / "systemd").glob("hive-*.service"))


# --- sd_notify ---------------------------------------------------------------------


class NotifySocket:
    """The systemd side of the protocol: a datagram socket the daemon under test writes to,
    read continuously (as systemd does) from the test's event loop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[str] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append(data.decode())
            self._arrived.set()

    async def until(self, line: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        """Wait until ``count`` datagrams hold the line ``line``."""
        async with asyncio.timeout(timeout):
            while sum(line in m.splitlines() for m in self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages

    def close(self) -> None:
        self._reader.cancel()
        self.sock.close()


async def test_notifier_speaks_to_abstract_and_path_sockets(tmp_path: Path) -> None:
    for address in (f"@hive-{uuid.uuid4().hex}", str(tmp_path / "notify")):
        sock = NotifySocket(address)
        try:
            notifier = Notifier.from_environ({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "40000"})
            assert notifier.watchdog_interval == pytest.approx(0.02)
            async with notifier.serving("up"):
                await sock.until("WATCHDOG=1", count=3)
            await sock.until("STOPPING=1")
            assert sock.messages[0].splitlines() == ["READY=1", "STATUS=up"]
        finally:
            sock.close()


def test_notifier_is_a_no_op_outside_systemd_and_ignores_foreign_watchdogs() -> None:
    assert not Notifier.from_environ({}).ready("x")
    other = Notifier.from_environ(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid() + 1)}
    )
    assert other.watchdog_interval is None
    # A socket nobody listens on: logged, never raised.
    assert not Notifier(f"@nobody-{uuid.uuid4().hex}").ready()


async def _daemon(
    args: list[str], notify: NotifySocket, tmp_path: Path
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": "200000",  # 0.2 s: pings every 0.1 s
    }
    env.pop("WATCHDOG_PID", None)
    return await asyncio.create_subprocess_exec(
        HIVE,
        *args,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _stop(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"did not stop on SIGTERM: {out.decode()[-3000:]}") from None
    return out.decode()


def _port(messages: list[str], what: str) -> int:
    for message in messages:
        match = re.search(rf"{what} on port (\d+)", message)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no '{what} on port' in {messages}")


async def test_each_daemon_notifies_ready_and_pings_the_watchdog(tmp_path: Path) -> None:
    """`hive coordinator`, `hive agent` and `hive gateway` as systemd runs them: READY=1
    once serving, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM."""
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        yaml.safe_dump(
            {
                "coordinator": {
                    "listen": "127.0.0.1:0",
                    "state_path": str(tmp_path / "state.sqlite"),
                    "metrics_listen": "127.0.0.1:0",
                }
            }
        )
    )
    sockets = [NotifySocket(f"@hive-test-{uuid.uuid4().hex}") for _ in range(3)]
    coordinator_sock, agent_sock, gateway_sock = sockets
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(
            await _daemon(
                ["coordinator", "--insecure", "--config", str(cluster)], coordinator_sock, tmp_path
            )
        )
        await coordinator_sock.until("READY=1")
        port = _port(coordinator_sock.messages, "serving gRPC")
        assert "metrics on port" in "".join(coordinator_sock.messages)

        node = tmp_path / "node.yaml"
        node.write_text(
            yaml.safe_dump(
                {
                    "coordinator": f"127.0.0.1:{port}",
                    "listen": "127.0.0.1:0",
                    "metrics_listen": "127.0.0.1:0",
                    "telemetry": "simulated",
                    "node": {
                        "name": "TESTNODE",
                        "gpus": ["NVIDIA GeForce GTX 1080"],
                        # Nothing listens there: the agent serves anyway, endpoint unhealthy.
                        "endpoints": [{"id": "gpu0", "url": "http://127.0.0.1:9", "gpus": [0]}],
                    },
                }
            )
        )
        procs.append(
            await _daemon(["agent", "--insecure", "--config", str(node)], agent_sock, tmp_path)
        )
        procs.append(
            await _daemon(
                [
                    "gateway",
                    "--insecure",
                    "--listen",
                    "127.0.0.1:0",
                    "--coordinator",
                    f"127.0.0.1:{port}",
                ],
                gateway_sock,
                tmp_path,
            )
        )
        for sock in sockets:
            await sock.until("READY=1")
            await sock.until("WATCHDOG=1", count=3)
        await agent_sock.until("STATUS=node TESTNODE: connected to 127.0.0.1:" + str(port))

        # A second coordinator on the same state file refuses to start, and says why.
        second = await asyncio.create_subprocess_exec(
            HIVE,
            "coordinator",
            "--insecure",
            "--config",
            str(cluster),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(second.communicate(), 20)
        assert second.returncode == 1
        assert "in use by another coordinator" in out.decode()
    finally:
        outputs = [await _stop(p) for p in reversed(procs)][::-1]
        for sock in sockets:
            with contextlib.suppress(TimeoutError):
                await sock.until("STOPPING=1", timeout=2)
            sock.close()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
    for sock in sockets:
        assert sock.messages[0].startswith("READY=1")
        assert any(m.startswith("STOPPING=1") for m in sock.messages)


def test_the_store_password_joins_the_url_as_a_parameter() -> None:
    url = "postgresql://hive@postgres:5432/hive"
    assert store_with_password(url, "p@ss/w:rd&x") == url + "?password=p%40ss%2Fw%3Ard%26x"
    assert store_with_password(url + "?sslmode=require", "pw").endswith(
        "?sslmode=require&password=pw"
    )
    for bad_url, why in (
        ("postgresql://hive:pw@postgres/hive", "already has a password"),
        ("postgresql://hive@postgres/hive?password=pw", "already has a password"),
        ("/var/lib/hive/state.sqlite", "needs a postgresql:// store"),
        ("", "needs a postgresql:// store"),
    ):
        with pytest.raises(ValueError, match=why):
            store_with_password(bad_url, "pw")
    with pytest.raises(ValueError, match="empty"):
        store_with_password(url, "")


async def test_a_coordinator_reads_its_store_password_from_a_file(
    tmp_path: Path, postgres_db: str
) -> None:
    """The swarm stack's coordinator: --store without the password, the password from the
    Docker secret (--store-password-file), --advertise; it leads, and never prints the
    password."""
    parts = urllib.parse.urlsplit(postgres_db)
    password = parts.password
    assert password
    secret = tmp_path / "hive-postgres-password"
    secret.write_text(password + "\n")
    store = postgres_db.replace(f":{password}@", "@")
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        yaml.safe_dump(
            {
                "coordinator": {
                    "listen": "127.0.0.1:0",
                    "metrics_listen": "off",
                    "lease_seconds": 2.0,
                }
            }
        )
    )
    args = ["coordinator", "--insecure", "--config", str(cluster), "--store", store]
    missing = await asyncio.create_subprocess_exec(
        HIVE,
        *args,
        "--store-password-file",
        str(tmp_path / "nope"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(missing.communicate(), 20)
    assert missing.returncode == 2
    assert out.decode().count("\n") == 1 and "HIVE_STORE_PASSWORD_FILE" in out.decode()

    sock = NotifySocket(f"@hive-test-{uuid.uuid4().hex}")
    lines: list[bytes] = []
    proc = await _daemon(
        [*args, "--store-password-file", str(secret), "--advertise", "coordinator-1:50051"],
        sock,
        tmp_path,
    )
    try:
        await sock.until("READY=1")
        assert proc.stdout is not None
        async with asyncio.timeout(20):  # READY=1 is serving (a standby); then it leads
            while b"leader (epoch" not in (line := await proc.stdout.readline()):
                assert line, b"".join(lines).decode()
                lines.append(line)
        lines.append(line)
    finally:
        output = b"".join(lines).decode() + await _stop(proc)
        sock.close()
    assert proc.returncode == 0, output
    assert "coordinator coordinator-1:50051: leader (epoch 1)" in output, output
    assert password not in output


def test_state_lock_admits_one_coordinator(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    with StateLock(state):
        with pytest.raises(StateLocked, match=r"in use by another coordinator \(pid \d+"):
            StateLock(state).acquire()
    with StateLock(state):  # released with the first
        pass


# --- systemd -----------------------------------------------------------------------


def _unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(re.sub(r"^(\w+)=(.*)$", _number_repeats(), path.read_text(), flags=re.M))
    return parser


def _number_repeats() -> Callable[[re.Match[str]], str]:
    """Repeated keys (DeviceAllow=) get a suffix so configparser keeps them all."""
    seen: dict[str, int] = {}

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        seen[key] = seen.get(key, 0) + 1
        return f"{key}{'' if seen[key] == 1 else '#' + str(seen[key])}={match.group(2)}"

    return sub


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_passes_on_every_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks the units' syntax, directives and that ExecStart is
    executable. The units run /opt/hive/bin/hive (install.sh's venv), which this machine
    lacks, so the copies verified here point ExecStart at this checkout's `hive`."""
    units = [*UNITS, DEPLOY / "systemd/hive-distributed.target"]
    for unit in units:
        text = unit.read_text()
        assert "/opt/hive/bin/hive " in text or unit.suffix == ".target"
        (tmp_path / unit.name).write_text(text.replace("/opt/hive/bin/hive", HIVE))
    for unit in units:
        assert SYSTEMD_ANALYZE is not None
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", str(tmp_path / unit.name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", f"{unit.name}: {result.stderr}"


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_are_notify_daemons_sandboxed_under_the_target(path: Path) -> None:
    unit = _unit(path)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "hive"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "StandardOutput": "journal",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert unit["Unit"]["PartOf"] == "hive-distributed.target"
    assert unit["Install"]["WantedBy"] == "hive-distributed.target"
    exec_start = service["ExecStart"]
    assert exec_start.startswith("/opt/hive/bin/hive ")
    if "coordinator" in path.name:
        assert service["StateDirectory"] == "hive"
        assert "/etc/hive/cluster.yaml" in exec_start
    if "node-agent" in path.name:
        assert service["SupplementaryGroups"] == "video render"
        allowed = [v for k, v in service.items() if k.startswith("DeviceAllow")]
        assert {"char-nvidia-frontend rw", "/dev/kfd rw", "char-drm rw"} <= set(allowed)
        assert service["DevicePolicy"] == "closed"
        assert "/etc/hive/node.yaml" in exec_start
    if "gateway" in path.name:
        assert service["EnvironmentFile"] == "/etc/hive/gateway.env"


def test_install_script_and_example_configs_agree_with_the_units() -> None:
    script = (DEPLOY / "systemd/install.sh").read_text()
    assert "prefix=${HIVE_PREFIX:-/opt/hive}" in script
    assert '"$prefix/bin/pip" install --quiet "$repo"' in script  # pip install ., as README
    sysusers = (DEPLOY / "systemd/hive.sysusers.conf").read_text()
    assert "m hive video" in sysusers and "m hive render" in sysusers
    subprocess.run(["bash", "-n", str(DEPLOY / "systemd/install.sh")], check=True)
    # Each shipped file names its schema beside it (yaml-language-server), and the script
    # installs the schemas there.
    for name in ("cluster", "node"):
        first = (DEPLOY / f"config/{name}.yaml").read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema=./{name}.schema.json", first
        assert f"{name}.schema.json" in script
    cluster = load_cluster_config(DEPLOY / "config/cluster.yaml")
    assert cluster.coordinator.state_path.startswith("/var/lib/hive/")  # StateDirectory=hive
    assert cluster.coordinator.metrics_listen.endswith(":9101")
    assert load_agent_config(DEPLOY / "config/node.yaml").metrics_listen.endswith(":9102")
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "config/gateway.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(env) == {"HIVE_GATEWAY_LISTEN", "HIVE_COORDINATOR", "HIVE_TLS_DIR"}
    assert load_cluster_config(DEPLOY / "config/cluster.yaml").coordinator.tls is not None


# --- Docker Swarm --------------------------------------------------------------------


def _compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "swarm/docker-compose.distributed.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_validates_against_the_compose_specification() -> None:
    # The vendored schema (compose-spec/compose-spec, schema/compose-spec.json) is draft-07.
    schema = json.loads((DEPLOY / "swarm/compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(_compose())
    # And it does reject what Compose rejects.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({"services": {"coordinator": {"replica": 3}}})


def test_stack_has_three_coordinators_on_postgres_placed_agents_healthchecks_and_configs() -> None:
    compose = _compose()
    services: dict[str, dict[str, object]] = compose["services"]  # type: ignore[assignment]
    coordinator = services["coordinator"]
    deploy = coordinator["deploy"]
    assert deploy["replicas"] == 3  # type: ignore[index]
    assert deploy["update_config"]["order"] == "stop-first"  # type: ignore[index]
    assert deploy["placement"]["constraints"] == ["node.labels.hive.coordinator == true"]  # type: ignore[index]
    assert deploy["placement"]["max_replicas_per_node"] == 1  # type: ignore[index]
    assert "hive-state:/var/lib/hive" in coordinator["volumes"]  # type: ignore[operator]
    # Each replica published on its own node, advertising it; the store's password from the
    # secret the postgres image reads too.
    assert coordinator["ports"] == [  # type: ignore[comparison-overlap]
        {"target": 50051, "published": 50051, "protocol": "tcp", "mode": "host"}
    ]
    assert coordinator["environment"]["HIVE_ADVERTISE"] == "{{.Node.Hostname}}:50051"  # type: ignore[index]
    command: list[str] = coordinator["command"]  # type: ignore[assignment]
    store = next(a.split("=", 1)[1] for a in command if a.startswith("--store="))
    assert store == "postgresql://hive@postgres:5432/hive"  # no password in the stack
    password_file = next(
        a.split("=", 1)[1] for a in command if a.startswith("--store-password-file=")
    )
    postgres = services["postgres"]
    assert str(postgres["image"]).startswith("postgres:")
    env: dict[str, str] = postgres["environment"]  # type: ignore[assignment]
    assert env["POSTGRES_PASSWORD_FILE"] == password_file
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"]) == ("hive", "hive")
    for service in (coordinator, postgres):
        assert {"source": "hive-postgres-password", "target": password_file} in service["secrets"]  # type: ignore[operator]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]  # type: ignore[index]
    assert postgres["deploy"]["replicas"] == 1  # type: ignore[index]
    assert "postgres-data" in compose["volumes"]  # type: ignore[operator]
    gateway_command: list[str] = services["gateway"]["command"]  # type: ignore[assignment]
    assert "--coordinator=tasks.coordinator:50051" in gateway_command
    agents = {k: v for k, v in services.items() if k.startswith("agent-")}
    assert sorted(agents) == [
        "agent-acacia",
        "agent-forsteinet",
        "agent-ironwood",
        "agent-rosewood",
        "agent-walnut",
    ]
    configs: dict[str, dict[str, str]] = compose["configs"]  # type: ignore[assignment]
    for name, service in agents.items():
        node = name.removeprefix("agent-").upper()
        assert service["deploy"]["placement"]["constraints"] == [  # type: ignore[index]
            f"node.labels.hive.node == {node}"
        ]
        source = service["configs"][0]["source"]  # type: ignore[index]
        config_file = DEPLOY / "swarm" / configs[source]["file"]
        agent_config = load_agent_config(config_file)
        assert agent_config.node.name == node
        assert len(agent_config.coordinator.split(",")) == 3, "the agent knows every coordinator"
        gpu_access = service.get("environment", {}).get("NVIDIA_VISIBLE_DEVICES") or service.get(  # type: ignore[attr-defined]
            "devices"
        )
        assert gpu_access, f"{name} has no GPU access"
    for name in ("coordinator", "gateway", *agents):
        test = services[name]["healthcheck"]["test"]  # type: ignore[index]
        assert test[:3] == ["CMD", "hive", "health"], name
    assert services["prometheus"]["configs"]
    for config in configs.values():
        assert (DEPLOY / "swarm" / config["file"]).is_file(), config
    load_cluster_config(DEPLOY / "swarm" / configs["hive-cluster"]["file"])


def test_dockerfile_installs_the_package_the_readme_installs() -> None:
    """No Docker engine here, so the image is not built: the Dockerfile is read instead.
    It must copy every package pyproject.toml ships and `pip install .` from that copy,
    the non-editable form of the README's `pip install -e .`."""
    dockerfile = (DEPLOY / "swarm/Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e ." in readme
    instructions = [
        line.strip()
        for line in re.sub(r"\\\n", " ", dockerfile).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    runs = [i for i in instructions if i.startswith("RUN ")]
    assert any(re.search(r"\bpip install \.(\s|$)", r) for r in runs), runs
    copied = {i.split()[1] for i in instructions if i.startswith("COPY ")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", *packages} <= copied
    assert project["project"]["readme"] == "README.md" and "README.md" in dockerfile
    assert 'ENTRYPOINT ["hive"]' in instructions
    assert any(i.startswith("USER ") and "root" not in i for i in instructions)


# --- Prometheus --------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_configs_and_rules(tmp_path: Path) -> None:
    def promtool(*args: str, cwd: Path = DEPLOY / "prometheus") -> None:
        assert PROMTOOL is not None
        result = subprocess.run(
            [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr

    promtool("check", "config", "prometheus.yml")
    promtool("check", "rules", "rules/hive.rules.yml")
    # The stack's config names the rules where the docker config mounts them.
    swarm = (DEPLOY / "swarm/prometheus.yml").read_text()
    assert "/etc/prometheus/hive.rules.yml" in swarm
    shutil.copy(DEPLOY / "prometheus/rules/hive.rules.yml", tmp_path / "hive.rules.yml")
    (tmp_path / "prometheus.yml").write_text(
        swarm.replace("/etc/prometheus/hive.rules.yml", "hive.rules.yml")
    )
    promtool("check", "config", "prometheus.yml", cwd=tmp_path)


@needs_promtool
def test_rule_tests_show_the_node_lost_alert_firing() -> None:
    """deploy/prometheus/tests/hive.rules.test.yml: ACACIA lost for over a minute fires
    HiveNodeLost (and not before); GPU hot, VRAM full, queue growing, workflow failures
    and reconnect storms fire on their inputs."""
    assert PROMTOOL is not None
    tests = DEPLOY / "prometheus/tests/hive.rules.test.yml"
    assert "alertname: HiveNodeLost" in tests.read_text()
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_grafana_dashboard_is_json_with_prometheus_panels() -> None:
    dashboard = json.loads((DEPLOY / "grafana/hive-dashboard.json").read_text())
    assert dashboard["uid"] == "hive-mesh"
    assert all(
        p["targets"] and p["datasource"]["type"] == "prometheus" for p in dashboard["panels"]
    )


def test_stack_mounts_every_certificate_its_configs_name() -> None:
    """Each mTLS file a service's config (or command line) reads is a Docker secret mounted
    at that path, so the stack starts secured instead of refusing to start."""
    compose = _compose()
    services: dict[str, dict[str, Any]] = compose["services"]  # type: ignore[assignment]
    configs: dict[str, dict[str, str]] = compose["configs"]  # type: ignore[assignment]
    declared: dict[str, object] = compose["secrets"]  # type: ignore[assignment]

    def mounted(service: dict[str, Any]) -> set[str]:
        for secret in service.get("secrets", []):
            assert secret["source"] in declared, secret
        return {secret["target"] for secret in service.get("secrets", [])}

    cluster = load_cluster_config(DEPLOY / "swarm" / configs["hive-cluster"]["file"])
    tls = cluster.coordinator.tls
    assert tls is not None
    assert {tls.ca, tls.cert, tls.key} <= mounted(services["coordinator"])
    for name, service in services.items():
        if not name.startswith("agent-"):
            continue
        node = load_agent_config(
            DEPLOY / "swarm" / configs[service["configs"][0]["source"]]["file"]
        )
        assert node.tls is not None, name
        assert {node.tls.ca, node.tls.cert, node.tls.key} <= mounted(service), name
        # The health check connects with the node's own certificate.
        assert service["environment"]["HIVE_TLS_NAME"] == node.node.name
    gateway = services["gateway"]
    tls_dir = next(a.split("=", 1)[1] for a in gateway["command"] if a.startswith("--tls-dir="))
    assert {f"{tls_dir}/ca.pem", f"{tls_dir}/gateway.pem", f"{tls_dir}/gateway-key.pem"} <= mounted(
        gateway
    )


def test_daemons_collect_young_garbage_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every long-lived command (`hive coordinator|agent|gateway|dev`) runs through
    _run_until_signal, which raises the young-generation GC threshold (its pauses were
    in the assignment p99) and keeps the older generations at least as lazy."""
    import gc

    from hive import cli
    from hive.serving import GC_YOUNG_THRESHOLD

    young, older, oldest = gc.get_threshold()
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(t))
    ran: list[bool] = []

    async def daemon() -> None:
        ran.append(True)

    assert cli._run_until_signal(daemon) == 0
    assert ran == [True]
    assert calls == [(GC_YOUNG_THRESHOLD, max(older, 20), max(oldest, 100))]
    assert GC_YOUNG_THRESHOLD > young
