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

import numpy as np
from PIL import Image

from ..atomic import atomic_dir
from ..imageio import load_image
from ..manifest import COLUMNS, FILE_SHA256, MANIFEST_NAME
from ..progress import ProgressFn, report
from .figures import dataset_figures
from .quality import METRICS
from .report import markdown
from .sources import Scan
from .sources.base import NO_LABEL
from .table import Candidate, CandidateTable
from .types import EXCLUDED_COLUMNS, BuildOptions, BuildResult


def manifest_rows(table: CandidateTable, file_sha256: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """One manifest row per kept image, sorted by its file in OUT, generated one at a time (a
    million rows as dicts took gigabytes). ``file_sha256``: the SHA-256 of each written file (by
    its ``file``) when it differs from the source's (``--copy-mode png``)."""
    file_sha256 = file_sha256 or {}
    kept = table.kept_rows().tolist()
    files = [table.file(r) for r in kept]
    order = sorted(range(len(kept)), key=files.__getitem__)
    del files
    for k in order:
        r = kept[k]
        file, sha = table.file(r), table.sha256(r)
        q = table.quality[r]
        yield (
            {
                "file": file,
                "label": table.label_name(r),
                "split": table.split_name(r),
                "source": table.source_name(r),
                "source_file": table.rel(r),
                "group": table.group_name(r),
                "patient": table.patient(r),
                "sha256": sha,
                FILE_SHA256: file_sha256.get(file, sha),
                "phash": table.hash_hex(r),
                "width": str(int(table.width[r])),
                "height": str(int(table.height[r])),
                **{m: f"{float(q[i]):.5f}" for i, m in enumerate(METRICS)},
            }
        )


def excluded_rows(scans: list[Scan], table: CandidateTable) -> Iterator[dict[str, str]]:
    """One row per file left out (unlabelled or excluded by a step), sorted by source and path,
    generated one at a time."""
    entries: list[tuple[int, int]] = []  # (scan, its file) unlabelled, or (-1, table row) excluded
    for k, scan in enumerate(scans):
        codes = np.frombuffer(bytes(scan.labels), np.uint8)
        entries += [(k, int(i)) for i in np.flatnonzero(codes == NO_LABEL)]
    entries += [(-1, int(r)) for r in np.flatnonzero(table.reason != 0)]

    def where(entry: tuple[int, int]) -> tuple[str, str]:
        k, i = entry
        return (scans[k].name, scans[k].rels[i]) if k >= 0 else (table.source_name(i), table.rel(i))

    entries.sort(key=where)
    for k, i in entries:
        if k >= 0:
            scan = scans[k]
            yield {"source": scan.name, "source_file": scan.rels[i], "label": "", "reason": "no label",
                   "detail": scan.reasons.get(i, "")}
            continue
        c = Candidate(table, i)
        yield {
            "source": table.source_name(i),
            "source_file": table.rel(i),
            "label": table.label_name(i),
            "reason": c.reason,
            "detail": c.detail,
            "duplicate_of": c.duplicate_of,
            "distance": c.distance,
            "sha256": table.sha256(i),
        }


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


def place_image(src: Path, dest: Path, options: BuildOptions) -> str | None:
    """Put one kept image (the file SRC) at DEST as the options say: the source's bytes, a hard
    link, or a PNG. Returns the SHA-256 of the PNG it encoded (None: DEST has the analysed
    source bytes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if options.mode == "hardlink":
        try:
            os.link(src, dest)
            return
        except OSError:
            pass  # another file system: fall back to a copy
    if options.mode == "png":
        im = Image.fromarray(load_image(src), mode="L")
        if options.png_size:
            im.thumbnail((options.png_size, options.png_size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        dest.write_bytes(buf.getvalue())
        return hashlib.sha256(buf.getvalue()).hexdigest()
    shutil.copyfile(src, dest)
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
    table = result.table
    kept = table.kept_rows().tolist()
    old = None
    try:
        with atomic_dir(out) as tmp:
            encoded = {}
            for done, row in enumerate(kept, start=1):
                file = table.file(row)
                digest = place_image(table.path(row), tmp / file, result.options)
                if digest is not None:
                    encoded[file] = digest
                report(progress, "write", done, len(kept))
            with open(tmp / "excluded.csv", "w", encoding="utf-8") as fh:  # newline translation as write_text had
                write_csv(fh, EXCLUDED_COLUMNS, excluded_rows(result.scans, table))
            write_reports(tmp, result)
            # manifest last: its presence marks a complete dataset
            with open(tmp / MANIFEST_NAME, "w", encoding="utf-8", newline="") as fh:
                write_csv(fh, COLUMNS, manifest_rows(table, encoded))
            if out.exists():  # --overwrite: move the old dataset aside; deleted once the new one is in place
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
    except BaseException:
        if old is not None and not out.exists():
            old.rename(out)  # the new dataset did not land: put the old one back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
