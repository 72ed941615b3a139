"""The embedded broker: kombu's file-system transport, made safe for several processes.

kombu's own transport creates a file (a message, or an exchange's bindings) and
then writes it, so another process reading in between gets an empty file and
its worker stops consuming. Here every file is written under a temporary name
and renamed into place, and a consumer claims a message by renaming it within
the broker's folder, so each step is atomic and each message reaches exactly
one consumer.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

ALIAS = "cellarfs"


class Channel(filesystem.Channel):
    def get_table(self, exchange: str) -> list[Any]:
        try:
            data = self._exchange_file(exchange).read_bytes()
        except FileNotFoundError:
            return []
        return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(data))]

    def _update_table(self, exchange: str, change: Callable[[list[Any]], list[Any]]) -> None:
        """Rewrite an exchange's binding table under a lock, replacing the file at once."""
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        with open(f"{file}.lock", "ab") as guard:
            filesystem.lock(guard, filesystem.LOCK_EX)
            try:
                table = change(self.get_table(exchange))
                partial = file.with_name(f"partial-{uuid.uuid4()}")
                partial.write_bytes(str_to_bytes(dumps(table)))
                os.replace(partial, file)
            finally:
                filesystem.unlock(guard)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        wanted = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda t: t if wanted in t else [wanted, *t])

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any,
                **kwargs: Any) -> None:  # fmt: skip
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        gone = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda t: [q for q in t if q != gone])

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = Path(self.data_folder_out)
        stamp = time.time_ns() // 1000
        final = folder / f"{stamp:015d}_{uuid.uuid4()}.{queue}.msg"
        partial = folder / f"partial-{uuid.uuid4()}"
        partial.write_bytes(str_to_bytes(dumps(payload)))
        os.replace(partial, final)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        folder = Path(self.data_folder_in)
        claimed_dir = Path(self.processed_folder)
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = claimed_dir / name
            try:
                os.replace(folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            payload = claimed.read_bytes()
            claimed.unlink()
            return loads(bytes_to_str(payload))
        raise virtual.Empty()

    @cached_property
    def processed_folder(self) -> str:
        return str(self.transport_options.get("processed_folder", self.data_folder_in))


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
