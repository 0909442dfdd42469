"""``cxrtool build-dataset`` end to end at 10k, 100k, ... images: wall time, images/s and peak RSS.

Three steps, so that a big tree is generated once and every size reuses it:

    python benchmarks/build_scale.py tree ROOT --images 100000       # generate (resumable)
    python benchmarks/build_scale.py run ROOT --images 10000 30000 100000 --json scale.json
    python benchmarks/build_scale.py figure scale.json --out docs/img/build-scale.png

**The tree.** ``ROOT/srcNN/<class>/`` folders of CHUNK (10,000) images each, so the first
k chunks are the k * 10,000-image input (``build-dataset ROOT/src00 ... ROOT/srcK-1 OUT``): the
100k tree contains the 10k one. Every image is a phantom chest X-ray (``cxrtool.synthetic``) at a
realistic size and format, mixed like the large public sources: 35 % 1024 px PNG (ChestX-ray14),
35 % 512-1024 px JPEG quality 90 (CheXpert / MIMIC-CXR-JPG style, non-square), 30 % 256-299 px PNG
(the COVID-19 Radiography Database). Rendering a distinct 1024 px phantom takes ~0.25 s, too slow
for 10^5 images on two cores, so each image is one of 3 x 512 base phantoms (rendered once at 256 px),
resized to its size, with a per-image random smooth field (a 6 x 6 grid of +-40 grey levels,
bicubic up-sampled) and pixel noise added: every image then has its own perceptual hash. 1 % of the
images are near copies of an earlier image of the same chunk (resized to another size and
re-encoded), so de-duplication has clusters to resolve. PNGs are written with zlib level 1 (fast
to write; decoding cost is the same).

**The run.** ``cxrtool build-dataset SRC... OUT`` with default options (phash 16, radius 32,
all cores, copy mode, figures and audit on), as a subprocess; psutil polls every 0.2 s the RSS of
the main process and of all its children (the analysis pool) and records the peak of the sum
and of the main process alone. OUT is deleted after each size.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CHUNK = 10_000
BASES = 512
CLASSES = ("normal", "pneumonia", "covid")


# ---------------------------------------------------------------- tree


def _bases() -> dict[str, list[np.ndarray]]:
    from cxrtool.synthetic.phantoms import make_phantom

    return {c: [make_phantom(c, 1000 + k, 256) for k in range(BASES)] for c in CLASSES}


_BASE_CACHE: dict[str, list[np.ndarray]] = {}


def _render(label: str, index: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if not _BASE_CACHE:
        _BASE_CACHE.update(_bases())
    base = _BASE_CACHE[label][index % BASES].astype(np.float32)
    field = rng.uniform(-40, 40, (6, 6)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(field, mode="F").resize((256, 256), Image.Resampling.BICUBIC))
    arr = np.clip(base + smooth + rng.normal(0, 4, base.shape).astype(np.float32), 0, 255).astype(np.uint8)
    h, w = size
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR))


def _kind(rng: np.random.Generator) -> tuple[str, tuple[int, int]]:
    u = rng.random()
    if u < 0.35:
        return "png", (1024, 1024)
    if u < 0.70:
        side = int(rng.integers(512, 1025))
        return "jpeg", (side, int(side * rng.uniform(0.8, 1.2)))
    side = int(rng.integers(256, 300))
    return "png", (side, side)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    else:
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_chunk(root: Path, chunk: int) -> int:
    """Write ``root/srcNN`` (CHUNK images); a ``.done`` marker makes it resumable."""
    folder = root / f"src{chunk:02d}"
    done = root / f"src{chunk:02d}.done"
    if done.exists():
        return 0
    rng = np.random.default_rng(1_000_003 * (chunk + 1))
    written: list[tuple[str, int, np.random.Generator]] = []
    for i in range(CHUNK):
        label = CLASSES[int(rng.integers(0, 3))]
        fmt, size = _kind(rng)
        if written and rng.random() < 0.01:  # a near copy of an earlier image of this chunk
            j = int(rng.integers(0, len(written)))
            src_label, src_index, seed = written[j]
            arr = _render(src_label, src_index, np.random.default_rng(seed), size)
            label, index, seed = src_label, src_index, seed
        else:
            index, seed = int(rng.integers(0, 1 << 30)), int(rng.integers(0, 1 << 62))
            arr = _render(label, index, np.random.default_rng(seed), size)
            written.append((label, index, seed))
        d = folder / label
        d.mkdir(parents=True, exist_ok=True)
        (d / f"img{chunk:02d}_{i:05d}.{'png' if fmt == 'png' else 'jpg'}").write_bytes(_encode(arr, fmt))
    done.write_text("ok\n")
    return CHUNK


def make_tree(root: Path, images: int, workers: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    chunks = -(-images // CHUNK)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for k, n in zip(range(chunks), pool.map(write_chunk, [root] * chunks, range(chunks))):
            print(f"chunk {k}: {n} images written ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- stub: a million files without decoding them


def make_stub_tree(root: Path, images: int) -> None:
    """``root/srcNN/<class>/`` with empty ``.png`` files (CHUNK per source), for ``run --stub``."""
    for chunk in range(-(-images // CHUNK)):
        done = root / f"src{chunk:02d}.done"
        if done.exists():
            continue
        for label in CLASSES:
            (root / f"src{chunk:02d}" / label).mkdir(parents=True, exist_ok=True)
        for i in range(CHUNK):
            (root / f"src{chunk:02d}" / CLASSES[i % 3] / f"img{chunk:02d}_{i:05d}.png").touch()
        done.write_text("ok\n")


def stub_analyse_files(paths, hash_name, hash_size, workers, progress=None):  # noqa: ANN001 - analyse_files' signature
    """Stand-in for ``cxrtool.build.analyse.analyse_files`` in ``run --stub``: what decoding
    would return for each path, derived from the path alone (no file is read), vectorised per
    call: SHA-256s of the path, a random 256-bit weight-128 hash (1 % of images are near copies
    of the image 7 before them: 3 set bits swapped with 3 clear ones), sizes, exposure metrics
    and a 1 KiB thumbnail, all as the real analysis returns them (same types and lengths)."""
    import hashlib

    from cxrtool.build.quality import Quality
    from cxrtool.build.types import Analysis
    from cxrtool.progress import report

    n = len(paths)
    digests = [hashlib.sha256(str(p).encode()).digest() for p in paths]
    rng = np.random.default_rng(int.from_bytes(digests[0][:8], "little") if n else 0)
    bits = np.zeros((n, 256), dtype=bool)
    for lo in range(0, n, 20_000):  # bounded temporaries, whatever n the caller passes
        bits[lo : lo + 20_000] = np.argsort(rng.random((min(20_000, n - lo), 256)), axis=1) < 128  # weight 128, like pHash
    copies = np.flatnonzero(rng.random(n) < 0.01)
    copies = copies[copies >= 7]
    for k in copies:
        row = bits[k - 7].copy()
        on, off = np.flatnonzero(row), np.flatnonzero(~row)
        row[rng.choice(on, 3, replace=False)] = False
        row[rng.choice(off, 3, replace=False)] = True
        bits[k] = row
    hashes = np.packbits(bits, axis=1)
    sides = rng.integers(256, 1025, n)
    metrics = rng.uniform([0.3, 0, 0, 0.5, 6], [0.7, 0.05, 0.05, 0.9, 7.9], (n, 5))
    sizes = rng.integers(20_000, 600_000, n)
    thumbs = rng.integers(0, 256, (n, 1024), dtype=np.uint8)
    out = []
    for k, digest in enumerate(digests):
        out.append(
            Analysis(
                sha256=digest.hex(),
                pixel_sha=hashlib.sha256(digest).hexdigest(),
                hash=hashes[k].tobytes().hex(),
                width=int(sides[k]),
                height=int(sides[k]),
                quality=Quality(*metrics[k].tolist()),
                format="PNG",
                mode="L",
                bits=8,
                file_size=int(sizes[k]),
                thumb=thumbs[k].tobytes(),
            )
        )
        report(progress, "analyse", k + 1, n)
    return out


def _stub_main(argv: list[str]) -> int:
    """``build-dataset`` in this process with analysis stubbed (see ``run --stub``); the
    environment's CXRTOOL_CODE (``run --code``) names another checkout's cxrtool to run."""
    if os.environ.get("CXRTOOL_CODE"):
        sys.path.insert(0, os.environ["CXRTOOL_CODE"])
    import cxrtool.build.executors as executors
    from cxrtool.cli import run

    executors.analyse_files = stub_analyse_files  # the local path of executors.analyse_with
    sys.argv = ["cxrtool", "build-dataset", *argv]
    run()
    return 0


# ---------------------------------------------------------------- run


def _tree_rss(proc) -> tuple[int, int, int]:
    """(RSS of the process plus all its descendants, RSS of the process alone, PSS of all), bytes.

    Forked pool workers share the parent's pages until written, and RSS counts a shared page in
    every process that maps it: the RSS sum is an upper bound, the PSS sum (shared pages split
    between their users) what the tree really holds."""
    import psutil

    total = main = pss = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    for k, p in enumerate(procs):
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        total += info.rss
        pss += getattr(info, "pss", info.rss)
        if k == 0:
            main = info.rss
    return total, main, pss


def run_build(root: Path, images: int, out: Path, extra: list[str], stub: bool = False, code: Path | None = None) -> dict:
    import psutil

    srcs = [str(root / f"src{k:02d}") for k in range(-(-images // CHUNK))]
    if out.exists():
        shutil.rmtree(out)
    if stub:
        cmd = [sys.executable, os.path.abspath(__file__), "_stub", *srcs, str(out), *extra]
    else:
        cmd = [sys.executable, "-m", "cxrtool", "build-dataset", *srcs, str(out), *extra]
    load0 = os.getloadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = dict(os.environ)
    if code is not None:  # another checkout's cxrtool (e.g. the commit before a change)
        env["CXRTOOL_CODE"] = str(code.resolve())
        env["PYTHONPATH"] = str(code.resolve())
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    ps = psutil.Process(proc.pid)
    peak_tree = peak_main = peak_pss = 0
    while proc.poll() is None:
        total, main, pss = _tree_rss(ps)
        peak_tree, peak_main, peak_pss = max(peak_tree, total), max(peak_main, main), max(peak_pss, pss)
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read() if proc.stderr else ""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # this build only: children reaped since ru0
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    report = {}
    if (out / "report.json").exists():
        report = json.loads((out / "report.json").read_text())
    row = {
        "images": images,
        "stub": stub,
        "sources": len(srcs),
        "returncode": proc.returncode,
        "wall_s": wall,
        "images_per_s": images / wall,
        "peak_rss_tree_mib": peak_tree / 2**20,
        "peak_rss_main_mib": peak_main / 2**20,
        "peak_pss_tree_mib": peak_pss / 2**20,
        "cpu_s": cpu,
        "kept": report.get("total_kept"),
        "dropped_duplicates": (report.get("duplicates") or {}).get("images_dropped_as_duplicates"),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "before": code is not None,
        "code": str(code) if code is not None else "",
        "command": " ".join(["cxrtool", "build-dataset", srcs[0] + (f" ... {srcs[-1]}" if len(srcs) > 1 else ""), str(out), *extra]),
    }
    if proc.returncode:
        row["stderr_tail"] = stderr[-2000:]
    shutil.rmtree(out, ignore_errors=True)
    return row


# ---------------------------------------------------------------- figure


def _series(r: dict) -> str:
    """A row's legend label: its ``series`` field, else its kind."""
    if r.get("series"):
        return r["series"]
    kind = "analysis stubbed (no decoding)" if r.get("stub") else "phantom images (decoded)"
    return kind + (", before the change" if r.get("before") else "")


def figure(rows: list[dict], out: Path, target_images: int = 1_000_000) -> None:
    """Time and peak memory against image count (log-log), one line per series (a row's
    ``series`` field, else stub or not and ``before``). Rows measured on the code before a change
    (``before``) are drawn in memory only (their wall times were taken at other loads), with
    their last per-image slope extended to ``target_images``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if not r.get("returncode"):
            groups.setdefault(_series(r), []).append(r)
    styles = iter([("o", "C0"), ("s", "C1"), ("^", "C2"), ("v", "C4"), ("D", "C5")])
    before_styles = iter([("x", "0.35"), ("+", "0.6")])
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["images"])
        marker, colour = next(before_styles if rs[0].get("before") else styles)
        n = np.array([r["images"] for r in rs], float)
        mem = np.array([r["peak_rss_tree_mib"] for r in rs])
        before = bool(rs[0].get("before"))
        ax2.loglog(n, mem, marker + ("--" if before else "-"), color=colour, label=label)
        if before:
            if len(rs) >= 2 and n[-1] < target_images:
                slope = (mem[-1] - mem[-2]) / (n[-1] - n[-2])
                ext = np.array([n[-1], target_images])
                ax2.loglog(ext, mem[-1] + slope * (ext - n[-1]), ":", color=colour,
                           label=f"  its last slope ({slope * 2**20 / 1024:.1f} KiB/image) extended")
            continue
        ax1.loglog(n, [r["wall_s"] for r in rs], marker + "-", color=colour, label=label + ": wall")
        ax1.loglog(n, [r["cpu_s"] for r in rs], marker + ":", color=colour, alpha=0.7, label=label + ": CPU")
    ax2.axhline(2048, color="red", lw=1, label="2 GB target")
    ax1.set_xlabel("images")
    ax1.set_ylabel("seconds (wall: solid; CPU: dotted)")
    ax1.set_title("build-dataset end to end: time (loaded 2-core VM)", fontsize=10)
    ax2.set_xlabel("images")
    ax2.set_ylabel("peak RSS, all processes (MiB)")
    ax2.set_title("build-dataset end to end: peak memory", fontsize=10)
    low, high = ax1.get_ylim()
    ax1.set_ylim(low, high * 30)  # headroom: the legend sits above the lines
    for ax, where in ((ax1, "upper right"), (ax2, "upper left")):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc=where)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def table(rows: list[dict]) -> str:
    """The markdown table of docs/benchmarks.md."""
    lines = [
        "| input | images | wall (s) | images/s | CPU (s), all processes | peak RSS all processes (MiB) | main process (MiB) | PSS all (MiB) | kept | dropped as duplicates | load average start / end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (bool(r.get("stub")), bool(r.get("before")), r["images"])):
        kind = _series(r)
        lines.append(
            f"| {kind} | {r['images']:,} | {r['wall_s']:.0f} | {r['images_per_s']:.0f} | {r['cpu_s']:.1f} "
            f"| {r['peak_rss_tree_mib']:.0f} | {r['peak_rss_main_mib']:.0f} | {r['peak_pss_tree_mib']:.0f} "
            f"| {r['kept']:,} | {r['dropped_duplicates']:,} | {r['loadavg_start'][0]:.1f} / {r['loadavg_end'][0]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    t = sub.add_parser("tree", help="generate ROOT/srcNN chunks (resumable)")
    t.add_argument("root", type=Path)
    t.add_argument("--images", type=int, default=100_000)
    t.add_argument("--workers", type=int, default=2)
    r = sub.add_parser("run", help="build-dataset at each size, measure time and peak RSS")
    r.add_argument("root", type=Path)
    r.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000])
    r.add_argument("--out", type=Path, default=None, help="build output (deleted after each size); default ROOT/../out")
    r.add_argument("--json", type=Path, help="append rows to this JSON file")
    r.add_argument("--stub", action="store_true", help="empty files and analysis stubbed (a tree from `stub`)")
    r.add_argument("--code", type=Path, default=None,
                   help="run another checkout's cxrtool (e.g. `git archive` of the commit before a change, unpacked): "
                        "its rows are marked before=true and drawn as such")
    r.add_argument("extra", nargs="*", help="extra build-dataset options (after --)")
    st = sub.add_parser("stub", help="ROOT/srcNN/<class>/ of empty .png files, for run --stub")
    st.add_argument("root", type=Path)
    st.add_argument("--images", type=int, default=1_000_000)
    f = sub.add_parser("figure", help="docs/img/build-scale.png from run JSON")
    f.add_argument("json", type=Path, nargs="+")
    f.add_argument("--out", type=Path, default=Path("docs/img/build-scale.png"))
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_stub"]:
        return _stub_main(argv[1:])
    args = ap.parse_args(argv)
    if args.step == "stub":
        make_stub_tree(args.root, args.images)
        return 0
    if args.step == "tree":
        make_tree(args.root, args.images, args.workers)
        return 0
    if args.step == "figure":
        rows = [r for path in args.json for r in json.loads(path.read_text())["rows"]]
        figure(rows, args.out)
        print(table(rows))
        return 0
    from cxrtool.workers import available_cpus

    data = json.loads(args.json.read_text()) if args.json and args.json.exists() else {"rows": []}
    data["env"] = {"python": platform.python_version(), "cpus": available_cpus(), "machine": platform.machine(),
                   "processor": platform.processor()}
    out = args.out or args.root.parent / "build-scale-out"
    failed = 0
    for n in args.images:
        row = run_build(args.root, n, out, args.extra, args.stub, args.code)
        failed += bool(row["returncode"])
        print(json.dumps(row), flush=True)
        same = (n, args.stub, args.code is not None)
        data["rows"] = [x for x in data["rows"] if (x["images"], x.get("stub", False), bool(x.get("before"))) != same] + [row]
        if args.json:
            from cxrtool.atomic import write_text

            write_text(args.json, json.dumps(data, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
