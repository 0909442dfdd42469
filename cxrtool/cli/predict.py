"""`cxrtool predict`: a thin wrapper over :func:`cxrtool.predict.predict_stream` plus the
stdout writers (csv, jsonl, table). Rows are written and flushed batch by batch."""

from __future__ import annotations

from abc import ABC, abstractmethod

import csv
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

FORMATS = ("csv", "jsonl", "table")

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool predict --model resnet50 scan1.png scan2.jpg\n\n"
    "  cxrtool predict --model cnn scans/ --format table          # folders are searched recursively\n\n"
    "  find scans -name '*.png' | cxrtool predict --model ensemble - --format jsonl | jq -r 'select(.label == \"covid\") | .path'\n\n"
    "  cxrtool predict --model vit scans/ > predictions.csv\n\n"
    "Output (stdout) streams as batches finish: path, label, probability (of the label) and one "
    "probability column per class; CSV has a header. A file that cannot be read gives a row with an "
    "error (CSV: empty probabilities) and a line on stderr; the others go on, and the exit status is "
    "1 at the end if any file failed. No input: the header only, exit 0."
)


class _Writer(ABC):
    """Writes result rows to stdout in one format; subclasses say how."""

    def __init__(self, stream, classes: list[str]):
        self.stream = stream
        self.classes = classes

    def header(self) -> None:  # pragma: no cover - overridden
        pass

    @abstractmethod
    def rows(self, rows) -> None:
        """Write one batch of predictions."""

    def flush(self) -> None:
        self.stream.flush()


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


class CsvWriter(_Writer):
    def __init__(self, stream, classes):
        super().__init__(stream, classes)
        self.csv = csv.writer(stream, lineterminator="\n")

    def header(self) -> None:
        self.csv.writerow(["path", "label", "probability", *self.classes, "error"])

    def rows(self, rows) -> None:
        for r in rows:
            probs = r.probabilities or {}
            self.csv.writerow([r.path, r.label or "", _num(r.probability), *(_num(probs.get(c)) for c in self.classes), r.error or ""])


class JsonlWriter(_Writer):
    def rows(self, rows) -> None:
        for r in rows:
            self.stream.write(json.dumps(r.as_dict(self.classes), ensure_ascii=False) + "\n")


class TableWriter(_Writer):
    """Fixed-width columns (the path last, so widths never depend on data still to come)."""

    def __init__(self, stream, classes):
        super().__init__(stream, classes)
        self.widths = [max(9, max(map(len, classes), default=0)), 11] + [max(9, len(c)) for c in classes]

    def _line(self, cells, path) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, self.widths))) + "  " + path

    def header(self) -> None:
        self.stream.write(self._line(["label", "probability", *self.classes], "path") + "\n")

    def rows(self, rows) -> None:
        for r in rows:
            if r.error is not None:
                self.stream.write(f"{'ERROR'.ljust(self.widths[0])}  {r.path}: {r.error}\n")
                continue
            probs = r.probabilities or {}
            cells = [r.label, f"{r.probability:.3f}", *(f"{probs.get(c, 0.0):.3f}" for c in self.classes)]
            self.stream.write(self._line(cells, r.path) + "\n")


WRITERS = {"csv": CsvWriter, "jsonl": JsonlWriter, "table": TableWriter}


@app.command("predict", epilog=EPILOG)
def predict(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Image files, folders (recursed) and '-' (paths from stdin, one per line).", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name in the models folder, or a .keras path.")] = ...,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl or table.")] = "csv",
    batch_size: Annotated[int, typer.Option(help="Images per model call.", min=1)] = 32,
    workers: Annotated[Optional[int], typer.Option(help="Decoding threads \\[default: CPU count, at most 8].", min=1)] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
) -> None:
    """Predict the class of many images, streaming rows to stdout for shell pipelines."""
    import contextlib

    from .. import console
    from ..errors import UsageError
    from ..inference import open_model
    from ..predict import iter_input_paths, predict_stream

    fmt = fmt.lower()
    if fmt not in WRITERS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    loaded = open_model(model, models_dir)
    writer = WRITERS[fmt](sys.stdout, list(loaded.info.classes))
    total = failed = 0
    try:
        writer.header()
        writer.flush()
        paths = iter_input_paths(inputs or [])
        with contextlib.closing(predict_stream(loaded, paths, batch_size=batch_size, workers=workers)) as stream:
            for rows in stream:
                writer.rows(rows)
                writer.flush()
                for r in rows:
                    total += 1
                    if r.error is not None:
                        failed += 1
                        console.error(f"{r.path}: {r.error}")
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly with status 0. Point stdout at
        # /dev/null so the interpreter's final flush does not complain; exit here because
        # Click would turn an escaping EPIPE into exit status 1.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None
    if total == 0:
        console.info("no input images")
    elif failed:
        console.info(f"{failed} of {total} images could not be read")
        raise typer.Exit(1)
