"""Human output: everything here goes to stderr, so stdout stays clean for results."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: The human channel. ``out`` (plain print to stdout) is for results only.
err = Console(stderr=True, highlight=False)

# 0 = quiet (errors only), 1 = normal, 2 = verbose, 3 = debug (tracebacks)
_level = 1


def set_verbosity(level: int) -> None:
    global _level
    _level = level
    err.quiet = level <= 0


def verbosity() -> int:
    return _level


def info(message: str) -> None:
    """A normal progress/status line (hidden by ``-q``)."""
    if _level >= 1:
        err.print(message)


def detail(message: str) -> None:
    """Extra detail (shown with ``-v``)."""
    if _level >= 2:
        err.print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    """A warning; shown unless ``-q``."""
    if _level >= 1:
        err.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def error(message: str) -> None:
    """One error line; always shown, never wrapped (scripts grep it)."""
    stream = sys.stderr
    stream.write(f"error: {message}\n")
    stream.flush()


@contextmanager
def progress(transient: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr, silent with ``-q`` or when stderr is not a terminal-ish console."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=transient,
        disable=_level <= 0,
    )
    with bar:
        yield bar
