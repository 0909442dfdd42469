"""Tiny phantom datasets in the exact layout `cxrtool build-dataset` writes:
DATASET/{train,val,test}/{class}/*.png plus DATASET/manifest.csv (cxrtool.manifest.COLUMNS)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from PIL import Image

from cxrtool import CLASSES
from cxrtool.manifest import COLUMNS, MANIFEST_NAME
from cxrtool.synthetic import make_phantom


def make_dataset(
    root: str | Path,
    per_class: dict[str, int] | None = None,
    *,
    size: int = 40,
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
) -> Path:
    """Write a phantom dataset; ``per_class`` maps split -> images per class (default 4/2/2)."""
    root = Path(root)
    per_class = per_class or {"train": 4, "val": 2, "test": 2}
    rows = []
    k = seed * 100_000
    for split, n in per_class.items():
        for label in classes:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                k += 1
                img = make_phantom(label, k, size)
                rel = f"{split}/{label}/{label}-{k:05d}.png"
                Image.fromarray(img, mode="L").save(root / rel)
                data = (root / rel).read_bytes()
                row = {c: "" for c in COLUMNS}
                row.update(
                    file=rel, label=label, split=split, source="phantom", source_file=rel,
                    group=f"g{k}", patient=f"p{k}", sha256=hashlib.sha256(data).hexdigest(), phash="0" * 16,
                    width=size, height=size, mean=f"{img.mean():.2f}", dark_frac=0, bright_frac=0,
                    contrast=f"{img.std():.2f}", entropy=0,
                )
                rows.append(row)
    write_manifest(root, rows)
    return root


def write_manifest(root: str | Path, rows: list[dict]) -> None:
    with (Path(root) / MANIFEST_NAME).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def read_rows(root: str | Path) -> list[dict]:
    with (Path(root) / MANIFEST_NAME).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
