"""Sources labelled by a CSV instead of folders: the Figure 1 COVID-19 initiative
(``images/`` + ``metadata.csv``) and any user CSV of ``file,label[,patient]``."""

from __future__ import annotations

import csv
from pathlib import Path

from ...labels import CLASSES
from ...errors import UsageError
from .base import CLASS_ALIASES, SourceAdapter, normalise

_FINDINGS = {"covid19": "covid", "covid": "covid", "pneumonia": "pneumonia", "nofinding": "normal", "normal": "normal"}


def _read_rows(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Figure 1's metadata.csv is latin-1
    return list(csv.DictReader(text.splitlines()))


class CsvLabels(SourceAdapter):
    """Labels from a CSV with columns ``file,label[,patient]`` (file relative to the source root
    or a bare file name). Images not listed are excluded with a reason."""

    kind = "csv-labels"
    title = "labels from a CSV file"
    csv_name = "labels.csv"

    def __init__(self, label_map=None, csv_path: Path | None = None):
        super().__init__(label_map)
        self.csv_path = csv_path
        self._labels: dict[str, tuple[str | None, str, str]] | None = None

    @classmethod
    def matches(cls, root: Path) -> bool:
        return (root / cls.csv_name).is_file()

    def scan(self, root, name):
        path = self.csv_path or root / self.csv_name
        self._labels = self.read_labels(path)
        return super().scan(root, name)

    def read_labels(self, path: Path) -> dict[str, tuple[str | None, str, str]]:
        rows = _read_rows(path)
        if rows and not {"file", "label"} <= set(rows[0]):
            raise UsageError(f"{path}: a labels CSV needs the columns file,label[,patient]")
        labels = {}
        for row in rows:
            value = normalise(row.get("label") or "")
            label = CLASS_ALIASES.get(value)
            reason = "" if label else f"label {row.get('label')!r} in {path.name} is not one of {', '.join(CLASSES)}"
            entry = (label, row.get("patient") or "", reason)
            labels[row["file"].replace("\\", "/")] = entry
            labels.setdefault(Path(row["file"]).name, entry)
        return labels

    def _lookup(self, rel: Path):
        assert self._labels is not None
        return self._labels.get(rel.as_posix()) or self._labels.get(rel.name)

    def label_for(self, rel):
        found = self._lookup(rel)
        if found is None:
            return None, "not listed in the labels CSV"
        return found[0], found[2]

    def patient_for(self, rel):
        found = self._lookup(rel)
        return found[1] if found else ""


class Figure1Covid(CsvLabels):
    """Figure 1 COVID-19 chest X-ray initiative: ``images/`` plus ``metadata.csv`` whose
    ``finding`` column labels each image and ``patientid`` is the file name without suffix."""

    kind = "figure1-covid"
    title = "Figure 1 COVID-19 Chest X-ray Dataset Initiative"
    population = "adult"
    csv_name = "metadata.csv"

    @classmethod
    def matches(cls, root: Path) -> bool:
        path = root / cls.csv_name
        if not (path.is_file() and (root / "images").is_dir()):
            return False
        header = path.read_bytes().split(b"\n", 1)[0].decode("latin-1").lower()
        return "patientid" in header and "finding" in header

    def read_labels(self, path):
        labels = {}
        for row in _read_rows(path):
            pid = (row.get("patientid") or "").strip()
            finding = (row.get("finding") or "").strip()
            label = _FINDINGS.get(normalise(finding))
            reason = "" if label else (
                "no finding in metadata.csv (unlabelled)" if not finding else f"finding {finding!r} is not one of the three classes"
            )
            labels[pid] = (label, pid, reason)
        return labels

    def _lookup(self, rel):
        return self._labels.get(rel.stem)
