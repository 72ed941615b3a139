"""A short memory of the tokens this API process has validated with its own identity store.

Opening a token and resolving it (its user, project, roles and revocations: four
reads of the metadata) costs about as much as showing an instance, and a client sends
the same token with every request. :class:`CachedValidator` takes a token it validated
as valid for ``keep`` seconds (``KEEP``, 2 s), never past the token's own expiry, and
never remembers a refusal.

The bound on staleness: a change to who a token is for (a revocation; a user, project,
role or application credential disabled, deleted or taken away) moves the identity
epoch (``cellar.identity.store.bump_epoch``; ``api.identity`` does so after every
change it answers) and empties this process's memory. Every request reads the epoch
(one small read, instead of the four a validation takes), so every other API process
forgets too, at its next request. Memory is bounded by ``most`` entries.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cellar.identity.store import Identity
from cellar.models import utcnow

if TYPE_CHECKING:
    from api.auth import Validator

logger = logging.getLogger(__name__)

KEEP = 2.0  # seconds a validated token is taken as valid without asking the store again
MOST = 10_000  # tokens remembered at once


class CachedValidator:
    """Validates with ``inner``, and remembers each identity it found for ``keep`` seconds."""

    def __init__(
        self,
        inner: Validator,
        keep: float = KEEP,
        most: int = MOST,
        clock: Callable[[], float] = time.monotonic,
        epoch: Callable[[], int] | None = None,
    ) -> None:
        self.inner = inner
        self.epoch = epoch
        self._epoch: int | None = None
        self.keep = keep
        self.most = most
        self.clock = clock
        self._seen: dict[str, tuple[float, Identity]] = {}
        self._generation = 0  # counts forget(): a validation begun before one is not kept
        self._lock = threading.Lock()

    def validate(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        if self.epoch is not None:
            current = self.epoch()
            if current != self._epoch:
                self.forget()
                self._epoch = current
        with self._lock:
            found = self._seen.get(key)
            generation = self._generation
        if found is not None and found[0] > now and found[1].expires_at > utcnow():
            return found[1]
        identity = self.inner.validate(token)
        with self._lock:
            if generation == self._generation:
                if len(self._seen) >= self.most:
                    self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
                    if len(self._seen) >= self.most:
                        self._seen.clear()
                self._seen[key] = (now + self.keep, identity)
        return identity

    def forget(self) -> None:
        """Drop every remembered token: call it once a change to identities is committed."""
        with self._lock:
            self._seen.clear()
            self._generation += 1


def forget(validator: object) -> None:
    """Drop what ``validator`` remembers, if it is a :class:`CachedValidator`."""
    if isinstance(validator, CachedValidator):
        validator.forget()
