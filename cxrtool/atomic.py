"""Atomic writes: a result file is either the old one, the whole new one, or absent.

Every file cxrtool writes (models, datasets, metrics, figures, caches, logs) goes through
here, so an interrupted run or a full disk never leaves a half-written file under the final
name. The temporary file sits in the target's folder (same file system, so ``os.replace`` is
atomic) and is hidden (leading dot) so a folder listing never shows it as a result.

A write that fails for a reason the user has to fix (no space left, a read-only file system,
no permission) becomes one :class:`~cxrtool.errors.WriteError` that names the final
destination and the cause: never the temporary name, never the source file a copy was
reading from (``shutil.copyfile`` puts the *source* in ``OSError.filename``).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import WriteError

#: errno values that always mean "the destination cannot take this write", whichever file the
#: error names: no space, quota exceeded, read-only file system, file too large.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
#: errno values that are a write failure only when the failing path is a destination
#: (permission denied on a *source* is a read problem, reported elsewhere).
NO_ACCESS = frozenset({errno.EACCES, errno.EPERM})
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}

__all__ = ["NO_ACCESS", "NO_ROOM", "atomic_dir", "atomic_path", "oserrors", "write_bytes", "write_cause", "write_text", "writing"]


def oserrors(exc: BaseException | None) -> Iterator[OSError]:
    """EXC and the exceptions it was raised from (writers such as Keras may wrap the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            yield exc
        exc = exc.__cause__ or exc.__context__


def _inside(name, folder: Path | None) -> bool:
    if folder is None or not name:
        return False
    try:
        return Path(os.path.abspath(os.fsdecode(name))).is_relative_to(os.path.abspath(folder))
    except (TypeError, ValueError):
        return False


def write_cause(exc: BaseException, under: Sequence[str | Path] | None = None) -> str | None:
    """The cause in words when EXC is a failed write, else None.

    No space / quota / read-only / too large always count; permission denied counts when the
    path it names lies under one of UNDER (the files or folders being written), or when UNDER
    is None (every path the failing step touches is a destination).
    """
    for err in oserrors(exc):
        if err.errno in NO_ROOM:
            return _CAUSES[err.errno]
        if err.errno in NO_ACCESS:
            names = [n for n in (err.filename, err.filename2) if n]
            if under is None or not names or any(_inside(n, Path(u)) for n in names for u in under):
                return _CAUSES[err.errno]
    return None


@contextmanager
def writing(destination: str | Path, *, under: Sequence[str | Path] | None = None, detail: str = "") -> Iterator[None]:
    """Turn a failed write inside the block into a :class:`WriteError` naming DESTINATION.

    UNDER: where a permission error counts as a write error (see :func:`write_cause`; default:
    anywhere, for blocks that only write). Any other exception passes through unchanged.
    """
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        cause = write_cause(exc, under)
        if cause is None:
            raise
        raise WriteError(destination, cause, detail) from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to PATH; on success rename it onto PATH, else delete it.

    For writers that want a file name (``model.save``, ``fig.savefig``, ``np.savez``): keep the
    real extension in SUFFIX when the writer picks a format by it (``.keras``, ``.png``, ``.npz``).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with writing(path, under=(tmp, path)):  # the writer may read other files: only these count
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write DATA to PATH atomically; returns PATH."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8", newline: str | None = None) -> Path:
    """Write TEXT to PATH atomically; returns PATH."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline=newline) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of PATH; on success it becomes PATH (PATH must not exist).

    On any exception the partial folder is removed, so a failed build leaves nothing behind.
    Failed writes inside the block (into TMP, or an atomic file written there) become one
    :class:`WriteError` naming PATH and the file inside it that failed.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())
            os.rename(tmp, path)
        except WriteError as exc:  # an atomic file inside TMP: name it inside PATH instead
            inner = _relative(exc.destination, tmp)
            if inner is None:
                raise
            raise WriteError(path, exc.cause, inner or exc.detail) from exc
        except Exception as exc:
            cause = write_cause(exc, (tmp, path))  # a source that cannot be read is not a write error
            if cause is None:
                raise
            names = [n for err in oserrors(exc) for n in (err.filename2, err.filename) if n]
            inner = next((r for r in (_relative(n, tmp) for n in names) if r), "")
            raise WriteError(path, cause, inner) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _relative(name, folder: Path) -> str | None:
    """NAME relative to FOLDER ('' for FOLDER itself), or None when it lies elsewhere."""
    if not _inside(name, folder):
        return None
    rel = os.path.relpath(os.path.abspath(os.fsdecode(name)), os.path.abspath(folder))
    return "" if rel == "." else rel


@contextmanager
def staged_files(folder: str | Path, *, last: str) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of FOLDER; on success its files move into FOLDER.

    For result folders that may already hold files (``evaluate --out``): while the files are
    written nothing in FOLDER changes, so an interrupted run leaves the previous results
    whole. Publishing removes FOLDER/LAST first and moves it in last: FOLDER without LAST is
    unfinished, with LAST it is complete. Plain files only (no sub-folders).
    """
    folder = Path(folder)
    with writing(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staged-", dir=folder.parent))
    try:
        try:
            yield tmp
        except WriteError as exc:  # name the file the user asked for, not the staging copy
            if not _inside(exc.destination, tmp):
                raise
            raise WriteError(folder / exc.destination.relative_to(tmp), exc.cause, exc.detail) from exc
        with writing(folder):
            folder.mkdir(exist_ok=True)
            (folder / last).unlink(missing_ok=True)
            names = sorted(p.name for p in tmp.iterdir() if p.name != last)
            for name in [*names, last] if (tmp / last).exists() else names:
                os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
