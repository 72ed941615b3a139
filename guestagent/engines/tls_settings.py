"""Each engine's TLS settings, as Cellar wants them (pure; tested on their own).

Every engine serves TLS on its port once the worker has given it a certificate:

- PostgreSQL and MariaDB negotiate TLS on the engine's one port, so a client may still
  connect in plaintext unless the instance requires TLS: then PostgreSQL's access rules
  accept only ``hostssl`` and MariaDB sets ``require_secure_transport``.
- Redis cannot offer both on one port: its port speaks TLS alone (``tls-port``, with
  ``port 0``), and clients log in as ACL users with passwords, not certificates.

Members of a replica set reach each other over TLS too and check the source's
certificate against Cellar's CA (see :func:`postgres_conninfo` and :func:`mariadb_source`).
"""

from __future__ import annotations

from guestagent.engines.tls_files import TlsFiles

PROTOCOLS = ("TLSv1.2", "TLSv1.3")


def _pg_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def postgres(files: TlsFiles | None) -> str:
    """The contents of PostgreSQL's ``cellar-tls.conf``."""
    lines = ["# Written by Cellar's guest agent; changes here are overwritten."]
    if files is None:
        lines.append("ssl = off")
    else:
        lines += [
            "ssl = on",
            f"ssl_cert_file = {_pg_quote(str(files.cert))}",
            f"ssl_key_file = {_pg_quote(str(files.key))}",
            f"ssl_min_protocol_version = {_pg_quote(PROTOCOLS[0])}",
        ]
    return "\n".join(lines) + "\n"


def postgres_host_rule(files: TlsFiles | None) -> str:
    """The connection type of PostgreSQL's TCP access rules: ``hostssl`` when TLS is
    required (a plaintext login then matches no rule and is refused), else ``host``."""
    return "hostssl" if files is not None and files.required else "host"


def postgres_conninfo(files: TlsFiles | None) -> list[tuple[str, str]]:
    """libpq settings with which a replica checks its source's certificate."""
    if files is None:
        return [("sslmode", "prefer")]
    return [("sslmode", "verify-full"), ("sslrootcert", str(files.ca))]


def mariadb(files: TlsFiles | None) -> str:
    """The contents of MariaDB's ``cellar-tls.cnf``."""
    lines = ["# Written by Cellar's guest agent; changes here are overwritten.", "[mariadbd]"]
    if files is not None:
        lines += [
            f"ssl_cert = {files.cert}",
            f"ssl_key = {files.key}",
            f"ssl_ca = {files.ca}",
            f"tls_version = {','.join(PROTOCOLS)}",
            f"require_secure_transport = {'ON' if files.required else 'OFF'}",
        ]
    return "\n".join(lines) + "\n"


def mariadb_source(files: TlsFiles | None) -> tuple[str, tuple[str, ...]]:
    """The ``CHANGE MASTER TO`` options (and their values) for a TLS link to the source."""
    if files is None:
        return "", ()
    return (
        ", MASTER_SSL = 1, MASTER_SSL_CA = %s, MASTER_SSL_VERIFY_SERVER_CERT = 1",
        (str(files.ca),),
    )


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def redis(files: TlsFiles | None, port: int) -> str:
    """The contents of Redis's ``redis-tls.conf``: the engine port speaks TLS alone."""
    lines = ["# Written by Cellar's guest agent; changes here are overwritten."]
    if files is not None:
        lines += [
            "port 0",
            f"tls-port {int(port)}",
            f"tls-cert-file {_redis_quote(str(files.cert))}",
            f"tls-key-file {_redis_quote(str(files.key))}",
            f"tls-ca-cert-file {_redis_quote(str(files.ca))}",
            "tls-auth-clients no",  # clients log in as ACL users
            "tls-replication yes",  # a replica reaches its source over TLS
            f"tls-protocols {_redis_quote(' '.join(PROTOCOLS))}",
        ]
    return "\n".join(lines) + "\n"


def redis_reload(files: TlsFiles) -> list[tuple[str, str]]:
    """``CONFIG SET`` pairs that make a running Redis read renewed files."""
    return [
        ("tls-cert-file", str(files.cert)),
        ("tls-key-file", str(files.key)),
        ("tls-ca-cert-file", str(files.ca)),
    ]
