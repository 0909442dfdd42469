"""`cxrtool predict`: a thin wrapper over :func:`cxrtool.predict.predict_stream` and the
writers of :mod:`cxrtool.predict_writers` (csv, jsonl, table) on stdout. Rows are written and
flushed batch by batch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

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
    from ..inference import open_model
    from ..predict import iter_input_paths, predict_stream
    from ..predict_writers import check_format, writer_for
    from .output import silence_stdout

    fmt = check_format(fmt)  # before the model loads
    loaded = open_model(model, models_dir)
    writer = writer_for(fmt, sys.stdout, list(loaded.info.classes))
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
        # the reader went away (`| head`): stop quietly with status 0; exit here because Click
        # would turn an escaping EPIPE into exit status 1
        silence_stdout()
        raise typer.Exit(0) from None
    if total == 0:
        console.info("no input images")
    elif failed:
        console.info(f"{failed} of {total} images could not be read")
        raise typer.Exit(1)
