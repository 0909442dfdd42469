"""`cxrtool evaluate`: a thin wrapper over :func:`cxrtool.evaluate.evaluate`, plus the rich
tables of its result on stderr (:func:`render_table`, also used by ``cxrtool demo``).

Nothing heavy is imported at module import time; the library is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .verify import VerifyOption, verify_splits

FORMATS = ("table", "json", "markdown")

EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  cxrtool evaluate data/ --model resnet50                           # test split -> eval-data-test/\n\n"
    "  cxrtool evaluate data/ -m resnet50 -m resnet152 -m mobilenetv2 -m ensemble --out results/\n\n"
    "  cxrtool evaluate data/ -m ensemble --format json | jq .models.ensemble.metrics.accuracy\n\n"
    "  cxrtool evaluate hospital_x/ -m ensemble                          # folder of covid/ pneumonia/ normal/\n\n"
    "  cxrtool evaluate data/ -m cnn --attention --attention-max 100    # Grad-CAM heat on borders and text\n\n"
    "  cxrtool evaluate data/ -m cnn --shift all                         # + accuracy under acquisition shifts\n\n"
    "  cxrtool evaluate data/ -m cnn --shift gamma,invert,text --shift-severities 1,3\n\n"
    "Writes OUT/metrics.json (every number, model and dataset fingerprints, versions), OUT/report.md, "
    "OUT/predictions.csv and per model a confusion matrix, ROC curves and a reliability diagram "
    "(plus comparison_roc.png with several models). Confidence intervals resample whole manifest "
    "groups (duplicates/patients); the per-source breakdown shows source shortcuts. Unreadable "
    "images are listed and excluded. --attention adds where each model looks: the share of its Grad-CAM "
    "heat on the image border and on burnt-in text, per class and source (metrics.json 'attention', "
    "OUT/attention.csv per image). --shift re-evaluates the same images under acquisition shifts "
    "(gamma, contrast, brightness, blur, noise, jpeg, downsample, crop, pad, text, invert; severities 1-3) "
    "into metrics.json (shifts), report.md and shifts.png. Tables go to stderr; --format json|markdown prints to stdout."
)


@app.command("evaluate", epilog=EPILOG)
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (manifest.csv) or a folder of class sub-folders.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model name or .keras path; repeat for several.")],
    split: Annotated[str, typer.Option(help="Split of a dataset: test, val or train.")] = "test",
    out: Annotated[Optional[Path], typer.Option(help="Output folder \\[default: ./eval-NAME-SPLIT for a dataset, ./eval-NAME for a folder].")] = None,
    output_format: Annotated[str, typer.Option("--format", help="table (stderr only), json or markdown (stdout).")] = "table",
    models_dir: Annotated[Optional[Path], typer.Option(help="Models folder \\[default: $CXRTOOL_MODELS or ./models].")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per prediction batch.")] = 64,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs (0: off).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap random seed.")] = 0,
    bins: Annotated[int, typer.Option(help="Confidence bins for ECE and the reliability diagram.")] = 10,
    attention: Annotated[bool, typer.Option("--attention", help="Also measure where each model looks: share of its Grad-CAM heat on the border band and on burnt-in text, per class and source (e.g. --attention --attention-max 100).")] = False,
    attention_max: Annotated[int, typer.Option(help="Images explained for --attention, stratified by class and source (e.g. --attention-max 50).")] = 200,
    attention_band: Annotated[float, typer.Option(help="Border band for --attention: outer fraction of each side (e.g. --attention-band 0.15).")] = 0.1,
    shift: Annotated[Optional[str], typer.Option(
        help="Also evaluate under acquisition shifts: 'all' or a comma list, e.g. --shift gamma,invert,text "
             "(gamma, contrast, brightness, blur, noise, jpeg, downsample, crop, pad, text, invert).")] = None,
    shift_severities: Annotated[Optional[str], typer.Option(
        help="Only these severities of each shift, e.g. --shift-severities 1,3 \\[default: all, 1-3].")] = None,
    verify: VerifyOption = False,
) -> None:
    """Per-class metrics, ROC AUC, CIs, calibration and a per-source breakdown of one or more models."""
    from .. import console
    from ..errors import UsageError
    from ..evaluate import evaluate as run_evaluation
    from ..evaluate.outputs import markdown, to_json
    from ..locks import hold

    if verify:
        if not (dataset / "manifest.csv").is_file():
            raise UsageError(f"--verify checks a dataset's files against its manifest.csv; {dataset} has none")
        verify_splits(dataset, (split,))
    severities = None
    if shift_severities is not None:
        try:
            severities = [int(v) for v in shift_severities.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--shift-severities takes numbers like 1,3 (got {shift_severities!r})") from None
    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {output_format!r})")
    if out is None:
        name = dataset.resolve().name or "dataset"
        out = Path(f"eval-{name}-{split}" if (dataset / "manifest.csv").is_file() else f"eval-{name}")

    with hold(out), console.progress(transient=True) as bar:  # one evaluation per --out folder at a time
        tasks: dict[str, int] = {}

        def on_event(event: dict) -> None:
            if "message" in event:
                console.info(event["message"])
            stage = event["stage"]
            if stage in ("load", "predict", "attention", "shift") and event["done"]:
                key = {"load": "reading images", "predict": f"predicting ({event.get('model')})",
                       "attention": "attention (Grad-CAM)", "shift": "shifted copies"}[stage]
                if key not in tasks:
                    tasks[key] = bar.add_task(key, total=event["total"])
                bar.update(tasks[key], completed=event["done"])

        doc = run_evaluation(
            dataset, model, split=split, out=out, models_dir=models_dir, batch_size=batch_size,
            n_boot=bootstrap, seed=seed, n_bins=bins, attention=attention, attention_max=attention_max,
            attention_band=attention_band, shifts=shift, shift_severities=severities, progress=on_event,
        )
    bad = doc["unreadable"]
    if bad["count"]:
        console.warn(f"{bad['count']} unreadable image(s) excluded from the metrics:")
        for f in bad["files"][:20]:
            console.warn(f"  {f['file']}: {f['kind']}: {f['reason']}")
        if bad["count"] > 20:
            console.warn(f"  ... and {bad['count'] - 20} more (all listed in {out / 'metrics.json'})")
    for w in doc["warnings"]:
        if not w.startswith(f"{bad['count']} of"):
            console.warn(w)
    for label, mdoc in doc["models"].items():
        for w in mdoc["metrics"]["warnings"]:
            console.warn(f"{label}: {w}")
    render_table(doc)
    for label, mdoc in doc["models"].items():
        if o := mdoc.get("ood"):
            console.info(f"{label}: {o['flagged']} of {o['n']} images flagged as unlike the training data "
                         f"({o['fraction']:.1%}" + ("" if o["available"] else "; image checks only, no OOD statistics")
                         + f"); accuracy {o['all']['accuracy']:.3f} on all, "
                         + ("n/a" if o["unflagged"]["accuracy"] is None else f"{o['unflagged']['accuracy']:.3f}")
                         + " without the flagged ones")
            if shift := o.get("group_shift"):
                from ..evaluate.ood_section import shift_sentence

                (console.warn if shift["shifted"] else console.info)(f"{label}: {shift_sentence(shift)}")
    console.info(f"report: {out / 'report.md'}  metrics: {out / 'metrics.json'}")
    if output_format == "json":
        typer.echo(to_json(doc))
    elif output_format == "markdown":
        typer.echo(markdown(doc))


def render_table(doc: dict) -> None:
    """The comparison, summary and per-source tables of an evaluation document on stderr (rich);
    nothing with ``-q``."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ..console import err, verbosity
    from ..evaluate.outputs import ATTENTION_HEADER, attention_cells, attention_groups, fmt, fmt_ci

    if verbosity() <= 0:
        return

    def show(table) -> None:
        # piped or captured stderr: rich assumes 80 columns; print the table at its natural width
        if err.is_terminal:
            err.print(table)
            return
        width = max(err.width, err.measure(table, options=err.options.update_width(400)).maximum)
        Console(stderr=True, width=width, highlight=False, color_system=None).print(table)

    t = Table(title="Per class (Table III layout)", box=box.SIMPLE_HEAD)
    for col in ("Model", "Class", "Precision", "Recall", "F1", "Support", "AUC", "Accuracy"):
        t.add_column(col, justify="left" if col in ("Model", "Class") else "right")
    last = None
    for r in doc["comparison"]:
        first = r["model"] != last
        if first and last is not None:
            t.add_section()
        last = r["model"]
        t.add_row(r["model"] if first else "", r["class"], fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]),
                  str(r["support"]), fmt(r["auc"]), fmt(r["accuracy"]) if first else "")
    show(t)
    s = Table(title="Summary (95% group-bootstrap CIs)", box=box.SIMPLE_HEAD)
    for col in ("Model", "Accuracy [95% CI]", "Macro F1 [95% CI]", "Macro AUC", "ECE", "Images"):
        s.add_column(col, justify="left" if col == "Model" else "right")
    for label, mdoc in doc["models"].items():
        m = mdoc["metrics"]
        b = m.get("bootstrap")
        s.add_row(label, fmt_ci(b, "accuracy") or fmt(m["accuracy"]), fmt_ci(b, "macro_f1") or fmt(m["macro"]["f1"]),
                  fmt(m["macro"]["auc"]), fmt(m["calibration"]["ece"]), str(m["n"]))
    show(s)
    calibrated = [(label, m["calibration"]) for label, m in doc["models"].items() if m.get("calibration")]
    if calibrated:
        c = Table(title="Calibration: before and after each model's temperature", box=box.SIMPLE_HEAD)
        for col in ("Model", "Temperature", "ECE before", "ECE after", "Log-loss before", "Log-loss after"):
            c.add_column(col, justify="left" if col == "Model" else "right")
        for label, v in calibrated:
            c.add_row(label, fmt(v["temperature"]), fmt(v["ece_before"]), fmt(v["ece_after"]),
                      fmt(v["nll_before"]), fmt(v["nll_after"]))
        show(c)
    sources = doc["dataset"]["sources"]
    if len(sources) > 1:
        classes = doc["dataset"]["classes"]
        p = Table(title="Per source (a source shortcut shows as recall collapsing on one source)", box=box.SIMPLE_HEAD)
        for col in ("Model", "Source", "Images", "Accuracy", *(f"recall {c}" for c in classes)):
            p.add_column(col, justify="left" if col in ("Model", "Source") else "right")
        for i, (label, mdoc) in enumerate(doc["models"].items()):
            if i:
                p.add_section()
            for j, (src, v) in enumerate(mdoc["metrics"].get("per_source", {}).items()):
                p.add_row(label if j == 0 else "", src, str(v["n"]), fmt(v["accuracy"]),
                          *(fmt(v["recall"][c]) for c in classes))
        show(p)
    if doc.get("attention"):
        a = Table(title=f"Where the models look: Grad-CAM heat on the {doc['attention']['settings']['band']:.0%} "
                        "border band and on burnt-in text (lift = share / area; 1 = no preference)",
                  box=box.SIMPLE_HEAD)
        for col in ("Model", "Group", *ATTENTION_HEADER):
            a.add_column(col, justify="left" if col in ("Model", "Group") else "right")
        for i, (label, m) in enumerate(doc["attention"]["models"].items()):
            if i:
                a.add_section()
            for j, (name, v) in enumerate(attention_groups(m)):
                a.add_row(label if j == 0 else "", name, *attention_cells(v))
        show(a)
    if doc.get("shifts"):
        from ..evaluate.shift_pass import worst_drops

        w = Table(title="Acquisition shifts: the largest accuracy drops (all in metrics.json, shifts.png)",
                  box=box.SIMPLE_HEAD)
        for col in ("Model", "Shift", "Severity", "What it does", "Accuracy", "Clean", "Drop", "Macro F1", "Macro AUC", "ECE"):
            w.add_column(col, justify="left" if col in ("Model", "Shift", "What it does") else "right")
        last = None
        for r in worst_drops(doc["shifts"]):
            if last is not None and r["model"] != last:
                w.add_section()
            w.add_row(r["model"] if r["model"] != last else "", r["shift"], str(r["severity"]),
                      doc["shifts"]["definitions"][r["shift"]]["severities"][str(r["severity"])],
                      fmt(r["accuracy"]), fmt(r["clean_accuracy"]), f"{-r['drop']:+.3f}", fmt(r["macro_f1"]),
                      fmt(r["auc_macro"]), fmt(r["ece"]))
            last = r["model"]
        show(w)
