"""The agent's own Redis connection: Redis's protocol (RESP2) over the unix socket.

Use :class:`RedisConnection` for the agent's few administrative commands. It is a small
client on purpose: the agent starts on every instance's provisioning path, and a full
client library costs more to import than redis-server takes to start. Transport
problems raise ``OSError`` (``ConnectionError``, ``TimeoutError``); an error reply from
the server raises :class:`ReplyError`.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import BinaryIO

Reply = None | int | bytes | list["Reply"]


class ReplyError(Exception):
    """The server answered a command with an error (``-ERR ...``, ``-WRONGPASS ...``)."""


def encode(args: tuple[str | bytes | int, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(stream: BinaryIO) -> Reply:
    """One reply from ``stream``; ReplyError for an error reply."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise ReplyError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("redis closed the connection")
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected reply from redis: {line[:20]!r}")


class RedisConnection:
    """One authenticated connection, opened on first use and again after a failure.

    Thread-safe: commands are serialised, which suits a handful of admin commands.
    """

    def __init__(
        self,
        path: Path | tuple[str, int],
        username: str,
        password: str,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.path = path  # a unix socket, or a (host, port) over TCP
        self.tls = tls  # for TCP: speak TLS, checking the server's certificate and name
        self.username = username
        self._password = password
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stream: BinaryIO | None = None

    def command(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply; after any error the connection is
        dropped (the next command opens a new one)."""
        with self._lock:
            try:
                stream = self._connected()
                assert self._sock is not None
                self._sock.sendall(encode(args))
                return read_reply(stream)
            except Exception:
                self._close()
                raise

    def _connected(self) -> BinaryIO:
        if self._stream is not None:
            return self._stream
        if isinstance(self.path, tuple):
            sock = socket.create_connection(self.path, timeout=self.timeout)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_hostname=self.path[0])
                except OSError:
                    sock.close()
                    raise
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                raise
        self._sock, self._stream = sock, sock.makefile("rb")
        sock.sendall(encode(("AUTH", self.username, self._password)))
        read_reply(self._stream)
        return self._stream

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._stream = None
