from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from kombu import Connection

from cellar import broker

URL = f"{broker.ALIAS}://"
SENT = 200


def options(folder: Path) -> dict[str, object]:
    for name in ("queue", "processed", "control"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": True,
        "polling_interval": 0.01,
    }


def produce(folder: Path, start: int, count: int) -> None:
    with Connection(URL, transport_options=options(folder)) as conn:
        queue = conn.SimpleQueue("cellar")
        for number in range(start, start + count):
            queue.put({"n": number})
        queue.close()


def consume(folder: Path, name: str) -> None:
    deadline = time.monotonic() + 30
    got: list[str] = []
    with Connection(URL, transport_options=options(folder)) as conn:
        queue = conn.SimpleQueue("cellar")
        while time.monotonic() < deadline and not (folder / "stop").exists():
            try:
                message = queue.get(timeout=0.05)
            except queue.Empty:
                continue
            message.ack()
            got.append(str(message.payload["n"]))
        queue.close()
    (folder / f"got-{name}").write_text("\n".join(got))


def test_every_message_reaches_exactly_one_of_several_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    half = SENT // 2
    consumers = [context.Process(target=consume, args=(tmp_path, str(i))) for i in range(3)]
    producers = [
        context.Process(target=produce, args=(tmp_path, 0, half)),
        context.Process(target=produce, args=(tmp_path, half, SENT - half)),
    ]
    for process in consumers + producers:
        process.start()
    for process in producers:
        process.join(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any((tmp_path / "queue").glob("*.msg")):
        time.sleep(0.05)
    (tmp_path / "stop").touch()
    for process in consumers:
        process.join(timeout=60)
    received = [
        int(line) for path in tmp_path.glob("got-*") for line in path.read_text().splitlines()
    ]
    assert sorted(received) == list(range(SENT))
    assert list((tmp_path / "processed").iterdir()) == []
    assert not [p for p in (tmp_path / "queue").iterdir() if p.name.startswith("partial-")]
