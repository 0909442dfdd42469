"""`cxrtool demo`: the whole pipeline on phantoms (a thin wrapper over :mod:`cxrtool.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app

EPILOG = """[bold]Examples[/bold]

  cxrtool demo                      # writes ./cxrtool-demo/, a few minutes on a 2-core CPU

  cxrtool demo --quick --out /tmp/demo

Writes phantom sources, builds a dataset, trains a small CNN and a small ViT, ensembles
them, evaluates all three, draws Grad-CAM overlays and predicts the test folder. Nothing is
downloaded. The list of files it made goes to stdout.
"""


@app.command("demo", epilog=EPILOG)
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes (must be empty or absent).")] = Path("cxrtool-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Smallest setting (two to three minutes on 2 CPU cores).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for phantoms, split and training.")] = 0,
) -> None:
    """Run build-dataset, train, ensemble, evaluate, gradcam and predict on synthetic X-rays."""
    import time

    from ..console import info
    from ..demo import run_demo
    from .evaluate import render_table

    start = time.perf_counter()
    result = run_demo(out, quick=quick, seed=seed, say=info)
    render_table(result.evaluation)
    info(f"demo finished in {time.perf_counter() - start:.0f} s; step times (s): {result.seconds}")
    for path in result.files:
        typer.echo(str(path))
