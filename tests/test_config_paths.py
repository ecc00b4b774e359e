"""Paths in a config file are relative to that file's directory, whatever the working
directory (issue 17, item 7): a coordinator started from elsewhere must find its own state
and admin token, not silently make an empty state and a new token."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import yaml

from hive.config import load_agent_config, load_cluster_config

HIVE = str(Path(sys.executable).with_name("hive"))


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _endpoint(**paths: str) -> dict[str, object]:
    return {"id": "peer", "url": "https://lab-b.example:8000", "gpus": [0], **paths}


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not the config file's."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_relative_paths_in_a_cluster_file_resolve_against_its_directory(
    tmp_path: Path, elsewhere: Path
) -> None:
    etc = tmp_path / "etc" / "hive"
    config = load_cluster_config(
        _write(
            etc / "cluster.yaml",
            {
                "coordinator": {
                    "state_path": "state/hive.sqlite",
                    "tls": {"ca": "tls/ca.pem", "cert": "tls/c.pem", "key": "tls/c-key.pem"},
                    "auth": {"admin_token_file": "secrets/admin.token"},
                },
                "nodes": [
                    {
                        "name": "LAB-B",
                        "gpus": ["NVIDIA GeForce GTX 1080"],
                        "endpoints": [_endpoint(token_file="lab-b.token", ca_file="lab-b.pem")],
                    }
                ],
            },
        )
    )
    settings = config.coordinator
    assert settings.state_path == str(etc / "state" / "hive.sqlite")
    assert settings.auth.admin_token_file == str(etc / "secrets" / "admin.token")
    assert settings.tls is not None and settings.tls.ca == str(etc / "tls" / "ca.pem")
    endpoint = config.nodes[0].endpoints[0]
    assert endpoint.token_file == str(etc / "lab-b.token")
    assert endpoint.ca_file == str(etc / "lab-b.pem")
    assert not list(elsewhere.iterdir())


def test_the_default_state_path_is_next_to_the_config_file(tmp_path: Path, elsewhere: Path) -> None:
    """Without state_path the state lives beside the file that configures it; the admin
    token's default (beside the state) follows."""
    config = load_cluster_config(_write(tmp_path / "conf" / "cluster.yaml", {"coordinator": {}}))
    assert config.coordinator.state_path == str(tmp_path / "conf" / "hive-state.sqlite")
    assert config.coordinator.auth.admin_token_file is None


def test_a_config_file_named_relatively_resolves_against_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hive coordinator --config conf/cluster.yaml`: the paths it yields are absolute, so
    they keep meaning the same file whatever the process does with its working directory."""
    _write(tmp_path / "conf" / "cluster.yaml", {"coordinator": {"state_path": "s.sqlite"}})
    monkeypatch.chdir(tmp_path)
    config = load_cluster_config("conf/cluster.yaml")
    assert config.coordinator.state_path == str(tmp_path / "conf" / "s.sqlite")


def test_absolute_paths_are_kept_as_written(tmp_path: Path, elsewhere: Path) -> None:
    config = load_cluster_config(
        _write(
            tmp_path / "conf" / "cluster.yaml",
            {
                "coordinator": {
                    "state_path": "/var/lib/hive/state.sqlite",
                    "auth": {"admin_token_file": "/run/hive/admin.token"},
                },
                "nodes": [
                    {
                        "name": "LAB-B",
                        "gpus": ["NVIDIA GeForce GTX 1080"],
                        "endpoints": [
                            _endpoint(token_file="/etc/hive/b.token", ca_file="/etc/hive/b.pem")
                        ],
                    }
                ],
            },
        )
    )
    assert config.coordinator.state_path == "/var/lib/hive/state.sqlite"
    assert config.coordinator.auth.admin_token_file == "/run/hive/admin.token"
    assert config.nodes[0].endpoints[0].token_file == "/etc/hive/b.token"
    assert config.nodes[0].endpoints[0].ca_file == "/etc/hive/b.pem"


def test_a_node_files_endpoint_paths_resolve_against_it(tmp_path: Path, elsewhere: Path) -> None:
    etc = tmp_path / "etc" / "hive"
    config = load_agent_config(
        _write(
            etc / "node.yaml",
            {
                "node": {
                    "name": "LAB-A",
                    "gpus": ["NVIDIA GeForce GTX 1080"],
                    "endpoints": [_endpoint(token_file="lab-b.token", ca_file="tls/lab-b.pem")],
                },
                "tls": {"ca": "tls/ca.pem", "cert": "tls/a.pem", "key": "tls/a-key.pem"},
            },
        )
    )
    endpoint = config.node.endpoints[0]
    assert endpoint.token_file == str(etc / "lab-b.token")
    assert endpoint.ca_file == str(etc / "tls" / "lab-b.pem")
    assert config.tls is not None and config.tls.cert == str(etc / "tls" / "a.pem")


async def test_a_coordinator_started_elsewhere_keeps_its_state_next_to_its_config(
    tmp_path: Path,
) -> None:
    """The real daemon, as an operator starts it from another directory: the state file
    (and its lock) appear beside the config, and nothing in the working directory."""
    conf = tmp_path / "conf"
    cluster = _write(
        conf / "cluster.yaml",
        {
            "coordinator": {
                "listen": "127.0.0.1:0",
                "metrics_listen": "off",
                "state_path": "state.sqlite",
            }
        },
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = await asyncio.create_subprocess_exec(
        HIVE,
        "coordinator",
        "--insecure",
        "--config",
        str(cluster),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any("coordinator listening on" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"coordinator exited: {''.join(seen)}")
                seen.append(line)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, "".join(seen) + out.decode()
    assert (conf / "state.sqlite").exists()
    assert (conf / "state.sqlite.lock").exists()
    assert not list(cwd.iterdir())
