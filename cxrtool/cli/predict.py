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
    "  cxrtool predict --model cnn inbox/ --on-flag drop            # leave out what does not look like a chest X-ray\n\n"
    "Output (stdout) streams as batches finish: path, label, probability (of the label) and one "
    "probability column per class; CSV has a header. A file that cannot be read gives a row with an "
    "error (CSV: empty probabilities) and a line on stderr; the others go on, and the exit status is "
    "1 at the end if any file failed. No input: the header only, exit 0.\n\n"
    "Every row also has ood_score (distance to the training data / threshold; above 1 is out of "
    "distribution; empty when the model has no OOD statistics: fit them with `cxrtool fit-ood`) and flag "
    "(empty, not-a-chest-xray from the image checks, or out-of-distribution); one warning line on stderr "
    "counts the flagged inputs. --on-flag keep (default) writes their predictions; drop leaves their rows "
    "out; fail writes their rows without a prediction and with error 'flagged: FLAG', like an unreadable "
    "file, and the exit status is 1 at the end."
)

ON_FLAG = ("keep", "drop", "fail")


@app.command("predict", epilog=EPILOG)
def predict(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Image files, folders (recursed) and '-' (paths from stdin, one per line).", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name in the models folder, or a .keras path.")] = ...,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl or table.")] = "csv",
    batch_size: Annotated[int, typer.Option(help="Images per model call.", min=1)] = 32,
    workers: Annotated[Optional[int], typer.Option(help="Decoding threads \\[default: CPU count, at most 8].", min=1)] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
    on_flag: Annotated[str, typer.Option("--on-flag", help="What to do with flagged inputs: keep (write the prediction), drop (no row) or fail (a row without prediction, exit 1). Example: --on-flag drop.")] = "keep",
) -> None:
    """Predict the class of many images, streaming rows to stdout for shell pipelines."""
    import contextlib

    from .. import console
    from ..inference import open_model
    from ..predict import iter_input_paths, predict_stream
    from ..predict_writers import check_format, writer_for
    from ..errors import UsageError
    from ..ood import apply_on_flag, flag_summary, has_stats
    from .output import silence_stdout

    fmt = check_format(fmt)  # before the model loads
    if on_flag not in ON_FLAG:
        raise UsageError(f"--on-flag {on_flag!r}: choose one of {', '.join(ON_FLAG)}")
    loaded = open_model(model, models_dir)
    if not has_stats(loaded.info):
        console.info(f"{loaded.path}: no OOD statistics in this model (trained before cxrtool could fit them): "
                     "ood_score is empty and only the image checks flag; fit them with `cxrtool fit-ood`")
    writer = writer_for(fmt, sys.stdout, list(loaded.info.classes))
    total = failed = 0
    flags: list[str] = []
    try:
        writer.header()
        writer.flush()
        paths = iter_input_paths(inputs or [])
        with contextlib.closing(predict_stream(loaded, paths, batch_size=batch_size, workers=workers)) as stream:
            for rows in stream:
                total += len(rows)
                flags += [r.flag for r in rows if r.flag]
                rows = apply_on_flag(rows, on_flag)
                writer.rows(rows)
                writer.flush()
                for r in rows:
                    if r.error is not None:
                        failed += 1
                        console.error(f"{r.path}: {r.error}")
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly with status 0; exit here because Click
        # would turn an escaping EPIPE into exit status 1
        silence_stdout()
        raise typer.Exit(0) from None
    if flags:
        console.warn(flag_summary(flags, total, on_flag))
    if total == 0:
        console.info("no input images")
    elif failed:
        console.info(f"{failed} of {total} images could not be read" if on_flag != "fail"
                     else f"{failed} of {total} images could not be read or were flagged")
        raise typer.Exit(1)
