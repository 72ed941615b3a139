"""The connection strings an instance page offers to copy, one set per engine."""

from __future__ import annotations

from typing import Any

CA = "ca.pem"  # written by `cellar instance ca <id> > ca.pem`


def strings(view: dict[str, Any], user: str, database: str) -> list[tuple[str, str]]:
    """(label, text) pairs for ``view``'s engine; empty until the instance has an address."""
    connection = view.get("connection") or {}
    host, port = connection.get("host"), connection.get("port")
    if not host or not port:
        return []
    datastore = view["datastore"]["type"]
    if datastore == "postgresql":
        db = database or "postgres"
        return [
            ("URI", f"postgresql://{user}@{host}:{port}/{db}?sslmode=verify-full&sslrootcert={CA}"),
            ("psql", f'psql "host={host} port={port} user={user} dbname={db} '
                     f'sslmode=verify-full sslrootcert={CA}"'),
        ]  # fmt: skip
    if datastore == "mariadb":
        db = f" {database}" if database else ""
        return [
            ("URI", f"mysql://{user}@{host}:{port}/{database}?ssl-mode=VERIFY_IDENTITY"),
            ("mysql", f"mysql -h {host} -P {port} -u {user} -p --ssl-ca={CA} "
                      f"--ssl-verify-server-cert{db}"),
        ]  # fmt: skip
    return [
        ("URI", f"rediss://{user}@{host}:{port}"),
        ("redis-cli", f"redis-cli -h {host} -p {port} --tls --cacert {CA} --user {user} --askpass"),
    ]
