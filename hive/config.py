"""Typed configuration for every Hive process, loaded from YAML.

A cluster file (``cluster.yaml``) describes the coordinator's settings, the
router's weights and chains, and the nodes; a node file (``node.yaml``) tells one
agent where the coordinator is and what its host has. Their schema (keys, types, limits
and defaults) is declared in hive.config_models as pydantic models; this module validates
a file with them and builds the frozen dataclasses below, which the processes run with
(and tests build directly: their defaults are the schema's). Every error names the file,
the key (``nodes[1].endpoints[0].url``) and why. `hive config schema cluster|node` prints
the JSON Schema, committed as deploy/config/{cluster,node}.schema.json.

Every path a file names (and the default state_path) is relative to that file's
directory, never to the working directory: a process started from anywhere finds the
same state, tokens and certificates. Loaded paths are absolute.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from hive import config_models as models
from hive import hardware
from hive.config_models import CLUSTER_NAME as CLUSTER_NAME
from hive.config_models import ENDPOINT_ID as ENDPOINT_ID
from hive.config_models import NODE_NAME as NODE_NAME
from hive.config_models import POSTGRES_SCHEMES as POSTGRES_SCHEMES
from hive.config_models import TELEMETRY_PROVIDERS as TELEMETRY_PROVIDERS
from hive.config_models import check_store as check_store
from hive.config_models import redact_url as redact_url
from hive.pki import CertPaths
from hive.tls import HOW_TO_SECURE, InsecureRefused, Security

_M = TypeVar("_M", bound=BaseModel)


def _default(model: type[BaseModel], name: str) -> Any:
    """The default of a key in the file's schema (hive.config_models), the one place
    defaults live: the dataclasses below take theirs from it."""
    return model.model_fields[name].default


class ConfigError(ValueError):
    """A configuration problem, located by file and key."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    vendor: str
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    id: str
    gpus: tuple[int, ...]
    num_parallel: int = _default(models.ClusterEndpoint, "num_parallel")
    max_queue: int = _default(models.ClusterEndpoint, "max_queue")
    models: tuple[str, ...] = ()
    # Where the Ollama instance listens; None in a cluster file that `hive dev` fills in.
    url: str | None = None
    # Federation: when ``url`` is another Hive cluster's gateway with API tokens on, a file
    # holding a token of that cluster (submit scope), sent as "Authorization: Bearer".
    # Relative to the config file's directory, as every path in a config file.
    token_file: str | None = None
    # CA certificate(s), PEM, that an https url's server must be signed by (a peer's
    # gateway with its cluster's certificate); None: the system's trusted CAs.
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    gpus: tuple[GpuSpec, ...]
    endpoints: tuple[EndpointSpec, ...]
    specializations: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # GB/s at which this host reads a model file into VRAM (NVMe about 1.5-3, a SATA SSD
    # 0.5, a disk 0.15): how long a cold load takes. The emulator and the simulator use
    # it; the coordinator learns the real speed from Ollama's load_duration instead.
    model_load_gbps: float = _default(models.ClusterNode, "model_load_gbps")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Certificate files of one process (paths relative to its config file's directory)."""

    ca: str
    cert: str
    key: str
    # The coordinator only: the CA's private key, to sign enrolment requests. Without it
    # nodes get certificates from `hive certs issue` on the host that holds the CA.
    ca_key: str | None = None
    # The name in the coordinator's certificate, which agents and clients expect.
    coordinator_name: str = _default(models.AgentTls, "coordinator_name")

    def paths(self) -> CertPaths:
        return CertPaths(Path(self.ca), Path(self.cert), Path(self.key))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # Bearer tokens on the client API; None: required exactly when TLS is on.
    api_tokens: bool | None = None
    # Per-token submissions (workflows, generate, chat): sustained rate and burst.
    submit_rate_per_second: float = _default(models.Auth, "submit_rate_per_second")
    submit_burst: int = _default(models.Auth, "submit_burst")
    # Where the coordinator writes the first admin token when it has none (relative to the
    # config file's directory); None: next to the state file, as "admin.token" (mode 0600).
    admin_token_file: str | None = None


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    listen: str = _default(models.Coordinator, "listen")
    # This cluster's name for federation (another Hive cluster that uses this one's gateway
    # as a node's Ollama); "" = this host's name and the coordinator's port.
    name: str = ""
    heartbeat_interval_seconds: float = _default(models.Coordinator, "heartbeat_interval_seconds")
    suspect_after_seconds: float = _default(models.Coordinator, "suspect_after_seconds")
    lost_after_seconds: float = _default(models.Coordinator, "lost_after_seconds")
    # Largest gRPC message accepted, in bytes.
    max_message_bytes: int = _default(models.Coordinator, "max_message_bytes")
    # SQLite database (WAL) holding workflows and tasks. Loaded from a file, a relative
    # path (this default too) is relative to the file's directory; set in code, to the
    # working directory.
    state_path: str = _default(models.Coordinator, "state_path")
    # Where the state lives: "" = the SQLite file state_path; ``sqlite:///path`` (as
    # SQLAlchemy writes it: ``sqlite:////abs/path`` is absolute) or a plain path = that
    # SQLite file; ``postgresql://user:password@host/db`` (or ``postgres://``)
    # = PostgreSQL, shared by several coordinators. `hive coordinator --store` and
    # HIVE_STORE override it.
    store: str = ""
    # Several coordinators on one PostgreSQL store: the leader's lease lasts this long
    # unless renewed every renew_seconds; a standby takes over within about the lease
    # after the leader dies (docs/operations.md, High availability).
    lease_seconds: float = _default(models.Coordinator, "lease_seconds")
    renew_seconds: float = _default(models.Coordinator, "renew_seconds")
    # The address clients and agents should use for this coordinator (a standby names the
    # leader's to them); "" = this host's name and the bound port.
    advertise: str = _default(models.Coordinator, "advertise")
    # Prometheus /metrics (host:port, ":9101" = every interface; "off" disables).
    metrics_listen: str = _default(models.Coordinator, "metrics_listen")
    # Mutual TLS on every connection; without it the coordinator refuses to start unless
    # insecure is true (or --insecure): plaintext, no authentication at all.
    tls: TlsSettings | None = None
    insecure: bool = False
    # Enrolment (join tokens → certificates): TLS without client certificates, since a
    # new node has none yet. Needs tls.ca_key. "off" disables.
    enroll_listen: str = _default(models.Coordinator, "enroll_listen")
    auth: AuthSettings = field(default_factory=AuthSettings)

    def security(self, source: str, insecure: bool = False) -> Security | None:
        """The TLS material to serve with, None for plaintext when insecure was asked for;
        InsecureRefused when neither is configured."""
        return _security(source, "coordinator.tls", self.tls, self.insecure or insecure)

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL URL when the state lives in PostgreSQL, else None."""
        return self.store if self.store.startswith(POSTGRES_SCHEMES) else None

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file holding the state, None when it lives in PostgreSQL."""
        if self.postgres_url:
            return None
        return self.store.removeprefix("sqlite:///") if self.store else self.state_path


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    source: str
    coordinator: CoordinatorSettings
    nodes: tuple[NodeSpec, ...]
    # Parsed and validated by coordinator.routing, which owns its schema.
    routing: Mapping[str, Any] = field(default_factory=dict)
    # Parsed and validated by coordinator.optimizer.config, which owns its schema.
    optimizer: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    source: str
    coordinator: str
    node: NodeSpec
    listen: str = _default(models.NodeFile, "listen")
    # host:port the coordinator dials back; defaults to the bound listen address.
    advertise: str | None = None
    telemetry: str = _default(models.NodeFile, "telemetry")
    heartbeat_interval_seconds: float = _default(models.NodeFile, "heartbeat_interval_seconds")
    reconnect_initial_seconds: float = _default(models.NodeFile, "reconnect_initial_seconds")
    reconnect_max_seconds: float = _default(models.NodeFile, "reconnect_max_seconds")
    # Prometheus /metrics (host:port, ":9102" = every interface; "off" disables).
    metrics_listen: str = _default(models.NodeFile, "metrics_listen")
    # Output chunks are sent when this many characters gathered or this long passed (the
    # first at once): every chunk is a message through agent, coordinator and gateway, and
    # a message costs each ~0.1-0.2 ms of CPU, while a reader sees text 10 times a second
    # (benchmarks/bench_scale.py: central CPU per token 442 us at 0.02 s, 155 us at 0.1 s).
    chunk_max_chars: int = _default(models.NodeFile, "chunk_max_chars")
    chunk_max_seconds: float = _default(models.NodeFile, "chunk_max_seconds")
    # A task whose coordinator went away keeps running this long for the next leader to
    # adopt (RunTaskRequest.adopt), then it is stopped.
    orphan_seconds: float = _default(models.NodeFile, "orphan_seconds")
    # Mutual TLS with the coordinator (and for RunTask); see CoordinatorSettings.
    tls: TlsSettings | None = None
    insecure: bool = False

    def security(self, insecure: bool = False) -> Security | None:
        return _security(self.source, "tls", self.tls, self.insecure or insecure)


def read_token_file(path: str, source: str, key: str) -> str:
    """The API token in the file ``path`` (surrounding whitespace dropped); a ConfigError
    naming ``source`` and ``key`` when it cannot be read."""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(source, key, exc.strerror or str(exc)) from None


def _security(source: str, key: str, tls: TlsSettings | None, insecure: bool) -> Security | None:
    if tls is None:
        if insecure:
            return None
        raise InsecureRefused(f"{source}: {key}: {HOW_TO_SECURE}")
    try:
        return Security.load(tls.paths(), tls.coordinator_name)
    except (OSError, ValueError) as exc:
        raise ConfigError(source, key, f"cannot load the certificates: {exc}") from None


def _resolve(source: str, value: str) -> str:
    """A path named in the config file ``source``: relative paths are relative to that
    file's directory (made absolute, so the working directory never matters); absolute
    ones are kept. A source that is not a file ("<...>") keeps the path as written."""
    if Path(value).is_absolute() or not source or source.startswith("<"):
        return value
    return str(Path(source).parent.absolute() / value)


def _resolve_opt(source: str, value: str | None) -> str | None:
    return None if value is None else _resolve(source, value)


def store_with_password(url: str, password: str) -> str:
    """The PostgreSQL ``url`` with ``password`` added as its ``password`` parameter,
    percent-encoded (so any character may appear in it): how `hive coordinator
    --store-password-file` joins a Docker secret or a root-only file to a URL kept without
    one. ValueError when ``url`` is not PostgreSQL's, already carries a password, or the
    password is empty."""
    if not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(
            f"a password file needs a postgresql:// store, not {redact_url(url) or 'SQLite'!r}"
        )
    if redact_url(url) != url:
        raise ValueError(f"{redact_url(url)!r} already has a password: give it one way only")
    if not password:
        raise ValueError("the password file is empty")
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}password={urllib.parse.quote(password, safe='')}"


def _validate(model: type[_M], data: Any, source: str) -> _M:
    """``data`` as ``model``, or the first thing wrong with it as a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _config_error(source, exc.errors(include_url=False)[0]) from None


def _config_error(source: str, error: ErrorDetails) -> ConfigError:
    """pydantic's error as ours: the key from its location (``nodes[1].endpoints[0].url``),
    the reason in the words the rest of hive uses."""
    ctx = error.get("ctx") or {}
    loc = [p for p in error["loc"] if p not in models.GPU_TAGS] + list(ctx.get("at", ()))
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return ConfigError(source, key or "<top>", _reason(error, ctx))


def _reason(error: ErrorDetails, ctx: Mapping[str, Any]) -> str:
    value, kind = error["input"], error["type"]
    got = "nothing" if value is None else type(value).__name__
    if kind == "hive":
        return str(ctx["reason"])
    if kind == "missing":
        return "required"
    if kind in ("dict_type", "model_type"):
        return f"expected a mapping, got {got}"
    if kind == "int_type" and isinstance(value, float):
        return f"expected an integer, got {value!r}"
    expected = {
        "string_type": "a string",
        "int_type": "an integer",
        "float_type": "a number",
        "bool_type": "true or false",
        "list_type": "a list",
    }
    if kind in expected:
        return f"expected {expected[kind]}, got {got}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx['pattern']}"
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx['expected']}"
    if kind == "string_too_short":
        return "must not be empty"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit:g}, got {value!r}"
    return error["msg"]


def _gpu(raw: str | models.CustomGpu) -> GpuSpec:
    """A GPU is a catalog name, or a mapping with name, vendor and memory_gb for others."""
    if isinstance(raw, str):
        kind = hardware.gpu_kind(raw)
        return GpuSpec(kind.name, kind.vendor, kind.memory_bytes)
    return GpuSpec(raw.name, raw.vendor, int(raw.memory_gb * hardware.GIB))


def _endpoint(e: models.ClusterEndpoint, source: str) -> EndpointSpec:
    return EndpointSpec(
        id=e.id,
        gpus=tuple(e.gpus or ()),
        num_parallel=e.num_parallel,
        max_queue=e.max_queue,
        models=tuple(e.models),
        url=e.url,
        token_file=_resolve_opt(source, e.token_file),
        ca_file=_resolve_opt(source, e.ca_file),
    )


def _node(n: models.ClusterNode, source: str) -> NodeSpec:
    gpus = tuple(_gpu(g) for g in n.gpus or ())
    endpoints = tuple(_endpoint(e, source) for e in n.endpoints or ())
    if not endpoints and isinstance(n, models.AgentNode):
        endpoints = (
            EndpointSpec("default", tuple(range(len(gpus))), url="http://127.0.0.1:11434"),
        )
    return NodeSpec(
        name=n.name,
        gpus=gpus,
        endpoints=endpoints,
        specializations=tuple(n.specializations),
        features=tuple(n.features),
        labels=dict(n.labels),
        model_load_gbps=n.model_load_gbps,
    )


def _tls(t: models.AgentTls | None, source: str) -> TlsSettings | None:
    if t is None:
        return None
    ca_key = t.ca_key if isinstance(t, models.CoordinatorTls) else None
    return TlsSettings(
        ca=_resolve(source, t.ca),
        cert=_resolve(source, t.cert),
        key=_resolve(source, t.key),
        ca_key=_resolve_opt(source, ca_key),
        coordinator_name=t.coordinator_name,
    )


def _store(value: str | None, source: str) -> str:
    if value is None or value.startswith(POSTGRES_SCHEMES):
        return value or ""
    if value.startswith("sqlite://"):
        return "sqlite:///" + _resolve(source, value.removeprefix("sqlite:///"))
    return _resolve(source, value)


def _coordinator(c: models.Coordinator, source: str) -> CoordinatorSettings:
    return CoordinatorSettings(
        listen=c.listen,
        name=c.name or "",
        heartbeat_interval_seconds=c.heartbeat_interval_seconds,
        suspect_after_seconds=c.suspect_after_seconds,
        lost_after_seconds=c.lost_after_seconds,
        max_message_bytes=c.max_message_bytes,
        state_path=_resolve(source, c.state_path),
        store=_store(c.store, source),
        lease_seconds=c.lease_seconds,
        renew_seconds=c.renew_seconds,
        advertise=c.advertise,
        metrics_listen=c.metrics_listen,
        tls=_tls(c.tls, source),
        insecure=c.insecure,
        enroll_listen=c.enroll_listen,
        auth=AuthSettings(
            api_tokens=c.auth.api_tokens,
            submit_rate_per_second=c.auth.submit_rate_per_second,
            submit_burst=c.auth.submit_burst,
            admin_token_file=_resolve_opt(source, c.auth.admin_token_file),
        ),
    )


def parse_cluster_config(data: Any, source: str) -> ClusterConfig:
    """A cluster file's contents (``data``, as YAML loads it) read from ``source``."""
    f = _validate(models.ClusterFile, data, source)
    return ClusterConfig(
        source,
        _coordinator(f.coordinator, source),
        tuple(_node(n, source) for n in f.nodes or ()),
        f.routing,
        f.optimizer or {},
    )


def parse_agent_config(data: Any, source: str) -> AgentConfig:
    """A node file's contents (``data``, as YAML loads it) read from ``source``."""
    f = _validate(models.NodeFile, data, source)
    return AgentConfig(
        source=source,
        coordinator=f.coordinator,
        node=_node(f.node, source),
        listen=f.listen,
        advertise=f.advertise,
        telemetry=f.telemetry,
        heartbeat_interval_seconds=f.heartbeat_interval_seconds,
        reconnect_initial_seconds=f.reconnect_initial_seconds,
        reconnect_max_seconds=f.reconnect_max_seconds,
        orphan_seconds=f.orphan_seconds,
        chunk_max_chars=f.chunk_max_chars,
        chunk_max_seconds=f.chunk_max_seconds,
        metrics_listen=f.metrics_listen,
        tls=_tls(f.tls, source),
        insecure=f.insecure,
    )


def _load_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(str(path), "<file>", exc.strerror or str(exc)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<yaml>", str(exc).replace("\n", " ")) from None


def load_cluster_config(path: str | Path) -> ClusterConfig:
    return parse_cluster_config(_load_yaml(path), str(path))


def load_agent_config(path: str | Path) -> AgentConfig:
    return parse_agent_config(_load_yaml(path), str(path))


SEED_CLUSTER = Path(__file__).with_name("seed_cluster.yaml")


def seed_cluster() -> ClusterConfig:
    """The seed's five-node cluster that `hive dev` and `hive sim` use by default."""
    return load_cluster_config(SEED_CLUSTER)


SCHEMAS: dict[str, type[BaseModel]] = {"cluster": models.ClusterFile, "node": models.NodeFile}


def config_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a ``cluster`` or ``node`` file, from its models: what
    deploy/config/{kind}.schema.json holds and editors complete and check against."""
    schema = SCHEMAS[kind].model_json_schema()

    def untitled(node: Any) -> Any:
        # pydantic titles every key after its name ("Memory Gb"); editors show the key.
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for value in props.values():
                    value.pop("title", None)
            for value in node.values():
                untitled(value)
        elif isinstance(node, list):
            for value in node:
                untitled(value)
        return node

    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **untitled(schema)}


def schema_text(kind: str) -> str:
    """``config_schema(kind)`` as the committed file writes it."""
    return json.dumps(config_schema(kind), indent=2) + "\n"


def print_schema(kind: str) -> int:
    """`hive config schema cluster|node`: the schema on standard output."""
    print(schema_text(kind), end="")
    return 0
