"""One writer per result: a run that writes a dataset folder, an evaluation folder or a model
file holds an exclusive lock on it, and a second run aimed at the same target stops at once
with one clear line instead of interleaving its files with the first one's.

The lock is ``fcntl.flock`` on a hidden ``.NAME.lock`` file next to the target. The kernel
releases a flock when its process dies, however it dies, so a crashed or killed run never
leaves a lock that blocks the next one (the file may stay; it is then just a file). The lock
file is removed on release; a run that opened the old file just before that notices the
swap (the path no longer names the file it locked) and tries again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import CxrError


#: Lock files this process holds: removed by :func:`remove_held` when the process ends without
#: unwinding (``interrupts.hard_exit`` after a stuck XLA call), so no stale file is left.
_HELD: set[Path] = set()


def remove_held() -> None:
    """Unlink every lock file this process holds (the kernel drops the locks at exit anyway)."""
    for path in list(_HELD):
        with contextlib.suppress(OSError):
            os.unlink(path)
        _HELD.discard(path)


class LockedError(CxrError):
    """Another cxrtool run holds the target (exit 1)."""


def lock_path(target: str | Path) -> Path:
    """The lock file of TARGET: ``.NAME.lock`` in the same folder (hidden, never a result)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def _missing_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


@contextlib.contextmanager
def hold(target: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of TARGET (a file or folder, existing or not) for the block.

    Raises :class:`LockedError` naming TARGET when another process holds it. Folders created
    for the lock file are removed again on release if they are still empty, so a run that
    fails early leaves nothing behind.
    """
    target = Path(target)
    path = lock_path(target)
    created = _missing_parents(path.parent)
    fd = None
    try:
        while fd is None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise CxrError(f"{target}: cannot write there (lock file {path}: {exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                fd = None
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = _holder(path)
                raise LockedError(
                    f"{target}: another cxrtool run{holder} is writing it (lock {path}); "
                    "wait for it to finish or stop it, then run again"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file after we opened it: lock the new one
                os.close(fd)
                fd = None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people and the error above
        _HELD.add(path)
        yield path
    finally:
        if fd is not None:
            _HELD.discard(path)
            with contextlib.suppress(OSError):
                os.unlink(path)  # before unlocking, so a waiter never locks a file about to vanish
            os.close(fd)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip())
        return f" (process {pid})"
    return ""


__all__ = ["LockedError", "hold", "lock_path", "remove_held"]
