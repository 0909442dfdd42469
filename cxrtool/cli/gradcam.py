"""`cxrtool gradcam`: a thin wrapper over :func:`cxrtool.gradcam.gradcam_files`.

Keras/JAX are imported inside the command only (the CLI starts fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool gradcam scan.png --model resnet50 --out scan_cam.png\n\n"
    "  cxrtool gradcam scans/*.png --model cnn --out cams/            # + cams/contact_sheet.png\n\n"
    "  cxrtool gradcam scan.png --model resnet50 --layer conv4_block6_out   # finer 7x7 grid at 100 px\n\n"
    "  cxrtool gradcam scan.png --model resnet50 --layer list          # all layers and their grids\n\n"
    "  cxrtool gradcam scan.png --model vit --class covid --save-raw\n\n"
    "  cxrtool gradcam scan.png --model ensemble --method gradcam++\n\n"
    "Writes an overlay PNG per image (default folder ./gradcam/; never next to the inputs) and "
    "prints one tab-separated line per image on stdout: path, predicted class, probability, "
    "output file, and a fifth field 'flat' when the heat map is degenerate (all zero or constant: "
    "the overlay then shows the X-ray alone, captioned). Unreadable images are reported on stderr "
    "and give exit status 1 at the end."
)


@app.command("gradcam", epilog=EPILOG)
def gradcam(
    images: Annotated[Optional[list[Path]], typer.Argument(help="X-ray image files (folders are searched recursively).", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name in the models folder, or a .keras path.")] = ...,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Target layer \\[default: the last spatial feature map]; 'list' prints the choices.")] = None,
    class_name: Annotated[Optional[str], typer.Option("--class", help="Explain this class (covid, pneumonia, normal) \\[default: the predicted one].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="One image: the PNG file; several: a folder \\[default: ./gradcam/].")] = None,
    alpha: Annotated[float, typer.Option(help="Heat-map opacity over the X-ray, 0..1.")] = 0.4,
    save_raw: Annotated[bool, typer.Option("--save-raw", help="Also write the heat map (0..1 float32 at the image's resolution) as .npy next to each PNG.")] = False,
    method: Annotated[str, typer.Option(help="gradcam, gradcam++, hirescam or layercam.")] = "gradcam",
    cmap: Annotated[str, typer.Option(help="Matplotlib colour map (perceptually uniform: inferno, magma, viridis).")] = "inferno",
    batch_size: Annotated[int, typer.Option(help="Images per jitted Grad-CAM call.", min=1)] = 16,
    workers: Annotated[Optional[int], typer.Option(help="Threads decoding and drawing overlays \\[default: the CPUs, at most 8].", min=1)] = None,
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
) -> None:
    """Explain predictions with Grad-CAM heat maps (computed natively on JAX)."""
    from .. import console
    from ..errors import UsageError
    from ..imageio import iter_images
    from ..inference import open_model
    from .output import reader_may_leave

    if layer == "list":
        loaded = open_model(model, models_dir)
        _list_layers(loaded)
        return
    if not images:
        raise UsageError("give at least one IMAGE (or --layer list)")
    paths = [str(p) for p in iter_images(images)]
    if not paths:
        console.warn("no images found")
        return
    loaded = open_model(model, models_dir)
    from ..gradcam import gradcam_files

    gen = gradcam_files(loaded, paths, out=out, layer=layer, class_name=class_name, method=method, alpha=alpha,
                        cmap=cmap, save_raw=save_raw, batch_size=batch_size, workers=workers)
    failed = flat = 0
    while True:
        try:
            rec = next(gen)
        except StopIteration as stop:
            sheets = stop.value or []
            break
        if rec.error is not None:
            failed += 1
            console.error(f"{rec.path}: {rec.error}")
            continue
        ex = rec.explanation
        flat += rec.flat
        with reader_may_leave():  # `| head`: the files are still written; printing stops quietly
            notes = ",".join(word for word in (rec.flag, "flat" if rec.flat else "") if word)  # one fifth field
            typer.echo(f"{rec.path}\t{ex.label}\t{ex.probability:.4f}\t{rec.output}" + (f"\t{notes}" if notes else ""))
    for sheet in sheets:
        console.info(f"contact sheet: {sheet}")
    if flat:
        console.warn(f"{flat} of {len(paths)} heat maps are flat (all zero or constant): no evidence of where "
                     "the model looked; those overlays show the X-ray alone (an untrained model, or try another --layer)")
    if failed:
        console.info(f"{failed} of {len(paths)} images could not be read")
        raise typer.Exit(1)


def _list_layers(loaded) -> None:
    """``--layer list``: every candidate with its grid; '*' marks the last layer of each grid size."""
    from ..gradcam import candidate_layers, default_layer

    if loaded.info.architecture == "ensemble":
        from ..ensemble import member_models

        models = [(info.get("name", f"member_{k}"), m, None) for k, (m, info, _) in enumerate(member_models(loaded))]
    else:
        models = [(None, loaded.model, loaded.info)]
    for member, m, info in models:
        cands = candidate_layers(m)
        default = default_layer(m, info) if cands else None
        for i, (name, grid) in enumerate(cands):
            stage_end = i + 1 == len(cands) or cands[i + 1][1] != grid
            marks = ("*" if stage_end else "") + (" (default)" if name == default else "")
            prefix = f"{member}\t" if member else ""
            typer.echo(f"{prefix}{name}\t{grid[0]}x{grid[1]}{marks}")
