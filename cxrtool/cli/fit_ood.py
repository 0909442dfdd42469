"""`cxrtool fit-ood`: a thin wrapper over :func:`cxrtool.ood.fit_ood_model`, for models trained
before `train` fitted the out-of-distribution statistics itself (and for ensembles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool fit-ood cnn --data data/                            # models/cnn.keras, replaced atomically\n\n"
    "  cxrtool fit-ood ensemble --data data/ --out models/ensemble-ood.keras\n\n"
    "Computes the model's pooled features on the train split of --data (at most 5,000 images), stores "
    "their class means and shared covariance (in the top 64 principal directions plus a residual term) "
    "in the model, does the same for 24 x 24 standardised thumbnails of the images (their grey layout), "
    "and sets each threshold at the 99.5th percentile of the val split's distances. "
    "`cxrtool predict` then fills ood_score and flags inputs above the threshold as out-of-distribution. "
    "`cxrtool train` already does this; an ensemble gets each member's statistics. The model's path is "
    "printed on stdout."
)


@app.command("fit-ood", epilog=EPILOG)
def fit_ood(
    model: Annotated[str, typer.Argument(help="Model name in the models folder or a .keras path (an ensemble too).")],
    data: Annotated[Path, typer.Option(help="Dataset folder (manifest.csv): train split for the statistics, val for the threshold.")],
    out: Annotated[Optional[Path], typer.Option(help="Save the model here \\[default: replace MODEL].")] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size when computing features.")] = 64,
) -> None:
    """Fit the out-of-distribution statistics of a model on a dataset and store them in it."""
    from .. import console
    from ..ood import fit_ood_model

    result = fit_ood_model(model, data, out=out, models_dir=models_dir, batch_size=batch_size,
                           progress=lambda e: console.info(e["message"]) if "message" in e else None)
    r = result.record
    if "members" in r:
        console.info("val images flagged per member: " + ", ".join(f"{v:.1%}" for v in r["members"]))
    else:
        console.info(f"{r['dims']} of {r['feature_dim']} feature dimensions, {r['n_train']} train images; "
                     f"threshold at the {r['quantile']:.0%} quantile of {r['n_val']} val images "
                     f"({r['val_flagged']:.1%} of them above it)")
    typer.echo(str(result.model_path))
