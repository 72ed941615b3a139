"""Errors an engine raises on purpose; the server turns each into a gRPC status.

    CellarError (cellar.errors)
    ├── InvalidInput        a bad name or password            -> INVALID_ARGUMENT
    └── EngineError         the engine failed                 -> INTERNAL
        ├── NotPrepared     the call needs a prepared engine  -> FAILED_PRECONDITION
        ├── EngineDown      the engine is not running         -> UNAVAILABLE
        ├── Unsupported     the engine has no such thing      -> UNIMPLEMENTED
        └── UnsafePath      a link where the agent writes     -> INTERNAL

Engines translate their driver's exceptions into these with ``raise ... from exc``.
Messages are short, name no password and may be shown to the caller.
"""

from __future__ import annotations

from cellar.errors import CellarError


class EngineError(CellarError):
    """The engine could not do what was asked."""


class NotPrepared(EngineError):
    """The call needs an engine that Prepare has set up."""


class EngineDown(EngineError):
    """The engine is prepared but not accepting connections."""


class Unsupported(EngineError):
    """The engine has no such concept (for example named databases in Redis)."""


class UnsafePath(EngineError):
    """A symlink, FIFO or shared file where the agent was to write or chown (see
    ``guestagent.safe_files``): refused, never followed."""
