"""The build-dataset report as data: the dict written to ``report.json`` (counts, exclusions,
duplicates, leak check, metric distributions, warnings) and its ``report.md`` text. Warns when
a class comes mostly from one source. Writing it is :mod:`cxrtool.build.write`'s job and the
terminal summary is the CLI's."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..labels import CLASSES
from ..version import __version__
from ..manifest import SPLITS
from .holdout import pool_fractions
from .quality import METRICS, reason_key
from .types import BuildResult

#: A class drawn from one source at this fraction or more gets a shortcut warning (with 2+ sources).
DOMINANT_SOURCE = 0.8


def _table(counter: Counter, rows: list[str], cols: list[str]) -> dict[str, dict[str, int]]:
    return {r: {c: int(counter.get((r, c), 0)) for c in cols} for r in rows}


def population_counts(learned: Counter, scans: list) -> dict[str, dict[str, int]]:
    """Training images (train and val) per class and patient population of their source."""
    population = {s.name: s.population for s in scans}
    out: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
    for (source, label), n in learned.items():
        row = out[label]
        row[population[source]] = row.get(population[source], 0) + n
    return {c: dict(sorted(row.items())) for c, row in out.items()}


def population_warnings(populations: dict[str, dict[str, int]]) -> list[str]:
    """The loud line when a class is learned (almost) only from children while another class is
    not: the model can then tell age instead of disease, and it has never seen the class in adults."""
    share = {c: row.get("pediatric", 0) / sum(row.values()) for c, row in populations.items() if sum(row.values())}
    out = []
    for label, p in share.items():
        if p >= DOMINANT_SOURCE and any(q < 1 - DOMINANT_SOURCE for c, q in share.items() if c != label):
            out.append(
                f"POPULATION: {p:.0%} of {label} training images are pediatric while other classes are mostly not: "
                f"the model has (almost) never seen {label} in adults and cannot be expected to recognise it there "
                "(it may learn age instead of disease); test it on adult images before any use on adults"
            )
    return out


def build_report(
    result: BuildResult, dup_stats: dict, balance_stats: dict, leak: dict, audit: dict | None = None,
    held_stats: dict | None = None,
) -> dict:
    """The report of a build (``report.json``) from its result and the statistics its steps returned
    (``audit``: the shortcut audit of :mod:`cxrtool.build.audit`, None when turned off;
    ``held_stats``: those of an external test split, see :mod:`cxrtool.build.holdout`)."""
    opts = result.options
    table = result.table
    kept = table.reason == 0
    sources = [s.name for s in result.scans]
    before = _pairs(table, np.ones(len(table), bool))
    after = _pairs(table, kept)
    test = kept & (table.split == 1 + SPLITS.index("test"))
    # with an external test, source dominance matters where the model learns: train and val
    learned = _pairs(table, kept & ~test) if held_stats else after
    per_split = Counter()
    for s, k in zip(*np.unique(table.split[kept].astype(np.int64) * 8 + table.label[kept], return_counts=True)):
        per_split[(SPLITS[s // 8 - 1] if s // 8 else "", CLASSES[s % 8])] += int(k)
    excluded = Counter()
    for code, k in zip(*np.unique(table.reason[~kept], return_counts=True)):
        excluded[reason_key(table.reasons[int(code)])] += int(k)
    unlabelled = Counter(
        s.reasons.get(i, "") for s in result.scans for i in np.flatnonzero(np.frombuffer(bytes(s.labels), np.uint8) == 0).tolist()
    )
    warnings = []
    for label in CLASSES:
        total = sum(learned.get((s, label), 0) for s in sources)
        if total == 0:
            warnings.append(f"class {label} has no {'training ' if held_stats else ''}images")
            continue
        top = max(sources, key=lambda s: learned.get((s, label), 0))
        share = learned.get((top, label), 0) / total
        if share >= DOMINANT_SOURCE and len(sources) > 1:
            warnings.append(
                f"{share:.0%} of {label} {'training ' if held_stats else ''}images come from {top}: "
                "a model may learn the source instead of the disease"
            )
    populations = population_counts(learned, result.scans)
    warnings += population_warnings(populations)
    if held_stats and held_stats["classes_without_training_images"]:
        warnings.append(
            f"NO TRAINING IMAGES of {', '.join(held_stats['classes_without_training_images'])} once the test source "
            "is held out: the model cannot predict that class, so its held-out images are all misclassified by design"
        )
    for label, n in balance_stats.get("classes_below_target", {}).items():
        warnings.append(f"class {label} has only {n} images, fewer than --per-class {opts.per_class}: kept all")
    if leak["near_duplicate_pairs_across_splits"] or leak["patients_across_splits"]:
        warnings.append("LEAK: near duplicates or patients cross splits")
    if audit and audit.get("warning"):
        warnings.insert(0, audit["warning"])
    if any(v for k, v in leak.items() if k.startswith("held_out_")):
        warnings.append("LEAK: held-out test images, clusters, patients or groups reach train/val")
    metrics = table.quality[table.has_quality] if table.has_quality.any() else np.zeros((0, 0))
    distributions = {
        m: (
            {q: float(np.percentile(metrics[:, i], q)) for q in (0, 1, 5, 25, 50, 75, 95, 99, 100)}
            if len(metrics)
            else {}
        )
        for i, m in enumerate(METRICS)
    }
    return {
        "cxrtool_version": __version__,
        "classes": list(CLASSES),
        "options": {
            "per_class": opts.per_class,
            "split": list(opts.split),
            "seed": opts.seed,
            "mode": opts.mode,
            "hash": opts.hash_name,
            "hash_size": opts.hash_size,
            "radius": opts.hash_radius(),
            "even_sources": opts.even_sources,
            "dry_run": opts.dry_run,
            "test_sources": list(opts.test_sources),
        },
        "thresholds": opts.thresholds.as_dict(),
        "sources": [
            {"name": s.name, "kind": s.kind, "population": s.population, "root": str(s.root),
             "files": s.n_files, "junk": dict(s.junk)}
            for s in result.scans
        ],
        "counts_before": _table(before, sources, list(CLASSES)),
        "counts_after": _table(after, sources, list(CLASSES)),
        "counts_per_split": _table(per_split, list(SPLITS), list(CLASSES)),
        "training_populations": populations,
        "total_kept": int(kept.sum()),
        "excluded_by_reason": dict(sorted(excluded.items())),
        "unlabelled_by_reason": dict(sorted(unlabelled.items())),
        "junk_skipped": sum(sum(s.junk.values()) for s in result.scans),
        "duplicates": dup_stats,
        "balance": balance_stats,
        "leak_check": leak,
        "external_test": external_test(held_stats, _pairs(table, test), sources, opts.split) if held_stats else None,
        "quality_distributions": distributions,
        "audit": audit,
        "warnings": warnings,
    }


def _pairs(table, mask: np.ndarray) -> Counter:  # noqa: ANN001 - a CandidateTable
    """Images per (source, class) among the rows where MASK holds."""
    pairs = table.source[mask].astype(np.int64) * 8 + table.label[mask]
    values, counts = np.unique(pairs, return_counts=True)
    return Counter({(table.source_names[v // 8], CLASSES[v % 8]): int(k) for v, k in zip(values.tolist(), counts.tolist())})


def external_test(held_stats: dict, test: Counter, sources: list[str], split: tuple[float, float, float]) -> dict:
    """The ``external_test`` section: what was held out, what the test holds (images per
    (source, class) in TEST), how the pool was split."""
    return {
        **held_stats,
        "counts": {s: row for s, row in _table(test, sources, list(CLASSES)).items() if sum(row.values())},
        "pool_split": list(pool_fractions(split)[:2]),
        "notes": [
            "the test split is the held-out source[:class] alone; --split's test share is not used, "
            "train and val keep its train:val ratio",
            "--per-class balances train/val only; the held-out test is kept whole (its size costs only inference)",
        ],
    }


def _md_table(title: str, table: dict[str, dict[str, int]]) -> list[str]:
    cols = list(next(iter(table.values())).keys()) if table else list(CLASSES)
    lines = [f"| {title} | " + " | ".join(cols) + " | total |", "|---" * (len(cols) + 2) + "|"]
    for row, values in table.items():
        lines.append(f"| {row} | " + " | ".join(str(values[c]) for c in cols) + f" | {sum(values.values())} |")
    totals = [sum(v[c] for v in table.values()) for c in cols]
    lines.append("| **total** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return lines


def markdown(report: dict) -> str:
    """``report.md``: the report for people, with the figures linked."""
    o = report["options"]
    lines = [
        "# cxrtool dataset report",
        "",
        f"cxrtool {report['cxrtool_version']}; split {'/'.join(f'{x:.0%}' for x in o['split'])}, seed {o['seed']}, "
        f"per class {o['per_class'] or 'all (natural counts)'}, {o['hash']} hash size {o['hash_size']}, radius {o['radius']} bits.",
        "",
    ]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    ext = report.get("external_test")
    if ext:
        lines += [
            "## External test split",
            "",
            f"The test split is held out: {', '.join(ext['held_out'])}. None of its images, duplicate clusters, "
            f"patients or groups is in train or val (leak check below); train/val split "
            f"{ext['pool_split'][0]:.0%}/{ext['pool_split'][1]:.0%}.",
            "",
        ]
        lines += [f"- {note}" for note in ext["notes"]]
        dropped = ext["pool_images_dropped_per_source"]
        lines += [f"- images dropped from train/val because their group touches the test: "
                  f"{sum(dropped.values())} ({', '.join(f'{k}: {v}' for k, v in dropped.items()) or 'none'})"]
        copies = ext["test_copies_dropped"]
        lines += [f"- held-out images dropped because a training source has a copy (external to neither): "
                  f"{', '.join(f'{k}: {v}' for k, v in copies.items()) or 'none'}", ""]
        lines += _md_table("test source", ext["counts"]) + [""]
    lines += ["## Sources", "", "| source | recognised as | files | junk skipped |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['kind']} | {s['files']} | {sum(s['junk'].values())} |" for s in report["sources"]]
    lines += ["", "## Images per source and class, before quality control and de-duplication", ""]
    lines += _md_table("source", report["counts_before"])
    lines += ["", "## Kept images per source and class", ""] + _md_table("source", report["counts_after"])
    lines += ["", "## Kept images per split and class", ""] + _md_table("split", report["counts_per_split"])
    lines += ["", "## Exclusions", "", "| reason | images |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["excluded_by_reason"].items()]
    lines += [f"| no label: {k} | {v} |" for k, v in report["unlabelled_by_reason"].items()]
    lines += [f"| junk (not images) | {report['junk_skipped']} |"]
    d = report["duplicates"]
    lines += [
        "",
        "## Duplicates",
        "",
        f"- image pairs whose hashes are within {o['radius']} bits: {d['hash_pairs_within_radius']}",
        f"- images with the same bytes or pixels as another: {d['exact_duplicate_images']}",
        f"- clusters with duplicates: {d['clusters_with_duplicates']} ({d['clusters_across_sources']} spanning sources; "
        f"largest: {d['largest_cluster']} images)",
        f"- duplicate pairs (same cluster): {d['duplicate_pairs_within_source']} within a source, "
        f"{d['duplicate_pairs_across_sources']} across sources",
        f"- images dropped as duplicates: {d['images_dropped_as_duplicates']}",
        f"- label conflicts (clusters dropped whole): {len(d['label_conflicts'])}",
    ]
    for conflict in d["label_conflicts"][:20]:
        lines.append(f"  - {' vs '.join(conflict['labels'])}: {', '.join(conflict['members'][:4])}")
    leak = report["leak_check"]
    lines += [
        "",
        "## Leak check after splitting (all must be 0)",
        "",
        f"- near-duplicate pairs across splits: {leak['near_duplicate_pairs_across_splits']}",
        f"- patients in more than one split: {leak['patients_across_splits']}",
        f"- groups in more than one split: {leak['groups_across_splits']}",
        *[f"- {k.replace('_', ' ')}: {v}" for k, v in leak.items() if k.startswith("held_out_")],
        "",
        "## Exposure metrics and thresholds",
        "",
        "| metric | p1 | p5 | median | p95 | p99 |",
        "|---|---|---|---|---|---|",
    ]
    for m, dist in report["quality_distributions"].items():
        if dist:
            lines.append(f"| {m} | {dist[1]:.3f} | {dist[5]:.3f} | {dist[50]:.3f} | {dist[95]:.3f} | {dist[99]:.3f} |")
    lines += ["", "Thresholds: " + ", ".join(f"{k} = {v}" for k, v in report["thresholds"].items()), ""]
    lines += audit_markdown(report.get("audit"))
    lines += [
        "## Figures",
        "",
        "![kept samples](samples.png)",
        "",
        "![excluded samples](excluded.png)",
        "",
        "![exposure metrics](exposure.png)",
        "",
    ]
    return "\n".join(lines)


#: Row titles of the audit's probes in report.md (and the CLI table).
PROBE_TITLES = {
    ("source_probes", "whole_image"): "source from the whole image",
    ("source_probes", "border"): "source from the border alone",
    ("source_probes", "file_properties"): "source from file properties",
    ("label_probes", "border"): "label from the border alone",
}


def audit_markdown(audit: dict | None) -> list[str]:
    """The "Shortcut audit" section of report.md (see docs/build-dataset.md for how to read it)."""
    lines = ["## Shortcut audit", ""]
    if audit is None:
        return lines + ["Not run (--no-audit).", ""]
    if "skipped" in audit:
        return lines + [f"Skipped: {audit['skipped']}.", ""]
    if audit["warning"]:
        lines += [f"**{audit['warning']}**", ""]
    lines += [
        f"Linear probes on {audit['sampled']} of {audit['images']} kept images ({audit['probe']}); "
        f"{audit['thumbnail']}x{audit['thumbnail']} thumbnails, border = {audit['border']}.",
        "",
        "| probe | balanced accuracy | chance | majority rate | skill | verdict | recall per source or class |",
        "|---|---|---|---|---|---|---|",
    ]
    for (group, name), title in PROBE_TITLES.items():
        p = audit.get(group, {}).get(name)
        if p:
            recall = ", ".join(f"{k} {v:.2f}" for k, v in p["recall"].items())
            lines.append(
                f"| {title} | {p['balanced_accuracy']:.3f} | {p['chance']:.3f} | {p['majority_rate']:.3f} | "
                f"{p['skill']:.2f} | {p['verdict']} | {recall} |"
            )
    f = audit["label_vs_source"]
    lines += [
        "",
        "Label from the source alone"
        + (f" ({audit['label_images']})" if audit.get("label_images") else "")
        + f" (each source's most common class): accuracy {f['source_only_accuracy']:.3f} "
        f"vs majority rate {f['majority_rate']:.3f} (removes {f['lift']:.0%} of the errors); normalised mutual "
        f"information {f['normalised_mutual_information']:.3f}, Cramér's V {f['cramers_v']:.3f}"
        + (": the label follows the source." if f["follows_source"] else "."),
        "",
        "| class | dominant source | share |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {v['dominant_source']} | {v['share']:.0%} |" for c, v in f["per_class"].items()]
    return lines + [""]
