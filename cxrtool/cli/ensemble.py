"""`cxrtool ensemble`: a thin wrapper over :func:`cxrtool.ensemble.build_ensemble`.

Nothing heavy is imported at module import time; the library is imported inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool ensemble resnet50 resnet152 mobilenetv2 cnn             # soft voting -> models/ensemble.keras\n\n"
    "  cxrtool ensemble resnet50 resnet152 mobilenetv2 --method weighted --data data/ --name best\n\n"
    "  cxrtool ensemble runs/a.keras runs/b.keras --name ab --models-dir runs\n\n"
    "  cxrtool evaluate data/ --model resnet50 --model ensemble          # compare it with a member\n\n"
    "The ensemble is one self-contained .keras model taking raw images at the largest member "
    "input size; each member keeps its own resizing and preprocessing inside. [bold]weighted[/bold] "
    "fits non-negative weights (summing to 1) that minimise the log-loss on the val split of "
    "--data. Members must predict the same classes. Its path is printed on stdout; "
    "--json prints its metadata instead."
)


@app.command("ensemble", epilog=EPILOG)
def ensemble(
    members: Annotated[list[str], typer.Argument(help="Trained models: names in the models folder or .keras paths.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Save as MODELS_DIR/NAME.keras.")] = "ensemble",
    method: Annotated[str, typer.Option(help="mean (soft voting) or weighted (weights fitted on the val split of --data).")] = "mean",
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder (manifest.csv); its val split fits/checks the weights.")] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Save the ensemble here instead of MODELS_DIR/NAME.keras.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size when predicting the val split.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ensemble's metadata as JSON on stdout.")] = False,
) -> None:
    """Combine trained models into one ensemble model (mean or val-fitted weighted soft voting)."""
    from .. import console
    from ..ensemble import build_ensemble
    from ..locks import hold
    from ..resolve import model_path_for

    with hold(out or model_path_for(name, models_dir)):  # one writer per model file at a time
        result = build_ensemble(
            members, name=name, method=method, data=data, models_dir=models_dir, out=out,
            batch_size=batch_size, progress=lambda e: console.info(e["message"]) if "message" in e else None,
        )
    for member in result.info.extra["members"]:
        console.info(
            f"  {member['layer']}: {member['name']} ({member['architecture']}, {member['image_size']} px)  "
            f"weight {member['weight']:.3f}"
        )
    if result.val:
        v = result.val
        console.info(
            f"val ({v['n']} images): ensemble log-loss {v['log_loss']:.4f} (equal weights {v['mean_log_loss']:.4f}), "
            f"accuracy {v['accuracy']:.3f}"
        )
    if as_json:
        doc = {"path": str(result.model_path), "weights": result.weights, "val": result.val,
               "info": json.loads(result.info.to_json())}
        typer.echo(json.dumps(doc, indent=1))
    else:
        typer.echo(str(result.model_path))
