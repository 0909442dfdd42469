"""Atomic writes: a result file is either the old one, the whole new one, or absent.

Every file cxrtool writes (models, datasets, metrics, figures, caches, logs) goes through
here, so an interrupted run or a full disk never leaves a half-written file under the final
name. The temporary file sits in the target's folder (same file system, so ``os.replace`` is
atomic) and is hidden (leading dot) so a folder listing never shows it as a result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def staged_files(folder: str | Path, *, last: str) -> Iterator[Path]:
    """Yield an empty hidden sibling folder of FOLDER; on success its files move into FOLDER.

    For result folders that may already hold files (``evaluate --out``): while the files are
    written nothing in FOLDER changes, so an interrupted run leaves the previous results
    whole. Publishing removes FOLDER/LAST first and moves it in last: FOLDER without LAST is
    unfinished, with LAST it is complete. Plain files only (no sub-folders).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staged-", dir=folder.parent))
    try:
        yield tmp
        folder.mkdir(exist_ok=True)
        (folder / last).unlink(missing_ok=True)
        names = sorted(p.name for p in tmp.iterdir() if p.name != last)
        for name in [*names, last] if (tmp / last).exists() else names:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
