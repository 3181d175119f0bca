"""Every input is read with a limit, and only from a regular file (issue 17, item 5): the size a
file reports is not trusted (/dev/zero reports 0 bytes and never ends), and a named pipe would
block its reader forever."""

import os
import threading

import pytest

from agent.core.errors import DocumentError, SealError
from agent.core.io import read_limited


def test_a_regular_file_is_read_up_to_the_limit(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"x" * 100)
    assert read_limited(path, 100) == b"x" * 100
    with pytest.raises(SealError, match="over the limit of 99 bytes"):
        read_limited(path, 99)


def test_devices_pipes_and_folders_are_refused_without_reading(tmp_path):
    with pytest.raises(DocumentError, match="not a regular file"):
        read_limited("/dev/zero", 1000, "file", DocumentError)  # endless, reports 0 bytes
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    done = threading.Event()

    def read_pipe():
        with pytest.raises(SealError, match="not a regular file"):
            read_limited(fifo, 1000)
        done.set()

    threading.Thread(target=read_pipe, daemon=True).start()
    assert done.wait(5), "reading a named pipe blocked"
    with pytest.raises(SealError, match="is a folder, not a file"):
        read_limited(tmp_path, 1000, "config file")
    with pytest.raises(SealError, match="cannot read file .*missing"):
        read_limited(tmp_path / "missing", 1000)


def test_a_regular_file_over_the_limit_is_refused_by_its_size_before_reading(tmp_path):
    """A 2 GB .json (sparse here) is refused from its reported size: nothing of it is read,
    where reading up to the limit would first hold 100 MB in memory."""
    import tracemalloc

    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.truncate(2 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError, match="2,147,483,648 bytes, over the limit"):
            read_limited(path, 100_000_000, "file", DocumentError)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
