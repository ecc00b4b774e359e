"""The cluster and node files' JSON Schemas (issue 22): generated from the pydantic models
in hive.config_models, printed by `hive config schema`, committed in deploy/config/ for
editors, and every example file in the repository valid against its schema; pydantic's
errors keep hive's shape (file, key, reason)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hive.cli import main
from hive.config import (
    ConfigError,
    config_schema,
    parse_agent_config,
    parse_cluster_config,
    schema_text,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_CONFIG = ROOT / "deploy" / "config"
CLUSTER_KEYS = {"coordinator", "routing", "optimizer", "nodes"}


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DEPLOY_CONFIG / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _example_files() -> dict[str, list[Path]]:
    """Every cluster and node file git tracks, told apart by their top-level keys: a node
    file has ``node``, a cluster file only cluster keys (workloads, pipelines, Compose and
    Prometheus files have others)."""
    listed = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True
    )
    found: dict[str, list[Path]] = {"cluster": [], "node": []}
    for name in listed.stdout.split():
        if "node_modules" in name:
            continue
        data = yaml.safe_load((ROOT / name).read_text())
        if not isinstance(data, dict):
            continue
        if "node" in data:
            found["node"].append(ROOT / name)
        elif data and set(data) <= CLUSTER_KEYS:
            found["cluster"].append(ROOT / name)
    return found


@pytest.mark.parametrize("kind", ["cluster", "node"])
def test_the_committed_schemas_are_the_models(kind: str) -> None:
    committed = (DEPLOY_CONFIG / f"{kind}.schema.json").read_text()
    assert committed == schema_text(kind), (
        f"deploy/config/{kind}.schema.json is stale: "
        f"hive config schema {kind} > deploy/config/{kind}.schema.json"
    )


@pytest.mark.parametrize("kind", ["cluster", "node"])
def test_hive_config_schema_prints_it(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema", kind]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == config_schema(kind)
    assert printed == schema_text(kind)


def test_hive_config_schema_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["config", "schema", "gateway"])
    assert "choose from 'cluster', 'node'" in capsys.readouterr().err


def test_every_example_config_is_valid_against_its_schema() -> None:
    found = _example_files()
    relative = {kind: {str(p.relative_to(ROOT)) for p in paths} for kind, paths in found.items()}
    assert {
        "deploy/config/cluster.yaml",
        "hive/seed_cluster.yaml",
        "benchmarks/workloads/cluster20.yaml",
    } <= relative["cluster"]
    assert {"deploy/config/node.yaml", "deploy/swarm/nodes/ironwood.yaml"} <= relative["node"]
    for kind, parse in (("cluster", parse_cluster_config), ("node", parse_agent_config)):
        validator = _validator(kind)
        for path in found[kind]:
            data = yaml.safe_load(path.read_text())
            errors = [
                f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(data)
            ]
            assert not errors, f"{path}: {errors}"
            parse(data, str(path))  # and hive reads it


def test_every_config_in_the_docs_is_valid_against_its_schema() -> None:
    """The YAML blocks of README.md and docs/ that are cluster or node files (or parts of
    one) are valid too: a reader copies them."""
    checked = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
            data = yaml.safe_load(block)
            if not isinstance(data, dict) or not data:
                continue
            kind = "node" if "node" in data else "cluster" if set(data) <= CLUSTER_KEYS else ""
            if kind:
                errors = [e.message for e in _validator(kind).iter_errors(data)]
                assert not errors, f"{doc.name}: {block[:60]!r}: {errors}"
                checked += 1
    assert checked >= 2


@pytest.mark.parametrize("kind", ["cluster", "node"])
def test_the_deploy_files_point_editors_at_their_schema(kind: str) -> None:
    first = (DEPLOY_CONFIG / f"{kind}.yaml").read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema=./{kind}.schema.json"


NODE: dict[str, Any] = {"name": "N", "gpus": ["NVIDIA GeForce RTX 4090"]}
ENDPOINT: dict[str, Any] = {"id": "e", "url": "http://127.0.0.1:11434", "gpus": [0]}


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("cluster", {"coordinator": {"listn": ":50051"}}),
        ("cluster", {"coordinator": {"heartbeat_interval_seconds": "1s"}}),
        ("cluster", {"coordinator": {"max_message_bytes": 10}}),
        ("cluster", {"coordinator": {"metrics_listen": "9101"}}),
        ("cluster", {"coordinator": {"name": "two words"}}),
        ("cluster", {"nodes": [{**NODE, "gpus": ["NVIDIA GeForce RTX 9999"]}]}),
        ("cluster", {"nodes": [{**NODE, "endpoints": [{**ENDPOINT, "url": "ftp://x"}]}]}),
        ("cluster", {"nodes": [{**NODE, "endpoints": [{**ENDPOINT, "gpus": [0, 0]}]}]}),
        ("node", {"node": {**NODE, "endpoints": [{"id": "e", "gpus": [0]}]}}),
        ("node", {"node": NODE, "telemetry": "nvidia"}),
        ("node", {"node": NODE, "tls": {"ca": "a", "cert": "b", "key": "c", "ca_key": "d"}}),
        ("node", {"node": NODE, "chunk_max_chars": 0.5}),
    ],
)
def test_the_schema_refuses_what_hive_refuses(kind: str, data: dict[str, Any]) -> None:
    """The schema is as strict as the models where JSON Schema can say it: an editor
    flags these as hive would."""
    assert not _validator(kind).is_valid(data)
    parse = parse_cluster_config if kind == "cluster" else parse_agent_config
    with pytest.raises(ConfigError):
        parse(data, f"{kind}.yaml")


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        (None, "<top>", "expected a mapping, got nothing"),
        ({"nodez": []}, "nodez", "unknown key; expected one of coordinator, nodes, optimizer"),
        (
            {"nodes": [NODE, {**NODE, "name": "M", "endpoints": [{**ENDPOINT, "url": 5}]}]},
            "nodes[1].endpoints[0].url",
            "expected a string, got int",
        ),
        (
            {"nodes": [{**NODE, "endpoints": [{**ENDPOINT, "gpus": [0, 1]}]}]},
            "nodes[0].endpoints[0].gpus[1]",
            "1 is not a GPU index of this node (0..0)",
        ),
        (
            {"nodes": [{**NODE, "gpus": [{"name": "Arc", "memory_gb": "16"}]}]},
            "nodes[0].gpus[0].memory_gb",
            "expected a number, got str",
        ),
        (
            {"coordinator": {"suspect_after_seconds": 5, "lost_after_seconds": 4}},
            "coordinator.lost_after_seconds",
            "must not be shorter than suspect_after_seconds",
        ),
        (
            {"coordinator": {"auth": {"submit_burst": 0}}},
            "coordinator.auth.submit_burst",
            "must be >= 1, got 0",
        ),
        ({"coordinator": {"tls": {"ca": "a", "key": "k"}}}, "coordinator.tls.cert", "required"),
    ],
)
def test_errors_name_the_file_the_key_and_the_reason(data: Any, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(data, "/etc/hive/cluster.yaml")
    assert (err.value.source, err.value.key) == ("/etc/hive/cluster.yaml", key)
    assert err.value.reason.startswith(reason), err.value.reason
    assert str(err.value) == f"/etc/hive/cluster.yaml: {key}: {err.value.reason}"


def test_a_node_file_needs_each_endpoints_url_but_not_an_endpoint() -> None:
    with pytest.raises(ConfigError) as err:
        parse_agent_config({"node": {**NODE, "endpoints": [{"id": "e"}]}}, "node.yaml")
    assert (err.value.key, err.value.reason) == ("node.endpoints[0].url", "required")
    default = parse_agent_config({"node": NODE}, "node.yaml").node.endpoints
    assert [(e.id, e.url, e.gpus) for e in default] == [("default", "http://127.0.0.1:11434", (0,))]
