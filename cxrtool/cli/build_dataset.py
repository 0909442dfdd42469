"""`cxrtool build-dataset`: a thin wrapper over :func:`cxrtool.build.build_dataset` that
draws its progress events as bars and its report as tables on stderr."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..labels import CLASSES
from ..console import err, progress, warn
from ..errors import UsageError
from ..locks import hold
from .app import app
from .output import reader_may_leave

EPILOG = """[bold]Examples[/bold]

  cxrtool build-dataset sources/ data/ --per-class 7000

  cxrtool build-dataset covid-radiography/ chest_xray/ data/ --split 80/10/10 --seed 1

  cxrtool build-dataset sources/ data/ --dry-run --json | jq .duplicates

  cxrtool build-dataset sources/ data/ --dry-run --json | jq .audit

  cxrtool build-dataset sources/ data/ --no-audit

  cxrtool build-dataset sources/ data/ --test-source COVID-19_Radiography_Dataset:normal

  cxrtool build-dataset sources/ data/ --test-source Figure1-COVID-chestxray-dataset

  cxrtool build-dataset /nfs/src/ /nfs/data/ --executor dask://10.0.0.5:8786

A SRC is one source, or a folder whose sub-folders are sources. Known layouts (COVID-19
Radiography Database, pediatric chest_xray, 15K COVID-19, COVID-19+PNEUMONIA+NORMAL,
Figure 1 with metadata.csv) are recognised; other folders are labelled by class-named
sub-folders (covid, pneumonia, normal and aliases). Sources are never modified.

--test-source NAME[:CLASS] (repeatable) holds a source, or one class of it, out as an
external test split: nothing of it, of its duplicate clusters or of its patients is in
train or val; those are split in --split's train:val ratio (its test share is unused) and
--per-class balances them only (the held-out test is kept whole). NAME is a source name as
the report lists it.

--executor dask://HOST:PORT decodes and hashes the images on an existing Dask cluster
(`dask scheduler` + `dask worker`s; needs pip install "cxrtool\\[dask]"): every worker must
see SRC at the same absolute paths as this machine and run the same cxrtool. The dataset
is the same as a local build's. dask-local starts a Dask cluster of --workers processes here.
"""


#: Progress bar titles of the pipeline's progress stages.
STAGES = {"analyse": "Decoding and hashing", "write": "Writing images"}


def _per_class(value: str) -> int | None:
    if value.lower() in ("all", "natural", "none"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"--per-class {value!r}: a number, or 'all' for natural counts") from None
    if n < 1:
        raise UsageError("--per-class must be at least 1")
    return n


def _labels_csv(values: list[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--labels-csv {value!r}: expected SOURCE=FILE.csv")
        out[name] = Path(path)
    return out


@app.command("build-dataset", epilog=EPILOG)
def build_dataset(
    paths: Annotated[list[Path], typer.Argument(help="SRC [SRC ...] OUT: source folders, then the output folder.", show_default=False)],
    per_class: Annotated[str, typer.Option(help="Down-sample each class to N images ('all': natural counts).")] = "all",
    split: Annotated[str, typer.Option(help="Train/val/test percentages (with --test-source only train:val counts).")] = "70/15/15",
    seed: Annotated[int, typer.Option(help="Seed for sampling and splitting.")] = 0,
    workers: Annotated[Optional[int], typer.Option(help="Decoding processes (default: all cores).")] = None,
    executor: Annotated[str, typer.Option(
        help="Where images are decoded and hashed: local (--workers processes here), dask://HOST:PORT "
        "(a Dask scheduler; workers must see SRC at the same paths) or dask-local (a Dask cluster of "
        "--workers processes here), e.g. --executor dask://10.0.0.5:8786.", metavar="WHERE")] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Analyse and report; write nothing.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty OUT.")] = False,
    mode: Annotated[str, typer.Option(help="How images are written: copy, hardlink or png.")] = "copy",
    png_size: Annotated[Optional[int], typer.Option(help="With --mode png: longest side in pixels.")] = None,
    even_sources: Annotated[bool, typer.Option("--even-sources", help="Draw evenly across sources within a class.")] = False,
    hash_name: Annotated[str, typer.Option("--hash", help="Perceptual hash: phash, dhash, ahash, whash.")] = "phash",
    hash_size: Annotated[int, typer.Option(help="Hash side (bits = side^2). 16 separates look-alike X-rays; 8 does not.")] = 16,
    radius: Annotated[Optional[int], typer.Option(help="Near-duplicate Hamming radius in bits (default: 1/8 of the bits, 32 of 256).")] = None,
    min_size: Annotated[int, typer.Option(help="Exclude images whose shorter side is below this (px).")] = 64,
    min_mean: Annotated[float, typer.Option(help="Under-exposed below this mean brightness (0-1).")] = 0.12,
    max_mean: Annotated[float, typer.Option(help="Over-exposed above this mean brightness (0-1).")] = 0.84,
    max_dark: Annotated[float, typer.Option(help="Under-exposed above this fraction of near-black pixels.")] = 0.75,
    max_bright: Annotated[float, typer.Option(help="Over-exposed above this fraction of near-white pixels.")] = 0.60,
    min_contrast: Annotated[float, typer.Option(help="Low contrast below this 99th-1st percentile spread (0-1).")] = 0.25,
    min_entropy: Annotated[float, typer.Option(help="Near blank below this histogram entropy (bits).")] = 3.0,
    label_map: Annotated[Optional[Path], typer.Option(help="JSON or CSV mapping folder names to covid/pneumonia/normal/exclude.")] = None,
    labels_csv: Annotated[list[str], typer.Option(help="SOURCE=FILE.csv with columns file,label[,patient] (repeatable).")] = [],
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Write sample sheets and histograms.")] = True,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="Shortcut audit: can a linear probe tell the source from the image, its border, its file properties? Example: --no-audit to skip it.")] = True,
    test_source: Annotated[list[str], typer.Option(
        help="Hold out source NAME, or one CLASS of it, as an external test split (repeatable), "
        "e.g. COVID-19_Radiography_Dataset:normal.", metavar="NAME[:CLASS]")] = [],
    allow_missing_class: Annotated[bool, typer.Option(
        "--allow-missing-class", help="With --test-source: build even when a class is left with no training images.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout instead of the dataset path.")] = False,
) -> None:
    """Merge CXR sources into one clean, de-duplicated, balanced, leak-free dataset."""
    from ..build import BuildOptions, Thresholds
    from ..build import build_dataset as build
    from ..build.executors import LOCAL, dask_client, parse_executor
    from ..build.pipeline import check_paths
    from ..build.split import parse_split
    from ..build.types import COPY_MODES

    if len(paths) < 2:
        raise UsageError("give at least one SRC folder and the OUT folder")
    if mode not in COPY_MODES:
        raise UsageError(f"--mode {mode!r}: choose one of {', '.join(COPY_MODES)}")
    *srcs, out = paths
    where = parse_executor(executor)
    options = BuildOptions(
        per_class=_per_class(per_class),
        split=parse_split(split),
        seed=seed,
        workers=workers,
        dry_run=dry_run,
        overwrite=overwrite,
        mode=mode,
        png_size=png_size,
        even_sources=even_sources,
        hash_name=hash_name,
        hash_size=hash_size,
        radius=radius,
        thresholds=Thresholds(
            min_size=min_size, max_mean=max_mean, max_bright_frac=max_bright, min_mean=min_mean,
            max_dark_frac=max_dark, min_contrast=min_contrast, min_entropy=min_entropy,
        ),
        label_map=label_map,
        labels_csv=_labels_csv(labels_csv),
        figures=figures,
        audit=audit,
        test_sources=tuple(test_source),
        allow_missing_class=allow_missing_class,
    )
    # one build per OUT at a time (a dry run writes nothing)
    check_paths([Path(s) for s in srcs], Path(out), overwrite, dry_run)  # before the lock file: never in a SRC
    # a Dask cluster is reached (and its workers checked) before the sources are scanned
    cluster = contextlib.nullcontext(LOCAL) if where.kind == LOCAL else dask_client(where, workers, visible=srcs)
    with cluster as runner, contextlib.nullcontext() if dry_run else hold(out), progress() as bar:
        options = dataclasses.replace(options, executor=runner)
        tasks: dict[str, int] = {}

        def on_event(event: dict) -> None:
            stage = event["stage"]
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=event["total"])
            bar.update(tasks[stage], completed=event["done"])

        result = build(srcs, out, options, progress=on_event)
    render_summary(result.report)
    with reader_may_leave():  # `--json | head`: the dataset is written; a closed pipe is no error
        if as_json:
            typer.echo(json.dumps(result.report, indent=2))
        elif not dry_run:
            typer.echo(str(out))


def render_summary(report: dict) -> None:
    """The human summary of a build report on stderr (rich tables, then warnings)."""
    table = Table(title="Kept images per source and class")
    table.add_column("source")
    for c in CLASSES:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right")
    before = report["counts_before"]
    for src, values in report["counts_after"].items():
        table.add_row(src, *[f"{values[c]} / {before[src][c]}" for c in CLASSES], str(sum(values.values())))
    err.print(table)
    split_table = Table(title="Per split")
    split_table.add_column("split")
    for c in CLASSES:
        split_table.add_column(c, justify="right")
    for split, values in report["counts_per_split"].items():
        split_table.add_row(split, *[str(values[c]) for c in CLASSES])
    err.print(split_table)
    excl = Table(title="Excluded")
    excl.add_column("reason")
    excl.add_column("images", justify="right")
    for k, v in report["excluded_by_reason"].items():
        excl.add_row(k, str(v))
    for k, v in report["unlabelled_by_reason"].items():
        excl.add_row(f"no label: {k}", str(v))
    excl.add_row("junk (not images)", str(report["junk_skipped"]))
    err.print(excl)
    d, leak = report["duplicates"], report["leak_check"]
    err.print(
        f"duplicates: {d['images_dropped_as_duplicates']} dropped, {d['duplicate_pairs_across_sources']} cross-source pairs, "
        f"{len(d['label_conflicts'])} label conflicts; near-duplicate pairs across splits: "
        f"{leak['near_duplicate_pairs_across_splits']}, patients across splits: {leak['patients_across_splits']}"
    )
    render_audit(report.get("audit"))
    ext = report.get("external_test")
    if ext:
        dropped = sum(ext["pool_images_dropped_per_source"].values())
        err.print(
            f"external test split (held out): {', '.join(f'{k} {v} images' for k, v in ext['test_images_per_held_out'].items())}; "
            f"{dropped} images sharing a group with it dropped from train/val; held-out images dropped because another source has a copy: "
            f"{', '.join(f'{k} {v}' for k, v in ext['test_copies_dropped'].items()) or 'none'}; held-out clusters, patients, groups in "
            f"train/val: {leak['held_out_clusters_in_train_val']}, {leak['held_out_patients_in_train_val']}, "
            f"{leak['held_out_groups_in_train_val']}"
        )
    for w in report["warnings"]:
        warn(f"[bold red]{escape(w)}[/bold red]" if w.startswith("SHORTCUT") else escape(w))


def render_audit(audit: dict | None) -> None:
    """The shortcut audit as a table on stderr (nothing when it was turned off or skipped)."""
    from ..build.report import PROBE_TITLES

    if not audit or "skipped" in audit:
        return
    table = Table(title=f"Shortcut audit ({audit['sampled']} images; border = outer {audit['border_px']} of {audit['thumbnail']} px)")
    for col in ("predict", "from", "score", "chance", "verdict"):
        table.add_column(col, justify="right" if col in ("score", "chance") else "left")
    for (group, name), title in PROBE_TITLES.items():
        p = audit.get(group, {}).get(name)
        if p:
            target, _, source = title.partition(" from ")
            table.add_row(target, source, f"{p['balanced_accuracy']:.3f}", f"{p['chance']:.3f}", p["verdict"])
    f = audit["label_vs_source"]
    table.add_row("label", "the source alone", f"{f['source_only_accuracy']:.3f}", f"{f['majority_rate']:.3f}",
                  "follows the source" if f["follows_source"] else "does not follow")
    err.print(table)
