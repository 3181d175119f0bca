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
