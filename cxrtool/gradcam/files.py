"""Files in, overlays out: what ``cxrtool gradcam`` runs.

Plans the output names (:func:`plan_outputs`), then streams batches: a thread pool decodes
the next batch while the current one is explained (JAX, main thread), and draws and writes
each overlay (Pillow releases the GIL) while the next batch is explained. Records come back
in input order, one batch behind the explaining. Every file is written atomically.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import CxrError, UsageError
from ..workers import default_workers
from .explain import Explanation, class_index, explain
from .methods import method_class

__all__ = ["CONTACT_SHEET", "GradcamRecord", "gradcam_files", "plan_outputs"]

CONTACT_SHEET = "contact_sheet.png"
SHEET_PER_PAGE = 48
#: zlib level for the PNGs: level 1 encodes a 488 x 448 overlay in ~28 ms against ~100 ms at
#: Pillow's default 6, for files ~20% larger (measured on 224 px X-rays; encoding was 2/3 of
#: the time per overlay).
PNG_COMPRESS_LEVEL = 1


@dataclass
class GradcamRecord:
    """The outcome for one input file."""

    path: str
    output: Path | None = None
    raw: Path | None = None
    explanation: Explanation | None = None
    error: str | None = None
    #: the heat map is degenerate (all zero or constant): the overlay shows the X-ray alone
    flat: bool = False
    #: cxrtool.ood: "", not-a-chest-xray or out-of-distribution; ood_score None: unavailable
    flag: str = ""
    ood_score: float | None = None


def plan_outputs(paths: Sequence[str | Path], out: str | Path | None) -> tuple[list[Path], Path | None]:
    """Output PNG per input and the contact sheet (None for a single image).

    One image: ``out`` is the PNG file (or an existing/slash-terminated folder). Several:
    ``out`` is a folder that gets ``<stem>_gradcam.png`` per input (``<stem>_2_gradcam.png``
    ... when stems collide) and ``contact_sheet.png``. Default: ``./gradcam/``. Never an input.
    """
    out_text = str(out) if out is not None else None
    folder_mode = (
        out is None
        or len(paths) != 1
        or Path(out).is_dir()
        or out_text.endswith(("/", "\\"))
        or Path(out).suffix == ""
    )
    if out is not None and len(paths) > 1 and (Path(out).is_file() or Path(out).suffix.lower() == ".png"):
        raise UsageError(f"--out {out}: with {len(paths)} images --out must be a folder (one PNG per image)")
    if not folder_mode:
        target = Path(out)
        if target.suffix.lower() != ".png":
            raise UsageError(f"--out {out}: the overlay is a PNG; use a .png file name or a folder")
        outputs = [target]
        sheet = None
    else:
        folder = Path(out) if out is not None else Path("gradcam")
        used: set[str] = set()
        outputs = []
        for p in paths:
            stem = Path(p).stem or "image"
            name, k = f"{stem}_gradcam.png", 1
            while name.lower() in used or name.lower() == CONTACT_SHEET:
                k += 1
                name = f"{stem}_{k}_gradcam.png"
            used.add(name.lower())
            outputs.append(folder / name)
        sheet = folder / CONTACT_SHEET if len(paths) > 1 else None
    inputs = {Path(p).resolve() for p in paths}
    for o in outputs:
        if o.resolve() in inputs:
            raise UsageError(f"--out {o} is one of the input images; inputs are never overwritten")
    return outputs, sheet


def gradcam_files(
    loaded,
    paths: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    layer: str | None = None,
    class_name: str | None = None,
    method: str = "gradcam",
    alpha: float = 0.4,
    cmap: str | None = None,
    save_raw: bool = False,
    batch_size: int = 16,
    contact_sheet: bool = True,
    workers: int | None = None,
) -> Generator[GradcamRecord, None, list[Path]]:
    """Explain image files and write an overlay PNG per image (see :func:`plan_outputs`).

    Yields a :class:`GradcamRecord` per input, in input order, as each batch is written.
    Unreadable files give a record with ``error`` and no output. The contact sheet (several
    inputs) is written after the last image; its pages are the generator's return value
    (``StopIteration.value``). ``workers``: threads decoding and drawing [default: the CPUs].
    """
    from .overlay import DEFAULT_CMAP

    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha {alpha}: must be between 0 and 1")
    cmap = cmap or DEFAULT_CMAP
    import matplotlib

    if cmap not in matplotlib.colormaps:
        raise UsageError(f"--cmap {cmap!r}: not a matplotlib colour map (e.g. inferno, magma, viridis, turbo)")
    class_index(list(loaded.info.classes), class_name)
    title = method_class(method).title
    paths = [str(p) for p in paths]
    outputs, sheet = plan_outputs(paths, out)
    want_sheet = sheet is not None and contact_sheet
    if want_sheet:  # written last: an old sheet must not make an interrupted run's folder look finished
        for old in sheet.parent.glob(f"{sheet.stem}*{sheet.suffix}"):
            if re.fullmatch(rf"{re.escape(sheet.stem)}(_\d+)?{re.escape(sheet.suffix)}", old.name):
                old.unlink(missing_ok=True)
    style = {"alpha": alpha, "cmap": cmap, "method": title}
    from ..ood import Scorer

    scorer = Scorer(loaded)
    cache: dict = {}
    thumbs: dict[int, tuple] = {}
    size = int(loaded.info.image_size)
    chunks = [range(s, min(s + batch_size, len(paths))) for s in range(0, len(paths), batch_size)]
    pool = ThreadPoolExecutor(default_workers(cap=8, requested=workers), thread_name_prefix="cxrtool-gradcam")
    try:
        decoding = [pool.submit(_read, paths[i], size) for i in chunks[0]] if chunks else []
        in_flight: deque = deque()
        for k, chunk in enumerate(chunks):
            decoded = [f.result() for f in decoding]
            if k + 1 < len(chunks):  # decode the next batch while this one is explained
                decoding = [pool.submit(_read, paths[i], size) for i in chunks[k + 1]]
            records: dict[int, GradcamRecord | Future] = {}
            ok = []
            for i, (pixels, error, _) in zip(chunk, decoded):
                if error is None:
                    ok.append((i, pixels))
                else:
                    records[i] = GradcamRecord(paths[i], error=error)
            explanations = explain(loaded, [px for _, px in ok], layer=layer, class_name=class_name, method=method,
                                   batch_size=batch_size, cache=cache)
            verdicts = scorer.judge([px for _, px in ok], [decoded[i - chunk.start][2] for i, _ in ok])
            for (i, pixels), ex, verdict in zip(ok, explanations, verdicts):
                records[i] = pool.submit(_write_one, paths[i], pixels, ex, outputs[i], save_raw, want_sheet,
                                         {**style, "verdict": verdict})
            in_flight.append((chunk, records))
            while len(in_flight) > 1:  # draw this batch while the next one is explained
                yield from _finish(*in_flight.popleft(), thumbs)
        while in_flight:
            yield from _finish(*in_flight.popleft(), thumbs)
        if not (want_sheet and thumbs):
            return []
        ordered = [thumbs[i] for i in sorted(thumbs)]
        pages = [ordered[s : s + SHEET_PER_PAGE] for s in range(0, len(ordered), SHEET_PER_PAGE)]
        names = [sheet if p == 0 else sheet.with_name(f"{sheet.stem}_{p + 1}{sheet.suffix}") for p in range(len(pages))]
        return list(pool.map(_write_page, pages, names))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read(path: str, size: int) -> tuple[np.ndarray | None, str | None, str | None]:
    """(pixels, None, image-check flag) or (None, why it could not be read, None); the checks
    judge the ``size`` px image the model sees, as ``predict`` does."""
    from ..imagecheck import batch_checks, file_views
    from ..imageio import read_image
    from ..inputs import resize_image

    try:
        img = read_image(path)
    except CxrError as exc:
        return None, getattr(exc, "reason", str(exc)), None
    seen = file_views(img.pixels, resize_image(img.pixels, size), width=img.width, height=img.height, colour=img.colour)
    return img.pixels, None, batch_checks([seen])[0][0]


def _write_one(path: str, pixels: np.ndarray, ex: Explanation, target: Path, save_raw: bool, want_thumb: bool,
               style: dict) -> tuple[GradcamRecord, tuple | None]:
    """Draw and write one overlay (and the raw map); runs in a worker thread."""
    from .overlay import is_flat, render_overlay, thumbnail

    style = dict(style)
    score, flag = style.pop("verdict")
    flat = is_flat(ex.heatmap)
    overlay = render_overlay(pixels, ex.heatmap, label=ex.label, probability=ex.probability, target=ex.target,
                             target_probability=ex.target_probability, layer=ex.layer if len(ex.layer) <= 40 else None,
                             flat=flat, box=ex.box, flag=flag, **style)
    _save_png(overlay, target)
    raw = None
    if save_raw:
        raw = target.with_suffix(".npy")
        with atomic_path(raw, suffix=".npy") as tmp:
            np.save(tmp, ex.heatmap.astype(np.float32))
    title = f"{Path(path).name}\n{ex.label} {ex.probability:.3f}" + ("  (flat map)" if flat else "")
    thumb = (thumbnail(overlay), title) if want_thumb else None
    return GradcamRecord(path, output=target, raw=raw, explanation=ex, flat=flat, flag=flag, ood_score=score), thumb


def _finish(chunk: range, records: dict, thumbs: dict) -> Generator[GradcamRecord, None, None]:
    for i in chunk:
        rec = records[i]
        if isinstance(rec, Future):
            rec, thumb = rec.result()
            if thumb is not None:
                thumbs[i] = thumb
        yield rec


def _write_page(items: list[tuple], path: Path) -> Path:
    from .overlay import contact_sheet_page

    _save_png(contact_sheet_page([t for t, _ in items], [title for _, title in items]), path)
    return path


def _save_png(image, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


