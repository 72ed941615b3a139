"""The messages module: reading a backup tool's output pipe in chunks."""

from __future__ import annotations

import fcntl
import subprocess
import sys

from guestagent.engines.messages import CHUNK_BYTES, pipe_chunks

WRITER = "import sys; [sys.stdout.buffer.write(bytes([i]) * 300_001) for i in range(12)]"


def test_pipe_chunks_gives_the_whole_output_in_chunks_of_at_most_one_chunk() -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE)
    assert child.stdout is not None
    try:
        chunks = list(pipe_chunks(child.stdout))
        width = fcntl.fcntl(child.stdout.fileno(), fcntl.F_GETPIPE_SZ)
    finally:
        child.stdout.close()
        child.wait()
    assert b"".join(chunks) == b"".join(bytes([i]) * 300_001 for i in range(12))
    assert max(map(len, chunks)) == CHUNK_BYTES
    with open("/proc/sys/fs/pipe-max-size") as limit:
        assert width == min(CHUNK_BYTES, int(limit.read()))
