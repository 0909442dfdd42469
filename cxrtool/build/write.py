"""Writing a built dataset: kept images placed under ``split/label/``, ``excluded.csv``, the
report (``report.json``, ``report.md``, figures) and ``manifest.csv`` last.

Everything goes into a hidden sibling folder that is renamed onto OUT only when complete
(:func:`cxrtool.atomic.atomic_dir`), so an interrupted run leaves either the old dataset or
the new one, never a folder that looks finished but is not.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from PIL import Image

from ..atomic import atomic_dir
from ..imageio import load_image
from ..manifest import COLUMNS, FILE_SHA256, MANIFEST_NAME
from ..progress import ProgressFn, report
from .figures import dataset_figures
from .quality import METRICS
from .report import markdown
from .sources import Scan
from .types import EXCLUDED_COLUMNS, BuildOptions, BuildResult, Candidate


def manifest_rows(cands: list[Candidate], file_sha256: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """One manifest row per kept image, sorted by its file in OUT, generated one at a time (a
    million rows as dicts took gigabytes). ``file_sha256``: the SHA-256 of each written file (by
    its ``file``) when it differs from the source's (``--copy-mode png``)."""
    file_sha256 = file_sha256 or {}
    for c in sorted((c for c in cands if not c.reason), key=lambda c: c.file):
        a = c.analysis
        q = a.quality.as_dict()
        yield (
            {
                "file": c.file,
                "label": c.item.label,
                "split": c.split,
                "source": c.item.source,
                "source_file": c.item.rel,
                "group": c.group,
                "patient": c.item.patient,
                "sha256": a.sha256,
                FILE_SHA256: file_sha256.get(c.file, a.sha256),
                "phash": a.hash,
                "width": str(a.width),
                "height": str(a.height),
                **{m: f"{q[m]:.5f}" for m in METRICS},
            }
        )


def excluded_rows(scans: list[Scan], cands: list[Candidate]) -> list[dict[str, str]]:
    """One row per file left out (unlabelled or excluded by a step), sorted by source and path."""
    rows = []
    for scan in scans:
        for item in scan.items:
            if item.label is None:
                rows.append({"source": item.source, "source_file": item.rel, "label": "", "reason": "no label", "detail": item.reason})
    for c in cands:
        if c.reason:
            rows.append(
                {
                    "source": c.item.source,
                    "source_file": c.item.rel,
                    "label": c.item.label or "",
                    "reason": c.reason,
                    "detail": c.detail,
                    "duplicate_of": c.duplicate_of,
                    "distance": c.distance,
                    "sha256": c.analysis.sha256,
                }
            )
    rows.sort(key=lambda r: (r["source"], r["source_file"]))
    return rows


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, str]]) -> str:
    """CSV with a header and ``\\n`` line ends (byte-identical on every platform)."""
    buf = io.StringIO()
    write_csv(buf, columns, rows)
    return buf.getvalue()


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    """The rows of :func:`csv_text` written to OUT as they come (no whole-file string)."""
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def place_image(c: Candidate, dest: Path, options: BuildOptions) -> str | None:
    """Put one kept image at DEST as the options say: the source's bytes, a hard link, or a PNG.
    Returns the SHA-256 of the PNG it encoded (None: DEST has the analysed source bytes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if options.mode == "hardlink":
        try:
            os.link(c.item.path, dest)
            return
        except OSError:
            pass  # another file system: fall back to a copy
    if options.mode == "png":
        im = Image.fromarray(load_image(c.item.path), mode="L")
        if options.png_size:
            im.thumbnail((options.png_size, options.png_size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        dest.write_bytes(buf.getvalue())
        return hashlib.sha256(buf.getvalue()).hexdigest()
    shutil.copyfile(c.item.path, dest)
    return None


def write_reports(folder: Path, result: BuildResult) -> None:
    """report.json, report.md and (unless turned off) the figures."""
    (folder / "report.json").write_text(json.dumps(result.report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(markdown(result.report), encoding="utf-8")
    if result.options.figures:
        dataset_figures(folder, result)


def write_dataset(out: Path, result: BuildResult, progress: ProgressFn | None = None) -> None:
    """Write the dataset folder OUT (replacing an old one only once the new one is complete);
    one ``write`` progress event per image."""
    out = Path(out).resolve()
    kept = result.kept
    old = None
    try:
        with atomic_dir(out) as tmp:
            encoded = {}
            for done, c in enumerate(kept, start=1):
                digest = place_image(c, tmp / c.file, result.options)
                if digest is not None:
                    encoded[c.file] = digest
                report(progress, "write", done, len(kept))
            (tmp / "excluded.csv").write_text(csv_text(EXCLUDED_COLUMNS, excluded_rows(result.scans, result.candidates)), encoding="utf-8")
            write_reports(tmp, result)
            # manifest last: its presence marks a complete dataset
            with open(tmp / MANIFEST_NAME, "w", encoding="utf-8", newline="") as fh:
                write_csv(fh, COLUMNS, manifest_rows(result.candidates, encoded))
            if out.exists():  # --overwrite: move the old dataset aside; deleted once the new one is in place
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
    except BaseException:
        if old is not None and not out.exists():
            old.rename(out)  # the new dataset did not land: put the old one back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
