"""The cluster's own certificate authority: create it, issue and sign node certificates.

One private CA per cluster. Every process holds a certificate whose identity (the
subject's common name, repeated as a DNS subject alternative name) is its name: a node's
name for an agent, ``coordinator`` for the coordinator, ``gateway``/``admin`` for
clients. The coordinator trusts a peer's *name* because the CA signed it, so the CA key
is the cluster's root secret: keep it on the coordinator's host (it signs enrolment
requests there) or offline.

Files in a certificate directory: ``ca.pem`` (public, copied to every host),
``ca-key.pem`` (secret), ``NAME.pem`` and ``NAME-key.pem`` per identity. Keys are
ECDSA P-256: small, fast to make and verify, accepted by gRPC's TLS stack.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Identities follow node names (hive.config.NODE_NAME), which DNS SANs can carry.
IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CA_DAYS = 3650
CERT_DAYS = 365
# Certificates are valid from a little before they are made: clocks across hosts differ.
CLOCK_SKEW = datetime.timedelta(minutes=5)


class PkiError(ValueError):
    """A certificate operation that cannot be done, with the reason a person can act on."""


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where one identity's certificate, key and the cluster CA live."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: str | Path, name: str) -> CertPaths:
        d = Path(directory)
        return cls(d / "ca.pem", d / f"{name}.pem", d / f"{name}-key.pem")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_secret(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (created so, never chmod'ed after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def check_identity(name: str) -> None:
    if not IDENTITY.match(name):
        raise PkiError(f"{name!r} is not a valid name: use 1-63 letters, digits, '.', '_' or '-'")


def create_ca(name: str = "Hive mesh cluster CA") -> tuple[bytes, bytes]:
    """A new self-signed CA; returns (certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(
    ca_pem: bytes, ca_key_pem: bytes
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca = x509.load_pem_x509_certificate(ca_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("the CA key is not an ECDSA key made by `hive certs init`")
    return ca, key


def sign(
    ca_pem: bytes,
    ca_key_pem: bytes,
    name: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    days: int = CERT_DAYS,
) -> bytes:
    """A certificate for ``name`` (CN and first DNS SAN) usable as TLS server and client."""
    check_identity(name)
    ca, ca_key = _load_ca(ca_pem, ca_key_pem)
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    sans += [x509.DNSName(d) for d in dns if d != name]
    try:
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    except ValueError as exc:
        raise PkiError(str(exc)) from None
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(
    ca_pem: bytes,
    ca_key_pem: bytes,
    name: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    days: int = CERT_DAYS,
) -> tuple[bytes, bytes]:
    """A fresh key and a certificate for ``name``; returns (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = sign(ca_pem, ca_key_pem, name, key.public_key(), dns=dns, ips=ips, days=days)
    return cert, _key_pem(key)


def make_csr(name: str) -> tuple[bytes, bytes]:
    """A key and a certificate signing request for ``name``: (CSR PEM, key PEM)."""
    check_identity(name)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def sign_csr(
    ca_pem: bytes, ca_key_pem: bytes, csr_pem: bytes, name: str, *, days: int = CERT_DAYS
) -> bytes:
    """Sign an enrolment request for ``name``; the CSR must ask for that name and be
    signed by its own key (proof that the requester holds it)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise PkiError("csr is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise PkiError("the csr's signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != name:
        raise PkiError(f"the csr asks for {names[0].value if names else 'no name'!r}, not {name!r}")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError("the csr's key must be ECDSA (make it with `hive certs enroll`)")
    return sign(ca_pem, ca_key_pem, name, public_key, days=days)


def certificate_name(cert_pem: bytes) -> str:
    """The identity (common name) a certificate carries."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def describe(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    alt = ", ".join(str(getattr(n, "value", n)) for n in sans)
    return (
        f"{certificate_name(cert_pem)} (serial {cert.serial_number:x}, "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d}, names: {alt})"
    )


# --- the certificate directory -----------------------------------------------------


def init_dir(directory: str | Path, *, force: bool = False) -> CertPaths:
    """Create ``ca.pem`` and ``ca-key.pem`` in ``directory``; refuse to overwrite a CA."""
    d = Path(directory)
    ca, key = d / "ca.pem", d / "ca-key.pem"
    if (ca.exists() or key.exists()) and not force:
        raise PkiError(f"{d} already holds a CA; replacing it would orphan every certificate")
    cert_pem, key_pem = create_ca()
    d.mkdir(parents=True, exist_ok=True)
    ca.write_bytes(cert_pem)
    _write_secret(key, key_pem)
    return CertPaths(ca, ca, key)


def issue_in_dir(
    directory: str | Path,
    name: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    days: int = CERT_DAYS,
) -> CertPaths:
    """Issue ``NAME.pem``/``NAME-key.pem`` in ``directory`` with its CA."""
    d = Path(directory)
    try:
        ca_pem, ca_key_pem = (d / "ca.pem").read_bytes(), (d / "ca-key.pem").read_bytes()
    except OSError as exc:
        raise PkiError(f"no CA in {d} ({exc.strerror}); run `hive certs init --dir {d}`") from None
    cert, key = issue(ca_pem, ca_key_pem, name, dns=dns, ips=ips, days=days)
    paths = CertPaths.in_dir(d, name)
    paths.cert.write_bytes(cert)
    _write_secret(paths.key, key)
    return paths


def write_identity(
    directory: str | Path, name: str, ca: bytes, cert: bytes, key: bytes
) -> CertPaths:
    """Store an enrolled identity (the CA, its certificate and key) in ``directory``."""
    paths = CertPaths.in_dir(directory, name)
    paths.ca.parent.mkdir(parents=True, exist_ok=True)
    paths.ca.write_bytes(ca)
    paths.cert.write_bytes(cert)
    _write_secret(paths.key, key)
    return paths
