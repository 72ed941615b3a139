"""Cellar's own certificate authority, and the certificates it issues.

The authority's key and certificate are made on first start in ``CELLAR_HOME``
(``ca.key`` mode 0600, ``ca.crt``), or given by the operator as the files named by
``CELLAR_CA_CERT`` and ``CELLAR_CA_KEY``. It issues short-lived certificates:

- an agent's names its instance (``<instance id>.agent.cellar``) and serves TLS; it may
  also call an agent, but an agent answers such a caller's health checks alone;
- the control plane's (the worker's and the API's, made in memory when they start and
  again before they expire) is the only caller an agent lets do anything else.

:meth:`Issued.due` says when a certificate should be renewed: once a third of its life
is left.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cellar.agent_tls import AGENT, CA, CERT, CONTROL_PLANE, KEY, agent_name

AUTHORITY_LIFE = dt.timedelta(days=3650)
LEAF_LIFE = dt.timedelta(hours=24)
API_LIFE = dt.timedelta(days=90)  # the API reads its certificate when it starts
SKEW = dt.timedelta(minutes=5)  # a certificate is valid from a little before it is made


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Issued:
    """A certificate and its key, both PEM."""

    certificate: bytes
    key: bytes = dataclasses.field(repr=False)
    not_before: dt.datetime
    not_after: dt.datetime

    def due(self, now: dt.datetime | None = None) -> bool:
        """True once a third of its life is left (or it has expired)."""
        left = self.not_after - (now or _now())
        return left <= (self.not_after - self.not_before) / 3

    @classmethod
    def read(cls, certificate: bytes, key: bytes) -> Issued:
        parsed = x509.load_pem_x509_certificate(certificate)
        return cls(certificate, key, parsed.not_valid_before_utc, parsed.not_valid_after_utc)


def ca_path(home: Path) -> Path:
    """The CA certificate's file: the operator's, or ``home``'s own."""
    given = os.environ.get("CELLAR_CA_CERT", "").strip()
    return Path(given) if given else home / "ca.crt"


class Authority:
    """Issues certificates under Cellar's CA certificate."""

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self._key = key
        self.pem = certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_home(cls, home: Path) -> Authority:
        """The operator's CA (``CELLAR_CA_CERT``, ``CELLAR_CA_KEY``), or ``home``'s own,
        made on first use."""
        given_cert = os.environ.get("CELLAR_CA_CERT", "").strip()
        given_key = os.environ.get("CELLAR_CA_KEY", "").strip()
        if bool(given_cert) != bool(given_key):
            raise ValueError("CELLAR_CA_CERT and CELLAR_CA_KEY are set together or not at all")
        if given_cert:
            return cls._load(Path(given_cert), Path(given_key))
        cert_path, key_path = home / "ca.crt", home / "ca.key"
        if not cert_path.exists():  # written last: with it, the key is whole
            _make(home, cert_path, key_path)
        return cls._load(cert_path, key_path)

    @classmethod
    def _load(cls, cert_path: Path, key_path: Path) -> Authority:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} must hold an elliptic-curve private key")
        return cls(certificate, key)

    def issue(
        self,
        common_name: str,
        dns_names: Sequence[str] = (),
        addresses: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        life: dt.timedelta = LEAF_LIFE,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ] * client
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW)
            .not_valid_after(now + life)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(authority=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return Issued(
            certificate=certificate.public_bytes(serialization.Encoding.PEM),
            key=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
        )

    def agent(self, instance_id: str) -> Issued:
        return self.issue(AGENT + instance_id, [agent_name(instance_id)], server=True, client=True)

    def control_plane(self) -> Issued:
        return self.issue(CONTROL_PLANE, client=True)


class ControlPlane:
    """This process's control-plane certificate, issued again when it falls due."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self._lock = threading.Lock()
        self._issued: Issued | None = None

    def current(self) -> Issued:
        with self._lock:
            if self._issued is None or self._issued.due():
                self._issued = self.authority.control_plane()
            return self._issued


def _key_usage(authority: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not authority,
        key_cert_sign=authority,
        crl_sign=authority,
        encipher_only=False,
        decipher_only=False,
    )


def _make(home: Path, cert_path: Path, key_path: Path) -> None:
    """A new CA in ``home``, unless another process makes one first."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cellar CA")])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(now + AUTHORITY_LIFE)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(authority=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first; its certificate follows
        _wait_for(cert_path)
        return
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    partial = cert_path.with_suffix(".tmp")
    partial.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    partial.replace(cert_path)


def _wait_for(path: Path, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > end:
            raise RuntimeError(f"{path} did not appear: a half-made CA is in {path.parent}")
        time.sleep(0.05)


def write_private(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``folder`` (made 0700), each 0600 and replaced whole."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, content in files.items():
        partial = folder / f".{name}.tmp"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        partial.replace(folder / name)


def ensure_api_files(authority: Authority, cert: Path, key: Path, names: Sequence[str]) -> bool:
    """Give the API a certificate from the CA for ``names`` (host names and addresses)
    unless it has one that is not due; True if it wrote one."""
    try:
        held = Issued.read(cert.read_bytes(), key.read_bytes())
    except (FileNotFoundError, ValueError):
        held = None
    if held is not None and not held.due() and all(_names(held, n) for n in names):
        return False
    addresses = [n for n in names if _is_address(n)]
    dns = [n for n in names if not _is_address(n)]
    issued = authority.issue("cellar api", dns, addresses, server=True, life=API_LIFE)
    write_private(cert.parent, {key.name: issued.key, cert.name: issued.certificate})
    return True


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def agent_folder(home: Path, instance_id: str) -> Path:
    """Where the worker keeps an agent's certificate on the host (mounted read-only)."""
    return home / "tls" / "agents" / instance_id


def ensure_agent_files(authority: Authority, folder: Path, instance_id: str) -> bool:
    """Give ``folder`` a certificate for ``instance_id``'s agent if it has none, one for
    another instance, or one that is due; True if it wrote one."""
    held = read_agent_files(folder)
    if held is not None and not held.due() and _names(held, agent_name(instance_id)):
        if (folder / CA).exists() and (folder / CA).read_bytes() == authority.pem:
            return False
    write_agent_files(folder, authority.agent(instance_id), authority.pem)
    return True


ENGINE_CERT, ENGINE_KEY, ENGINE_POLICY = "engine.crt", "engine.key", "engine.json"


def ensure_engine_files(
    authority: Authority, folder: Path, names: Sequence[str], required: bool = False
) -> bool:
    """Give ``folder`` the engine's server certificate for ``names`` (host names and
    addresses clients use) unless it has one that is not due, and the instance's TLS
    policy (``required``: plaintext refused); True if it wrote anything."""
    policy = json.dumps({"required": bool(required)}).encode() + b"\n"
    changed = False
    try:
        if (folder / ENGINE_POLICY).read_bytes() != policy:
            raise FileNotFoundError
    except FileNotFoundError:
        write_private(folder, {ENGINE_POLICY: policy})
        changed = True
    try:
        held = Issued.read((folder / ENGINE_CERT).read_bytes(), (folder / ENGINE_KEY).read_bytes())
    except (FileNotFoundError, ValueError):
        held = None
    if held is not None and not held.due() and all(_names(held, n) for n in names):
        return changed
    addresses = [n for n in names if _is_address(n)]
    dns = [n for n in names if not _is_address(n)]
    issued = authority.issue(names[0], dns, addresses, server=True)
    write_private(folder, {ENGINE_KEY: issued.key, ENGINE_CERT: issued.certificate})
    return True


def _names(issued: Issued, name: str) -> bool:
    """Whether the certificate holds ``name`` (a DNS name, or an address)."""
    certificate = x509.load_pem_x509_certificate(issued.certificate)
    try:
        found = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    if _is_address(name):
        return ipaddress.ip_address(name) in found.value.get_values_for_type(x509.IPAddress)
    return name in found.value.get_values_for_type(x509.DNSName)


def write_agent_files(folder: Path, issued: Issued, ca_pem: bytes) -> None:
    """Put an agent's certificate, key and the CA in ``folder`` (0700; files 0600)."""
    write_private(folder, {CA: ca_pem, KEY: issued.key, CERT: issued.certificate})


def read_agent_files(folder: Path) -> Issued | None:
    try:
        return Issued.read((folder / CERT).read_bytes(), (folder / KEY).read_bytes())
    except (FileNotFoundError, ValueError):
        return None


class ClientTls:
    """The control plane's side: its certificate (renewed when due) and the CA."""

    def __init__(self, authority: Authority) -> None:
        self.ca = authority.pem
        self._identity = ControlPlane(authority)

    @classmethod
    def from_home(cls, home: Path) -> ClientTls:
        return cls(Authority.from_home(home))

    def current(self) -> tuple[Issued, grpc.ChannelCredentials]:
        issued = self._identity.current()
        return issued, grpc.ssl_channel_credentials(self.ca, issued.key, issued.certificate)
