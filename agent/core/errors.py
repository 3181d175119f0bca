"""The one exception type for mistakes a user can fix, and the guard entry points run under."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class SealError(Exception):
    """A user-facing error: the message names the input and says what to do."""


class DocumentError(SealError):
    """A document, file or URL that cannot be read; the message names it and says what to do."""


class StateLocked(SealError):
    """Another process holds the state folder's writer lock (readers may go on)."""


class StateNotWritable(SealError):
    """The state folder cannot be written (a read-only mount, no permission, a full disk);
    readers may go on."""


def run_cli(main: Callable[[], int | None]) -> int:
    """Run an entry point: user errors print one line (no traceback) and exit with status 2."""
    try:
        return main() or 0
    except SealError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved and a rerun resumes it", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `seal history | head`: the reader left; nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 141
