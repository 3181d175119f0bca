"""Small file helpers: bounded reads of what a user gives, atomic writes and JSON lines."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.core.errors import SealError


def storable(text: str) -> str:
    """The text as stored: code points UTF-8 cannot encode (lone surrogates) become '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def read_limited(
    path: Path, max_bytes: int, what: str = "file", error: type[SealError] = SealError
) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, read with that limit.

    The size a file reports is not trusted: /dev/zero reports 0 bytes and never ends, and opening
    a named pipe waits for a writer. So the file is opened without blocking, must be a regular
    file by its open descriptor (no race with a swap after a check), and is read up to one byte
    past the limit. A regular file whose reported size is already over the limit is refused
    before anything is read (a 2 GB file against a 200 MB limit would hold 200 MB first).
    Raises `error` naming `what` and the path."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    mode = info.st_mode
    if stat.S_ISREG(mode) and info.st_size > max_bytes:
        os.close(fd)
        raise error(
            f"{what} {path} is {info.st_size:,} bytes, over the limit of {max_bytes:,} bytes"
        )
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise error(f"{what} {path} is a folder, not a file")
        raise error(f"{what} {path} is not a regular file (a device, pipe or socket); give a file")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise error(f"{what} {path} is over the limit of {max_bytes:,} bytes")
    return data


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record and fsync, so a killed run keeps every finished line.

    A torn last line left by a killed writer is closed off first, so it cannot swallow this one.
    """
    with open(path, "a+b") as fh:
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (a run killed mid-write) is skipped."""
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
