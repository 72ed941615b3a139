"""What the CLI's parts raise; ``cellar.cli.main`` prints each as one line and exits 1.

CliError
├── ApiError      an HTTP answer of 400 or more, or none at all (status 0)
└── LoginError    no usable credentials, or the identity API refused them
"""

from __future__ import annotations


class CliError(Exception):
    """Anything the CLI reports as ``error: ...`` and exit status 1."""


class ApiError(CliError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class LoginError(CliError):
    """The credentials are incomplete, or the identity API did not accept them."""
