"""Typed configuration for every Hive process, loaded from YAML.

A cluster file (``cluster.yaml``) describes the coordinator's settings, the
router's weights and chains, and the nodes; a node file (``node.yaml``) tells one
agent where the coordinator is and what its host has. Defaults live in these
dataclasses and nowhere else. Every error names the file, the key and why.

Every path a file names (and the default state_path) is relative to that file's
directory, never to the working directory: a process started from anywhere finds the
same state, tokens and certificates. Loaded paths are absolute.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hive import hardware
from hive.pki import CertPaths
from hive.tls import COORDINATOR_NAME, HOW_TO_SECURE, InsecureRefused, Security

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENDPOINT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A cluster's name, as federated clusters know it and as it travels in X-Hive-Via.
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
TELEMETRY_PROVIDERS = ("auto", "nvml", "amdsmi", "simulated", "none")


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
    num_parallel: int = 4
    max_queue: int = 512
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
    model_load_gbps: float = 1.5


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
    coordinator_name: str = COORDINATOR_NAME

    def paths(self) -> CertPaths:
        return CertPaths(Path(self.ca), Path(self.cert), Path(self.key))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # Bearer tokens on the client API; None: required exactly when TLS is on.
    api_tokens: bool | None = None
    # Per-token submissions (workflows, generate, chat): sustained rate and burst.
    submit_rate_per_second: float = 10.0
    submit_burst: int = 50
    # Where the coordinator writes the first admin token when it has none (relative to the
    # config file's directory); None: next to the state file, as "admin.token" (mode 0600).
    admin_token_file: str | None = None


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    listen: str = "127.0.0.1:50051"
    # This cluster's name for federation (another Hive cluster that uses this one's gateway
    # as a node's Ollama); "" = this host's name and the coordinator's port.
    name: str = ""
    heartbeat_interval_seconds: float = 1.0
    suspect_after_seconds: float = 3.0
    lost_after_seconds: float = 6.0
    # Largest gRPC message accepted, in bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    # SQLite database (WAL) holding workflows and tasks. Loaded from a file, a relative
    # path (this default too) is relative to the file's directory; set in code, to the
    # working directory.
    state_path: str = "hive-state.sqlite"
    # Where the state lives: "" = the SQLite file state_path; ``sqlite:///path`` (as
    # SQLAlchemy writes it: ``sqlite:////abs/path`` is absolute) or a plain path = that
    # SQLite file; ``postgresql://user:password@host/db`` (or ``postgres://``)
    # = PostgreSQL, shared by several coordinators. `hive coordinator --store` and
    # HIVE_STORE override it.
    store: str = ""
    # Several coordinators on one PostgreSQL store: the leader's lease lasts this long
    # unless renewed every renew_seconds; a standby takes over within about the lease
    # after the leader dies (docs/operations.md, High availability).
    lease_seconds: float = 2.5
    renew_seconds: float = 0.5
    # The address clients and agents should use for this coordinator (a standby names the
    # leader's to them); "" = this host's name and the bound port.
    advertise: str = ""
    # Prometheus /metrics (host:port, ":9101" = every interface; "off" disables).
    metrics_listen: str = "127.0.0.1:9101"
    # Mutual TLS on every connection; without it the coordinator refuses to start unless
    # insecure is true (or --insecure): plaintext, no authentication at all.
    tls: TlsSettings | None = None
    insecure: bool = False
    # Enrolment (join tokens → certificates): TLS without client certificates, since a
    # new node has none yet. Needs tls.ca_key. "off" disables.
    enroll_listen: str = "off"
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
    listen: str = "127.0.0.1:50061"
    # host:port the coordinator dials back; defaults to the bound listen address.
    advertise: str | None = None
    telemetry: str = "auto"
    heartbeat_interval_seconds: float = 1.0
    reconnect_initial_seconds: float = 0.2
    reconnect_max_seconds: float = 10.0
    # Prometheus /metrics (host:port, ":9102" = every interface; "off" disables).
    metrics_listen: str = "127.0.0.1:9102"
    # Output chunks are sent when this many characters gathered or this long passed (the
    # first at once): every chunk is a message through agent, coordinator and gateway, and
    # a message costs each ~0.1-0.2 ms of CPU, while a reader sees text 10 times a second
    # (benchmarks/bench_scale.py: central CPU per token 442 us at 0.02 s, 155 us at 0.1 s).
    chunk_max_chars: int = 256
    chunk_max_seconds: float = 0.1
    # A task whose coordinator went away keeps running this long for the next leader to
    # adopt (RunTaskRequest.adopt), then it is stopped.
    orphan_seconds: float = 30.0
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


class _Reader:
    """Reads typed values out of a YAML mapping, raising ConfigError with the key path."""

    def __init__(self, source: str, data: Any, path: str = "") -> None:
        self.source = source
        self.path = path
        if not isinstance(data, Mapping):
            raise ConfigError(source, path or "<top>", f"expected a mapping, got {_kind(data)}")
        self.data: Mapping[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), reason)

    def reject_unknown(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                raise self.error(
                    str(name), f"unknown key; expected one of {', '.join(sorted(allowed))}"
                )

    def sub(self, name: str, default: Any = None) -> _Reader:
        value = self.data.get(name, default if default is not None else {})
        return _Reader(self.source, value, self.key(name))

    def str_(
        self, name: str, default: str | None = None, pattern: re.Pattern[str] | None = None
    ) -> str:
        value = self.data.get(name, default)
        if value is None:
            raise self.error(name, "required")
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.error(name, f"{value!r} does not match {pattern.pattern}")
        return value

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, integer: bool = False
    ) -> Any:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        if integer and not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if value < minimum or (minimum == 0.0 and not integer and value <= 0):
            raise self.error(name, f"must be {'>=' if integer else '>'} {minimum}, got {value!r}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "expected a list of strings")
        return tuple(value)

    def list_(self, name: str, required: bool = False) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error(name, "required")
            return []
        if not isinstance(value, list):
            raise self.error(name, f"expected a list, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _resolve(source: str, value: str) -> str:
    """A path named in the config file ``source``: relative paths are relative to that
    file's directory (made absolute, so the working directory never matters); absolute
    ones are kept. A source that is not a file ("<...>") keeps the path as written."""
    if Path(value).is_absolute() or not source or source.startswith("<"):
        return value
    return str(Path(source).parent.absolute() / value)


def _parse_gpu(source: str, key: str, raw: Any) -> GpuSpec:
    """A GPU is a catalog name, or a mapping with name, vendor and memory_gb for others."""
    if isinstance(raw, str):
        try:
            kind = hardware.gpu_kind(raw)
        except KeyError as exc:
            raise ConfigError(source, key, str(exc.args[0])) from None
        return GpuSpec(kind.name, kind.vendor, kind.memory_bytes)
    r = _Reader(source, raw, key)
    r.reject_unknown({"name", "vendor", "memory_gb"})
    vendor = r.str_("vendor", "nvidia")
    if vendor not in ("nvidia", "amd", "other"):
        raise r.error("vendor", f"{vendor!r} is not one of nvidia, amd, other")
    return GpuSpec(r.str_("name"), vendor, int(r.number("memory_gb", 8) * hardware.GIB))


def _parse_endpoint(r: _Reader, gpu_count: int, need_url: bool) -> EndpointSpec:
    r.reject_unknown(
        {"id", "url", "gpus", "num_parallel", "max_queue", "models", "token_file", "ca_file"}
    )
    gpus = r.list_("gpus")
    for i, g in enumerate(gpus):
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < gpu_count:
            raise r.error(
                f"gpus[{i}]", f"{g!r} is not a GPU index of this node (0..{gpu_count - 1})"
            )
    if len(set(gpus)) != len(gpus):
        raise r.error("gpus", "a GPU is listed twice")
    url = r.data.get("url")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise r.error("url", f"expected an http(s) URL, got {url!r}")
    if need_url and url is None:
        raise r.error("url", "required: where this Ollama instance listens")
    token_file, ca_file = r.data.get("token_file"), r.data.get("ca_file")
    for key, path in (("token_file", token_file), ("ca_file", ca_file)):
        if path is not None and (not isinstance(path, str) or not path):
            raise r.error(key, f"expected a path, got {_kind(path)}")
    token_file = _resolve(r.source, token_file) if token_file is not None else None
    ca_file = _resolve(r.source, ca_file) if ca_file is not None else None
    return EndpointSpec(
        id=r.str_("id", pattern=ENDPOINT_ID),
        gpus=tuple(gpus),
        num_parallel=r.number("num_parallel", 4, minimum=1, integer=True),
        max_queue=r.number("max_queue", 512, minimum=0, integer=True),
        models=r.str_list("models"),
        url=url,
        token_file=token_file,
        ca_file=ca_file,
    )


def parse_node(r: _Reader, need_url: bool = False) -> NodeSpec:
    r.reject_unknown(
        {"name", "specializations", "features", "labels", "gpus", "endpoints", "model_load_gbps"}
    )
    gpus = tuple(
        _parse_gpu(r.source, r.key(f"gpus[{i}]"), g) for i, g in enumerate(r.list_("gpus"))
    )
    raw_endpoints = r.list_("endpoints")
    if not raw_endpoints and need_url:
        raw_endpoints = [
            {"id": "default", "url": "http://127.0.0.1:11434", "gpus": list(range(len(gpus)))}
        ]
    endpoints = tuple(
        _parse_endpoint(_Reader(r.source, e, r.key(f"endpoints[{i}]")), len(gpus), need_url)
        for i, e in enumerate(raw_endpoints)
    )
    ids = [e.id for e in endpoints]
    if len(set(ids)) != len(ids):
        raise r.error("endpoints", f"endpoint ids must be unique, got {ids}")
    labels = r.data.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise r.error("labels", "expected a mapping of strings to strings")
    return NodeSpec(
        name=r.str_("name", pattern=NODE_NAME),
        gpus=gpus,
        endpoints=endpoints,
        specializations=r.str_list("specializations"),
        features=r.str_list("features"),
        labels=dict(labels),
        model_load_gbps=float(r.number("model_load_gbps", 1.5)),
    )


LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):([0-9]{1,5})$")


def _metrics_listen(r: _Reader, default: str) -> str:
    """``host:port`` for /metrics, or "off"."""
    return _listen(r, "metrics_listen", default)


def _listen(r: _Reader, name: str, default: str) -> str:
    """``host:port``, ``:port`` or "off"."""
    value = r.str_(name, default)
    if value == "off":
        return value
    match = LISTEN.match(value)
    if match is None or int(match.group(2)) > 65535:
        raise r.error(name, f"expected host:port, :port or off, got {value!r}")
    return value


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def redact_url(url: str) -> str:
    """``url`` without its password (in the authority or a ``password=`` parameter), for
    logs and errors."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


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


def check_store(value: str) -> str:
    """``value`` if it names a state store (``sqlite:///path``, a plain path, or a
    ``postgresql://``/``postgres://`` URL), else ValueError saying why."""
    if value.startswith(POSTGRES_SCHEMES):
        return value
    if value.startswith("sqlite://"):
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError(
                "a SQLite store is written sqlite:///path (three slashes, then a path)"
            )
        return value
    if "://" in value:
        raise ValueError(
            f"{redact_url(value)!r} is not a state store: use sqlite:///path, a path, or a "
            "postgresql:// URL"
        )
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _store(r: _Reader) -> str:
    if r.data.get("store") is None:
        return CoordinatorSettings().store
    value = r.str_("store", "")
    try:
        check_store(value)
    except ValueError as exc:
        raise r.error("store", str(exc)) from None
    if value.startswith(POSTGRES_SCHEMES):
        return value
    if value.startswith("sqlite://"):
        return "sqlite:///" + _resolve(r.source, value.removeprefix("sqlite:///"))
    return _resolve(r.source, value)


def _nonempty(r: _Reader, name: str, default: str) -> str:
    value = r.str_(name, default)
    if not value:
        raise r.error(name, "must not be empty")
    return value


def _parse_bool(r: _Reader, name: str, default: bool) -> bool:
    value = r.data.get(name, default)
    if not isinstance(value, bool):
        raise r.error(name, f"expected true or false, got {_kind(value)}")
    return value


def _parse_tls(r: _Reader, name: str, *, coordinator: bool) -> TlsSettings | None:
    if r.data.get(name) is None:
        return None
    t = r.sub(name)
    allowed = {"ca", "cert", "key", "coordinator_name"}
    t.reject_unknown(allowed | {"ca_key"} if coordinator else allowed)

    def path(key: str, required: bool = True) -> str | None:
        if not required and t.data.get(key) is None:
            return None
        value = t.str_(key)
        if not value:
            raise t.error(key, "must not be empty")
        return _resolve(r.source, value)

    ca, cert, key = path("ca"), path("cert"), path("key")
    assert ca is not None and cert is not None and key is not None
    return TlsSettings(
        ca=ca,
        cert=cert,
        key=key,
        ca_key=path("ca_key", required=False) if coordinator else None,
        coordinator_name=t.str_("coordinator_name", COORDINATOR_NAME, pattern=NODE_NAME),
    )


def _parse_auth(r: _Reader) -> AuthSettings:
    r.reject_unknown({"api_tokens", "submit_rate_per_second", "submit_burst", "admin_token_file"})
    d = AuthSettings()
    api_tokens = r.data.get("api_tokens")
    if api_tokens is not None and not isinstance(api_tokens, bool):
        raise r.error("api_tokens", f"expected true or false, got {_kind(api_tokens)}")
    admin_file = r.data.get("admin_token_file")
    if admin_file is not None and not isinstance(admin_file, str):
        raise r.error("admin_token_file", f"expected a path, got {_kind(admin_file)}")
    if admin_file == "":
        raise r.error("admin_token_file", "must not be empty")
    return AuthSettings(
        api_tokens=api_tokens,
        submit_rate_per_second=r.number("submit_rate_per_second", d.submit_rate_per_second),
        submit_burst=r.number("submit_burst", d.submit_burst, minimum=1, integer=True),
        admin_token_file=_resolve(r.source, admin_file) if admin_file is not None else None,
    )


def _parse_coordinator(r: _Reader) -> CoordinatorSettings:
    r.reject_unknown(
        {
            "tls",
            "insecure",
            "enroll_listen",
            "auth",
            "name",
            "listen",
            "heartbeat_interval_seconds",
            "suspect_after_seconds",
            "lost_after_seconds",
            "max_message_bytes",
            "state_path",
            "store",
            "lease_seconds",
            "renew_seconds",
            "advertise",
            "metrics_listen",
        }
    )
    d = CoordinatorSettings()
    settings = CoordinatorSettings(
        listen=r.str_("listen", d.listen),
        name=r.str_("name", d.name, CLUSTER_NAME) if r.data.get("name") is not None else d.name,
        heartbeat_interval_seconds=r.number(
            "heartbeat_interval_seconds", d.heartbeat_interval_seconds
        ),
        suspect_after_seconds=r.number("suspect_after_seconds", d.suspect_after_seconds),
        lost_after_seconds=r.number("lost_after_seconds", d.lost_after_seconds),
        max_message_bytes=r.number(
            "max_message_bytes", d.max_message_bytes, minimum=1024, integer=True
        ),
        state_path=_resolve(r.source, _nonempty(r, "state_path", d.state_path)),
        store=_store(r),
        lease_seconds=r.number("lease_seconds", d.lease_seconds, minimum=0.5),
        renew_seconds=r.number("renew_seconds", d.renew_seconds, minimum=0.05),
        advertise=r.str_("advertise", d.advertise),
        metrics_listen=_metrics_listen(r, d.metrics_listen),
        tls=_parse_tls(r, "tls", coordinator=True),
        insecure=_parse_bool(r, "insecure", d.insecure),
        enroll_listen=_listen(r, "enroll_listen", d.enroll_listen),
        auth=_parse_auth(r.sub("auth")),
    )
    if settings.enroll_listen != "off" and (settings.tls is None or settings.tls.ca_key is None):
        raise r.error("enroll_listen", "enrolment signs certificates: set tls.ca_key too")
    if settings.lost_after_seconds < settings.suspect_after_seconds:
        raise r.error("lost_after_seconds", "must not be shorter than suspect_after_seconds")
    if settings.renew_seconds * 2 > settings.lease_seconds:
        raise r.error(
            "renew_seconds",
            f"must be at most half of lease_seconds ({settings.lease_seconds}), so that one "
            "late renewal does not lose the lease",
        )
    return settings


def parse_cluster_config(data: Any, source: str) -> ClusterConfig:
    r = _Reader(source, data)
    r.reject_unknown({"coordinator", "routing", "optimizer", "nodes"})
    nodes = tuple(
        parse_node(_Reader(source, n, f"nodes[{i}]")) for i, n in enumerate(r.list_("nodes"))
    )
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise r.error("nodes", f"node names must be unique, got {names}")
    routing = r.data.get("routing", {})
    if not isinstance(routing, Mapping):
        raise r.error("routing", f"expected a mapping, got {_kind(routing)}")
    optimizer = r.data.get("optimizer", {}) or {}
    if not isinstance(optimizer, Mapping):
        raise r.error("optimizer", f"expected a mapping, got {_kind(optimizer)}")
    return ClusterConfig(
        source, _parse_coordinator(r.sub("coordinator")), nodes, routing, optimizer
    )


def parse_agent_config(data: Any, source: str) -> AgentConfig:
    r = _Reader(source, data)
    r.reject_unknown(
        {
            "coordinator",
            "listen",
            "advertise",
            "telemetry",
            "heartbeat_interval_seconds",
            "node",
            "reconnect_initial_seconds",
            "reconnect_max_seconds",
            "orphan_seconds",
            "chunk_max_chars",
            "chunk_max_seconds",
            "metrics_listen",
            "tls",
            "insecure",
        }
    )
    telemetry = r.str_("telemetry", "auto")
    if telemetry not in TELEMETRY_PROVIDERS:
        raise r.error("telemetry", f"{telemetry!r} is not one of {', '.join(TELEMETRY_PROVIDERS)}")
    d = AgentConfig(source, "", NodeSpec("x", (), ()))
    return AgentConfig(
        source=source,
        coordinator=r.str_("coordinator", "127.0.0.1:50051"),
        node=parse_node(r.sub("node"), need_url=True),
        listen=r.str_("listen", d.listen),
        advertise=r.data.get("advertise"),
        telemetry=telemetry,
        heartbeat_interval_seconds=r.number(
            "heartbeat_interval_seconds", d.heartbeat_interval_seconds
        ),
        reconnect_initial_seconds=r.number(
            "reconnect_initial_seconds", d.reconnect_initial_seconds
        ),
        reconnect_max_seconds=r.number("reconnect_max_seconds", d.reconnect_max_seconds),
        orphan_seconds=r.number("orphan_seconds", d.orphan_seconds),
        chunk_max_chars=r.number("chunk_max_chars", d.chunk_max_chars, minimum=1, integer=True),
        chunk_max_seconds=r.number("chunk_max_seconds", d.chunk_max_seconds),
        metrics_listen=_metrics_listen(r, d.metrics_listen),
        tls=_parse_tls(r, "tls", coordinator=False),
        insecure=_parse_bool(r, "insecure", d.insecure),
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
