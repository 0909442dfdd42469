"""The evaluation set: one split of a built dataset, or any folder of class sub-folders.

:func:`open_eval_set` only lists the images (path, label, source, group); :func:`load_set_images`
decodes each of them once, at every input size the models need, and lists the files that
cannot be read instead of failing on them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import CLASSES
from ..errors import DatasetError, ImageLoadError, UsageError
from ..progress import ProgressFn, report


@dataclass(frozen=True)
class Item:
    """One image of the set."""

    path: Path
    file: str  # relative to the set's root
    label: str
    source: str
    group: str


@dataclass
class EvalSet:
    root: Path
    kind: str  # "dataset" (manifest.csv) | "folder" (class sub-folders)
    split: str | None
    classes: tuple[str, ...]
    items: list[Item]
    fingerprint: str
    manifest: Any = None
    notes: list[str] = field(default_factory=list)


def open_eval_set(path: str | Path, split: str = "test") -> EvalSet:
    """A dataset folder (``manifest.csv``: its ``split``) or a folder of class sub-folders.

    Class folders are recognised by the same names as in ``build-dataset``
    (:func:`cxrtool.labels.class_for_name`: ``covid``, ``COVID-19``, ``Viral Pneumonia``,
    ``NORMAL``, ``No Finding``, ...); folders naming the same class are merged, other folders
    are ignored with a note. A folder is one source; every image is its own group.
    """
    from ..manifest import MANIFEST_NAME, SPLITS, read_manifest

    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected a dataset with manifest.csv or a folder of class sub-folders)")
    if (root / MANIFEST_NAME).is_file():
        if split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)} (got {split!r})")
        manifest = read_manifest(root)
        entries = manifest.split(split)
        if not entries:
            have = manifest.entries.splits.counts()
            listing = ", ".join(f"{s} {have[s]}" for s in SPLITS if have.get(s)) or "no rows at all"
            raise DatasetError(f"{root}: the {split} split is empty (the manifest has {listing})")
        # from the manifest's columns (an Entry per row would be made only to be dropped)
        items = [Item(root / file, file, label, source or "unknown", group or file)
                 for file, label, source, group in zip(entries.files, entries.labels, entries.sources, entries.groups)]
        return EvalSet(root, "dataset", split, tuple(manifest.classes), items, manifest.fingerprint, manifest)
    return _open_class_folders(root, split)


def _open_class_folders(root: Path, split: str) -> EvalSet:
    from ..imageio import find_images
    from ..labels import class_for_name
    from ..manifest import MANIFEST_NAME

    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    folders: dict[str, list[Path]] = defaultdict(list)  # class -> its folders
    ignored = []
    for d in subdirs:
        label = class_for_name(d.name)
        if label is None:
            ignored.append(d.name)
        else:
            folders[label].append(d)
    if not folders:
        raise DatasetError(
            f"{root}: neither a dataset (no {MANIFEST_NAME}) nor a folder of class sub-folders "
            f"({', '.join(CLASSES)} or names like COVID-19, Viral Pneumonia, NORMAL)"
        )
    notes = []
    merged = {c: ds for c, ds in folders.items() if len(ds) > 1}
    if merged:
        notes.append("merged sub-folders of the same class: " + "; ".join(
            f"{', '.join(d.name for d in ds)} -> {c}" for c, ds in merged.items()))
    if ignored:
        notes.append(f"ignored sub-folders that are not classes: {', '.join(ignored)}")
    if split != "test":
        notes.append(f"--split {split} ignored: {root} is a folder of class sub-folders, not a dataset")
    source = root.resolve().name or "external"
    items = []
    for d in subdirs:  # folder order, as listed (merged folders keep their own relative paths)
        label = class_for_name(d.name)
        if label is None:
            continue
        for p in find_images(d):
            rel = p.relative_to(root).as_posix()
            items.append(Item(p, rel, label, source, rel))
    if not items:
        raise DatasetError(f"{root}: the class sub-folders hold no image files")
    return EvalSet(root, "folder", None, tuple(CLASSES), items, _folder_fingerprint(items), None, notes)


def _folder_fingerprint(items: Sequence[Item]) -> str:
    """SHA-256 over (relative path, label, file SHA-256) of every image, sorted."""
    outer = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.file):
        try:
            digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
        except OSError:
            digest = "unreadable"
        outer.update(f"{item.file}\t{item.label}\t{digest}\n".encode())
    return outer.hexdigest()


def load_images(
    items: Sequence[Item], sizes: Sequence[int], *, workers: int | None = None, progress: ProgressFn | None = None
) -> tuple[dict[int, np.ndarray], np.ndarray, list[dict]]:
    """Decode every image once and resize it to each of ``sizes`` (as training does).

    Returns ``({size: (n_ok, size, size) uint8}, ok mask (n,), failures)``; a failure is
    ``{"file", "kind", "reason"}`` and the image is excluded, so one bad file never hides
    the metrics of the others.
    """
    from ..imageio import load_image
    from ..inputs import resize_image
    from ..workers import default_workers

    n = len(items)
    full = {s: np.zeros((n, s, s), np.uint8) for s in sizes}
    ok = np.zeros(n, bool)
    failures: dict[int, dict] = {}

    def one(i: int) -> None:
        try:
            pixels = load_image(items[i].path)
        except ImageLoadError as exc:
            failures[i] = {"file": items[i].file, "kind": exc.kind, "reason": exc.reason}
            return
        for s in sizes:
            full[s][i] = resize_image(pixels, s)
        ok[i] = True

    with ThreadPoolExecutor(max_workers=default_workers(cap=8, requested=workers)) as pool:
        for done, _ in enumerate(pool.map(one, range(n)), 1):
            report(progress, "load", done, n)
    return {s: a[ok] for s, a in full.items()}, ok, [failures[i] for i in sorted(failures)]


def load_set_images(
    es: EvalSet, sizes: Sequence[int], progress: ProgressFn | None = None
) -> tuple[dict[int, np.ndarray], np.ndarray, list[dict]]:
    """Like :func:`load_images`; a dataset split comes from its decoded-split cache when every
    image reads (the per-file path lists the unreadable ones otherwise)."""
    if es.manifest is not None:
        from ..inputs import load_split

        try:
            arrays = {s: load_split(es.manifest, es.split, s).x for s in sizes}
            return arrays, np.ones(len(es.items), bool), []
        except DatasetError:  # an unreadable image: fall back to per-file loading that lists them
            pass
    return load_images(es.items, sizes, progress=progress)
