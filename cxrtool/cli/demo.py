"""`cxrtool demo`: the whole pipeline on phantoms (a thin wrapper over :mod:`cxrtool.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app

EPILOG = """[bold]Examples[/bold]

  cxrtool demo                          # writes ./cxrtool-demo/

  cxrtool demo --out /tmp/demo --seed 1 # another set of phantoms

Writes phantom sources, builds a dataset, trains a small CNN and a small ViT,
ensembles them, evaluates all three on the test split (the table shows each
model's accuracy), draws Grad-CAM overlays and predicts the test folder.
Nothing is downloaded. The list of files it made goes to stdout.
"""


@app.command("demo", epilog=EPILOG)
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes (must be empty or absent).")] = Path("cxrtool-demo"),
    seed: Annotated[int, typer.Option(help="Seed for phantoms, split and training.")] = 0,
) -> None:
    """Run build-dataset, train, ensemble, evaluate, gradcam and predict on synthetic X-rays."""
    import time

    from ..console import info
    from ..demo import run_demo
    from .evaluate import render_table

    start = time.perf_counter()
    result = run_demo(out, seed=seed, say=info)
    render_table(result.evaluation)
    info(f"demo finished in {time.perf_counter() - start:.0f} s; step times (s): {result.seconds}")
    accuracies = ", ".join(f"{name} {acc:.3f}" for name, acc in result.accuracy.items())
    info(f"test accuracy on {result.n_test} phantom images: {accuracies} "
         f"(always answering the largest class: {result.baseline:.3f})")
    for path in result.files:
        typer.echo(str(path))
