"""Writers for prediction rows (:class:`cxrtool.predict.Prediction`): CSV, JSON Lines and a
fixed-width text table, on any text stream.

``cxrtool predict`` writes them to stdout batch by batch; ``cxrtool demo`` and Python users
write them to files::

    with open("predictions.csv", "w", newline="") as fh:
        write_predictions(fh, predict_stream(loaded, paths), loaded.info.classes)

A row with ``error`` set keeps its place with empty probabilities, so the output lines up
with the input.
"""

from __future__ import annotations

import csv
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TextIO

from .errors import UsageError
from .predict import Prediction

FORMATS = ("csv", "jsonl", "table")


class PredictionWriter(ABC):
    """Writes rows in one format: :meth:`header` once, then :meth:`rows` per batch."""

    def __init__(self, stream: TextIO, classes: Sequence[str]):
        self.stream = stream
        self.classes = list(classes)

    def header(self) -> None:
        """The first line(s) of the output; nothing for formats without a header."""

    @abstractmethod
    def rows(self, rows: Iterable[Prediction]) -> None:
        """Write one batch of rows."""

    def flush(self) -> None:
        self.stream.flush()


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


class CsvWriter(PredictionWriter):
    """``path,label,probability,<one column per class>,error,ood_score,flag``; empty cells where
    an image failed (``ood_score`` is empty too when the model has no OOD statistics)."""

    def __init__(self, stream: TextIO, classes: Sequence[str]):
        super().__init__(stream, classes)
        self.csv = csv.writer(stream, lineterminator="\n")

    def header(self) -> None:
        self.csv.writerow(["path", "label", "probability", *self.classes, "error", "ood_score", "flag"])

    def rows(self, rows: Iterable[Prediction]) -> None:
        for r in rows:
            probs = r.probabilities or {}
            self.csv.writerow([r.path, r.label or "", _num(r.probability),
                               *(_num(probs.get(c)) for c in self.classes), r.error or "",
                               _num(r.ood_score), r.flag])


class JsonlWriter(PredictionWriter):
    """One JSON object per line (:meth:`Prediction.as_dict`); ``null`` where an image failed."""

    def rows(self, rows: Iterable[Prediction]) -> None:
        for r in rows:
            self.stream.write(json.dumps(r.as_dict(self.classes), ensure_ascii=False) + "\n")


class TableWriter(PredictionWriter):
    """Fixed-width columns (the path last, so widths never depend on data still to come)."""

    def __init__(self, stream: TextIO, classes: Sequence[str]):
        super().__init__(stream, classes)
        self.widths = [max(9, max(map(len, self.classes), default=0)), 11] + [max(9, len(c)) for c in self.classes]

    def _line(self, cells: Sequence[str], path: str) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, self.widths))) + "  " + path

    def header(self) -> None:
        self.stream.write(self._line(["label", "probability", *self.classes], "path") + "\n")

    def rows(self, rows: Iterable[Prediction]) -> None:
        for r in rows:
            if r.error is not None:
                self.stream.write(f"{'ERROR'.ljust(self.widths[0])}  {r.path}: {r.error}\n")
                continue
            probs = r.probabilities or {}
            cells = [r.label, f"{r.probability:.3f}", *(f"{probs.get(c, 0.0):.3f}" for c in self.classes)]
            self.stream.write(self._line(cells, f"[{r.flag}]  {r.path}" if r.flag else r.path) + "\n")


WRITERS: dict[str, type[PredictionWriter]] = {"csv": CsvWriter, "jsonl": JsonlWriter, "table": TableWriter}


def check_format(fmt: str) -> str:
    """``fmt`` in lower case if it is one of :data:`FORMATS`; a :class:`UsageError` otherwise."""
    if fmt.lower() not in WRITERS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt.lower()


def writer_for(fmt: str, stream: TextIO, classes: Sequence[str]) -> PredictionWriter:
    """The writer of format ``fmt`` (one of :data:`FORMATS`) on ``stream``."""
    return WRITERS[check_format(fmt)](stream, classes)


def write_predictions(stream: TextIO, batches: Iterable[Sequence[Prediction]], classes: Sequence[str],
                      fmt: str = "csv") -> int:
    """Header, then every batch of rows (as :func:`cxrtool.predict.predict_stream` yields them);
    returns the number of rows written."""
    writer = writer_for(fmt, stream, classes)
    writer.header()
    n = 0
    for batch in batches:
        writer.rows(batch)
        n += len(batch)
    writer.flush()
    return n


__all__ = ["FORMATS", "CsvWriter", "JsonlWriter", "PredictionWriter", "TableWriter", "WRITERS",
           "check_format", "write_predictions", "writer_for"]
