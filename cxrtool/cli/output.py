"""Writing results to stdout, and stopping quietly when the reader goes away (``| head``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush after EPIPE stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """Run the body; if stdout's reader closed the pipe, swallow it and silence stdout.

    The caller carries on (files still get written) or returns; exit status stays 0, since a
    closed pipe (``cxrtool predict ... | head``) is the reader's choice, not a failure.
    """
    try:
        yield
    except BrokenPipeError:
        silence_stdout()
