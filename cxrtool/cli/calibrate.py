"""`cxrtool calibrate`: a thin wrapper over :func:`cxrtool.evaluate.calibration.calibrate_model`.

Nothing heavy is imported at module import time; the library is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .verify import VerifyOption, verify_splits

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool calibrate cnn --data data/                          # models/cnn.keras, replaced atomically\n\n"
    "  cxrtool calibrate ensemble --data data/ --out models/ensemble-cal.keras\n\n"
    "  cxrtool evaluate data/ -m cnn                               # reports ECE before and after\n\n"
    "Fits one temperature T on the val split of --data (minimising the log-loss; accuracy and "
    "rankings do not change) and stores it in the model: probs = softmax(logits / T), or for an "
    "ensemble softmax(log(mean) / T). `cxrtool train` already does this unless --no-calibrate; use "
    "this command for older models and for ensembles. A model that has a temperature is re-fitted. "
    "The model's path is printed on stdout."
)


@app.command("calibrate", epilog=EPILOG)
def calibrate(
    model: Annotated[str, typer.Argument(help="Model name in the models folder or a .keras path (an ensemble too).")],
    data: Annotated[Path, typer.Option(help="Dataset folder (manifest.csv); its val split fits the temperature.")],
    out: Annotated[Optional[Path], typer.Option(help="Save the calibrated model here \\[default: replace MODEL].")] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size when predicting the val split.")] = 64,
    verify: VerifyOption = False,
) -> None:
    """Fit a temperature on the val split and store it in the model (calibrated probabilities)."""
    from .. import console

    if verify:
        verify_splits(data, ("val",))
    from ..evaluate.calibration import calibrate_model
    from ..locks import hold
    from ..resolve import resolve_model

    with hold(out if out is not None else resolve_model(model, models_dir)):  # one writer per model file
        result = calibrate_model(model, data, out=out, models_dir=models_dir, batch_size=batch_size,
                                 progress=lambda e: console.info(e["message"]) if "message" in e else None)
    r = result.record
    console.info(f"temperature {r['temperature']:.3f} on {r['n']} val images: ECE {r['val_ece_before']:.3f} -> "
                 f"{r['val_ece_after']:.3f}, log-loss {r['val_nll_before']:.4f} -> {r['val_nll_after']:.4f}"
                 + (" (at the search bound: the val split may be too small)" if r["at_bound"] else ""))
    typer.echo(str(result.model_path))
