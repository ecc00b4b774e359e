"""The cluster and node files as pydantic models: their keys, types, limits and defaults.

This is the schema of ``cluster.yaml`` and ``node.yaml`` and the one place their defaults
live; `hive config schema cluster|node` prints it as JSON Schema (committed in
deploy/config/ for editors). hive.config validates a file with these models, turns
pydantic's errors into ConfigError (file, key, reason) and builds the frozen dataclasses
the processes run with; paths stay as written here and are resolved there, against the
file's directory.

Values are strict, as YAML gives them: a number where a number is asked (an integer
where an integer is), true/false for a flag, a string for a string. An error carries its
reason as pydantic's message, and a rule checked on a whole mapping names the key it is
about in the error's context (``at``), so that hive.config can point at it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hive import hardware
from hive.tls import COORDINATOR_NAME

NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENDPOINT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A cluster's name, as federated clusters know it and as it travels in X-Hive-Via.
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
Telemetry = Literal["auto", "nvml", "amdsmi", "simulated", "none"]
TELEMETRY_PROVIDERS: tuple[str, ...] = get_args(Telemetry)
LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):([0-9]{1,5})$")
HTTP_URL = re.compile(r"^https?://")
# The tags of the GPU entry's two forms: pydantic puts them in an error's location, where
# hive.config leaves them out (a key is never named so).
GPU_TAGS = ("catalog name", "gpu mapping")


def fail(reason: str, *at: str | int) -> PydanticCustomError:
    """An error whose message is ``reason``, about the key ``at`` below the value being
    validated (none: the value itself)."""
    return PydanticCustomError("hive", "{reason}", {"reason": reason, "at": at})


class _File(BaseModel):
    """A mapping in a config file: only its declared keys, values strictly typed."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # extra="forbid" says the same to the schema; this names the keys to choose from.
        if isinstance(data, dict):
            allowed = sorted(cls.model_fields)
            for name in data:
                if name not in allowed:
                    raise fail(f"unknown key; expected one of {', '.join(allowed)}", str(name))
        return data


def _listen(value: str) -> str:
    match = LISTEN.match(value)
    if value != "off" and (match is None or int(match.group(2)) > 65535):
        raise fail(f"expected host:port, :port or off, got {value!r}")
    return value


Listen = Annotated[
    str,
    AfterValidator(_listen),
    Field(json_schema_extra={"pattern": f"^off$|{LISTEN.pattern}"}),
]


def _http_url(value: str) -> str:
    if not HTTP_URL.match(value):
        raise fail(f"expected an http(s) URL, got {value!r}")
    return value


HttpUrl = Annotated[
    str, AfterValidator(_http_url), Field(json_schema_extra={"pattern": HTTP_URL.pattern})
]
# A file's path: relative to the directory of the config file that names it.
FilePath = Annotated[str, Field(min_length=1)]


def _catalog_gpu(value: str) -> str:
    try:
        hardware.gpu_kind(value)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    return value


CatalogGpu = Annotated[
    str,
    AfterValidator(_catalog_gpu),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(hardware.GPU_CATALOG),
            "description": "A GPU of hive's catalog (hive/hardware.py), by its name.",
        }
    ),
]


class CustomGpu(_File):
    """A GPU the catalog lacks: its name, vendor and memory."""

    name: str
    vendor: Literal["nvidia", "amd", "other"] = "nvidia"
    memory_gb: float = Field(default=8, gt=0)
    """Its memory in GiB."""


def _gpu_form(value: Any) -> str | None:
    return (
        GPU_TAGS[0] if isinstance(value, str) else GPU_TAGS[1] if isinstance(value, dict) else None
    )


Gpu = Annotated[
    Annotated[CatalogGpu, Tag(GPU_TAGS[0])] | Annotated[CustomGpu, Tag(GPU_TAGS[1])],
    Discriminator(
        _gpu_form,
        custom_error_type="hive_gpu",
        custom_error_message="expected a catalog GPU name or a mapping of name, vendor, memory_gb",
    ),
]


class ClusterEndpoint(_File):
    """One Ollama instance of a node, on some of its GPUs."""

    id: str = Field(pattern=ENDPOINT_ID.pattern)
    url: HttpUrl | None = None
    """Where the Ollama instance listens (in a cluster file, `hive dev` fills it in)."""
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, json_schema_extra={"uniqueItems": True}
    )
    """The node's GPUs this instance uses, as indexes into the node's gpus."""
    num_parallel: int = Field(default=4, ge=1)
    """Requests it runs at once (OLLAMA_NUM_PARALLEL)."""
    max_queue: int = Field(default=512, ge=0)
    """Requests it holds waiting (OLLAMA_MAX_QUEUE)."""
    models: list[str] = []
    """Models it has (the emulator and the simulator; a real one reports its own)."""
    token_file: FilePath | None = None
    """Federation: when url is another Hive cluster's gateway with API tokens on, a file
    holding a token of that cluster (submit scope), sent as "Authorization: Bearer"."""
    ca_file: FilePath | None = None
    """CA certificate(s), PEM, that an https url's server must be signed by (a peer's
    gateway with its cluster's certificate); none: the system's trusted CAs."""

    @field_validator("gpus")
    @classmethod
    def _once_each(cls, gpus: list[int] | None) -> list[int] | None:
        if gpus is not None and len(set(gpus)) != len(gpus):
            raise fail("a GPU is listed twice")
        return gpus


class AgentEndpoint(ClusterEndpoint):
    url: HttpUrl
    """Where this Ollama instance listens."""


class ClusterNode(_File):
    """A GPU host: what it is good at, its GPUs and its Ollama instances."""

    name: str = Field(pattern=NODE_NAME.pattern)
    specializations: list[str] = []
    """Task types this node is meant for."""
    features: list[str] = []
    labels: dict[str, str] = {}
    gpus: list[Gpu] | None = None
    """Its GPUs: catalog names, or mappings for GPUs the catalog lacks."""
    endpoints: list[ClusterEndpoint] | None = None
    model_load_gbps: float = Field(default=1.5, gt=0)
    """GB/s at which this host reads a model file into VRAM (NVMe about 1.5-3, a SATA SSD
    0.5, a disk 0.15): how long a cold load takes. The emulator and the simulator use it;
    the coordinator learns the real speed from Ollama's load_duration instead."""

    @model_validator(mode="after")
    def _endpoints_fit(self) -> ClusterNode:
        gpu_count = len(self.gpus or ())
        for i, endpoint in enumerate(self.endpoints or ()):
            for j, g in enumerate(endpoint.gpus or ()):
                if g >= gpu_count:
                    raise fail(
                        f"{g!r} is not a GPU index of this node (0..{gpu_count - 1})",
                        "endpoints",
                        i,
                        "gpus",
                        j,
                    )
        ids = [e.id for e in self.endpoints or ()]
        if len(set(ids)) != len(ids):
            raise fail(f"endpoint ids must be unique, got {ids}", "endpoints")
        return self


class AgentNode(ClusterNode):
    # Narrower than the base's (an agent's endpoints need a url): pydantic validates by
    # this annotation, mypy sees a changed type.
    endpoints: list[AgentEndpoint] | None = None  # type: ignore[assignment]
    """Its Ollama instances; none: one at http://127.0.0.1:11434 on all its GPUs."""


class AgentTls(_File):
    """Certificate files of one process (paths relative to its config file's directory)."""

    ca: FilePath
    cert: FilePath
    key: FilePath
    coordinator_name: str = Field(default=COORDINATOR_NAME, pattern=NODE_NAME.pattern)
    """The name in the coordinator's certificate, which agents and clients expect."""


class CoordinatorTls(AgentTls):
    ca_key: FilePath | None = None
    """The CA's private key, to sign enrolment requests. Without it nodes get
    certificates from `hive certs issue` on the host that holds the CA."""


class Auth(_File):
    """Who may use the client API, and how fast."""

    api_tokens: bool | None = None
    """Bearer tokens on the client API; none: required exactly when TLS is on."""
    submit_rate_per_second: float = Field(default=10.0, gt=0)
    """Per-token submissions (workflows, generate, chat): sustained rate."""
    submit_burst: int = Field(default=50, ge=1)
    """Per-token submissions: burst."""
    admin_token_file: FilePath | None = None
    """Where the coordinator writes the first admin token when it has none; none: next to
    the state file, as "admin.token" (mode 0600)."""


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def redact_url(url: str) -> str:
    """``url`` without its password (in the authority or a ``password=`` parameter), for
    logs and errors."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


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


def _store(value: str) -> str:
    try:
        return check_store(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


class Coordinator(_File):
    """The coordinator's settings."""

    listen: str = "127.0.0.1:50051"
    name: Annotated[str, Field(pattern=CLUSTER_NAME.pattern)] | None = None
    """This cluster's name for federation (another Hive cluster that uses this one's
    gateway as a node's Ollama); none: this host's name and the coordinator's port."""
    heartbeat_interval_seconds: float = Field(default=1.0, gt=0)
    suspect_after_seconds: float = Field(default=3.0, gt=0)
    lost_after_seconds: float = Field(default=6.0, gt=0)
    """At least suspect_after_seconds."""
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted, in bytes."""
    state_path: FilePath = "hive-state.sqlite"
    """SQLite database (WAL) holding workflows and tasks."""
    store: Annotated[str, AfterValidator(_store)] | None = None
    """Where the state lives: none = the SQLite file state_path; sqlite:///path or a
    plain path = that SQLite file; postgresql://user:password@host/db (or postgres://) =
    PostgreSQL, shared by several coordinators. `hive coordinator --store` and HIVE_STORE
    override it."""
    lease_seconds: float = Field(default=2.5, ge=0.5)
    """Several coordinators on one PostgreSQL store: the leader's lease lasts this long
    unless renewed every renew_seconds."""
    renew_seconds: float = Field(default=0.5, ge=0.05)
    """At most half of lease_seconds."""
    advertise: str = ""
    """The address clients and agents should use for this coordinator (a standby names
    the leader's to them); "": this host's name and the bound port."""
    metrics_listen: Listen = "127.0.0.1:9101"
    """Prometheus /metrics (host:port, ":9101" = every interface; "off" disables)."""
    tls: CoordinatorTls | None = None
    """Mutual TLS on every connection; without it the coordinator refuses to start
    unless insecure is true (or --insecure)."""
    insecure: bool = False
    """Plaintext, no authentication at all."""
    enroll_listen: Listen = "off"
    """Enrolment (join tokens -> certificates): TLS without client certificates, since a
    new node has none yet. Needs tls.ca_key. "off" disables."""
    auth: Auth = Field(default_factory=Auth)

    @model_validator(mode="after")
    def _consistent(self) -> Coordinator:
        if self.enroll_listen != "off" and (self.tls is None or self.tls.ca_key is None):
            raise fail("enrolment signs certificates: set tls.ca_key too", "enroll_listen")
        if self.lost_after_seconds < self.suspect_after_seconds:
            raise fail("must not be shorter than suspect_after_seconds", "lost_after_seconds")
        if self.renew_seconds * 2 > self.lease_seconds:
            raise fail(
                f"must be at most half of lease_seconds ({self.lease_seconds}), so that one "
                "late renewal does not lose the lease",
                "renew_seconds",
            )
        return self


class ClusterFile(_File):
    """A cluster file (cluster.yaml): the coordinator's settings, the router's weights and
    chains, and the nodes. Every path in it is relative to its directory."""

    model_config = ConfigDict(title="Hive cluster file")

    coordinator: Coordinator = Field(default_factory=Coordinator)
    routing: dict[str, Any] = {}
    """The router's weights, chains and scheduler settings, and the policy that places tasks
    (`policy`: hive, or a named baseline to compare with) (coordinator/routing/config.py
    checks them)."""
    optimizer: dict[str, Any] | None = None
    """The placement optimizer's settings (coordinator/optimizer/config.py checks them)."""
    nodes: list[ClusterNode] | None = None
    """The nodes `hive dev` and `hive sim` run; for the coordinator they only name the
    routing chains' members (agents register themselves)."""

    @model_validator(mode="after")
    def _unique_names(self) -> ClusterFile:
        names = [n.name for n in self.nodes or ()]
        if len(set(names)) != len(names):
            raise fail(f"node names must be unique, got {names}", "nodes")
        return self


class NodeFile(_File):
    """A node file (node.yaml): where one agent finds the coordinator and what its host
    has. Every path in it is relative to its directory."""

    model_config = ConfigDict(title="Hive node file")

    coordinator: str = "127.0.0.1:50051"
    """The coordinator's host:port, or several, comma-separated (a standby names the
    leader)."""
    node: AgentNode
    listen: str = "127.0.0.1:50061"
    advertise: str | None = None
    """host:port the coordinator dials back; none: the bound listen address."""
    telemetry: Telemetry = "auto"
    """GPU telemetry: auto tries NVML then AMD SMI."""
    heartbeat_interval_seconds: float = Field(default=1.0, gt=0)
    reconnect_initial_seconds: float = Field(default=0.2, gt=0)
    reconnect_max_seconds: float = Field(default=10.0, gt=0)
    metrics_listen: Listen = "127.0.0.1:9102"
    """Prometheus /metrics (host:port, ":9102" = every interface; "off" disables)."""
    chunk_max_chars: int = Field(default=256, ge=1)
    """Output chunks are sent when this many characters gathered or chunk_max_seconds
    passed (the first at once)."""
    chunk_max_seconds: float = Field(default=0.1, gt=0)
    orphan_seconds: float = Field(default=30.0, gt=0)
    """A task whose coordinator went away keeps running this long for the next leader to
    adopt, then it is stopped."""
    tls: AgentTls | None = None
    """Mutual TLS with the coordinator (and for RunTask)."""
    insecure: bool = False
