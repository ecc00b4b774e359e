"""Transport security for every gRPC hop: mutual TLS with the cluster's CA, or plaintext
only when a person asked for it (``--insecure`` / ``insecure: true``).

Every process holds a ``Security``: the CA that signs the cluster's certificates, its own
certificate and key. Servers require a client certificate from that CA; clients check
the server's certificate against it and against the *name* they expect (the coordinator's
name, or the node name of the agent being called), not the DNS name they dialled, so a
certificate identifies a Hive process whatever address it is reached at.

Bearer tokens ride in ``authorization`` metadata (``Bearer <token>``), added by
``token_interceptors`` on the client side; the coordinator checks them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from hive.pki import CertPaths, certificate_name

# The name in the coordinator's certificate, which every client expects by default.
COORDINATOR_NAME = "coordinator"
# Environment of the client commands (and the gateway) for reaching a secured coordinator.
ENV_TLS_DIR = "HIVE_TLS_DIR"
ENV_TLS_NAME = "HIVE_TLS_NAME"
ENV_TOKEN = "HIVE_TOKEN"
ENV_COORDINATOR_NAME = "HIVE_COORDINATOR_NAME"

HOW_TO_SECURE = (
    "no TLS configured. Set up certificates (`hive certs init --dir DIR`, then "
    "`hive certs issue NAME --dir DIR` for the coordinator, every node and the gateway) and "
    "point the config's `tls:` at them, or run with --insecure (or `insecure: true`) to "
    "accept plaintext, unauthenticated traffic on a network you trust. "
    "See docs/security.md."
)


class InsecureRefused(RuntimeError):
    """A daemon was asked to run without TLS and without the explicit insecure switch."""


@dataclass(frozen=True, slots=True)
class Security:
    """One process's TLS material, loaded into memory."""

    ca: bytes
    cert: bytes
    key: bytes
    # The identity in ``cert`` (its common name).
    name: str
    # The coordinator's certificate name clients expect.
    coordinator_name: str = COORDINATOR_NAME

    @classmethod
    def load(cls, paths: CertPaths, coordinator_name: str = COORDINATOR_NAME) -> Security:
        """Read the files; OSError/ValueError name the file that could not be used."""
        ca = _read(paths.ca)
        cert = _read(paths.cert)
        key = _read(paths.key)
        try:
            name = certificate_name(cert)
        except ValueError:
            raise ValueError(f"{paths.cert}: not a PEM certificate") from None
        return cls(ca, cert, key, name, coordinator_name)

    def server_credentials(self, require_client_auth: bool = True) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.ca,
            require_client_auth=require_client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror or exc}") from None


def channel(
    target: str,
    security: Security | None,
    *,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A channel to ``target``: mTLS expecting ``server_name`` (default: the coordinator's
    name) when ``security`` is given, plaintext otherwise."""
    if security is None:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)
    name = server_name or security.coordinator_name
    return grpc.aio.secure_channel(
        target,
        security.channel_credentials(),
        options=[*options, ("grpc.ssl_target_name_override", name)],
        interceptors=interceptors,
    )


def peer_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The common name of the peer's verified certificate; None on a plaintext connection."""
    auth = context.auth_context()
    names = list(auth.get("x509_common_name") or ())
    return names[0].decode(errors="replace") if names else None


def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


class _TokenDetails:
    def __init__(self, token: Callable[[], str | None]) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        token = self._token()
        if not token:
            return details
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*bearer(token))
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(_TokenDetails, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_TokenDetails, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_TokenDetails, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_TokenDetails, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def token_interceptors(token: Callable[[], str | None]) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors adding ``authorization: Bearer <token>`` to every call, one per call
    shape (a channel files each interceptor under one shape only). ``token()`` is asked per
    call: the gateway answers with the token of the HTTP request being served."""
    return [_UnaryUnary(token), _UnaryStream(token), _StreamUnary(token), _StreamStream(token)]


# --- the client commands' environment ------------------------------------------------


def security_from_env(default_name: str = "admin") -> Security | None:
    """TLS for a client from ``HIVE_TLS_DIR`` (holding ca.pem, NAME.pem, NAME-key.pem with
    NAME from ``HIVE_TLS_NAME``, default ``admin``); None when unset (plaintext)."""
    directory = os.environ.get(ENV_TLS_DIR)
    if not directory:
        return None
    name = os.environ.get(ENV_TLS_NAME) or default_name
    return Security.load(
        CertPaths.in_dir(directory, name),
        os.environ.get(ENV_COORDINATOR_NAME) or COORDINATOR_NAME,
    )


def client_channel(target: str, **kwargs: Any) -> grpc.aio.Channel:
    """The CLI's channel to the coordinator: TLS and token from the environment."""
    token = os.environ.get(ENV_TOKEN)
    interceptors = token_interceptors(lambda: token) if token else None
    return channel(target, security_from_env(), interceptors=interceptors, **kwargs)
