"""Know what you don't know: is an input like the images the model was trained on?

Five judgements, all in the same run as the prediction:

* **Image checks** (:mod:`cxrtool.imagecheck`, no model): colour, aspect ratio, flat,
  binary (text, line art), white page, pixel noise, perfectly smooth ramps, no fine detail (a
  picture blown up from a few pixels). A failure gives the
  flag ``not-a-chest-xray``.
* **Feature distance** (this module): the model's last feature map (the input of the
  ``avg_pool`` layer, computed anyway on the way to the probabilities), averaged over each cell
  of a 3 x 3 grid, is compared with the training split's by a Mahalanobis distance with
  class-conditional means and one shared covariance (Lee et al. 2018), in the span of the top
  principal components plus a scaled residual term for what lies outside it (a
  probabilistic-PCA distance, so a 2304-d vector needs a 64 x 2304 projection, not a
  2304 x 2304 covariance). The grid keeps *where* the network found what: the pooled features
  (one average over the whole map, what the classifier reads and what models fitted before the
  grid store) place a drawn abdominal film among a small cnn's chest films; its cells do not.
* **Layout distance** (this module, no network): the same distance on a 24 x 24 thumbnail of
  the model-size image, standardised per image, against the training thumbnails (one class).
  A small cnn's features place some smooth grey pictures (an MRI slice, an elevation map) among
  its X-rays; their grey layout is nothing like a chest film's.
* **Picture distance** (this module, no network): the same distance (one class) on the
  image checks' statistics and the grey-level histogram of the model-size image
  (:data:`cxrtool.imagecheck.PICTURE_KEYS`, each scaled by its training standard deviation).
  Each image check compares one number with a fixed limit; a picture can pass every limit yet
  sit far from the training X-rays in all of them together (a fractal, a cloud texture).
* **Edge distance** (this module, no network): the same distance (one class) on histograms of
  oriented gradients (Dalal and Triggs 2005: 8 edge directions in each cell of a 4 x 4 grid on
  a 64 px thumbnail). A chest film's edges have a fixed plan (ribs sloping down from the spine,
  the vertical borders of the heart and the lungs, the clavicles); a drawn mammogram, a knee or
  a spine has a grey layout and a histogram close enough to a film's, but its edges run in
  other directions in other places.

Thresholds: the 99.7th percentile of distances of images the statistics were not fitted on,
so about 2% of such images are flagged by one of the four scores. For the feature distance
those are the val split's (the network has seen the training images). For the three image
distances (no network) they are the val split's together with every training image's,
each from statistics fitted on the other folds of a 5-fold split (out-of-fold): about six
times as many distances, so the far tail is not set by the two or three largest of a small
val split.

``ood_score`` is the largest distance / threshold over the four: above 1 gives
``out-of-distribution``.

The fitted statistics live in the model's metadata (``ModelInfo.extra["ood"]``, arrays as
base64 float32), so they travel inside the ``.keras`` file, load in safe mode and need no
custom weights. A model without them (trained before this change) still predicts; its
``ood_score`` is empty (unavailable) and only the image checks can flag. An ensemble scores
with each member's statistics and flags when *any* member does (``ood_score`` = the largest
member score).

The numpy part (fit, score, pack) is cheap to import; :class:`Scorer` and the fit on a model
import Keras when called.
"""

from __future__ import annotations

import base64
import functools
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .imagecheck import NOT_XRAY
from .progress import ProgressFn, report

#: Where the statistics live in ``ModelInfo.extra``.
KEY = "ood"
#: The flag of an input whose features lie outside the training data.
OUT_OF_DISTRIBUTION = "out-of-distribution"
FLAGS = (NOT_XRAY, OUT_OF_DISTRIBUTION)
#: Principal components kept (fewer when the feature or the split is smaller).
DIMS = 64
#: Cells per side of the grid the last feature map is averaged over for the feature distance
#: (1 would be the pooled features; records without ``grid`` were fitted on those).
FEATURE_GRID = 3
#: Quantile of unseen images' distances that becomes each score's threshold (four scores:
#: about 2% of unseen X-rays flagged, measured in docs/ood.md).
QUANTILE = 0.997
#: Folds of the out-of-fold training distances that join val's in the image parts' thresholds.
FOLDS = 5
#: Side of the standardised grey thumbnail of the layout score.
LAYOUT_SIDE = 24
#: Side of the grey thumbnail of the edge score, grid cells per side, and edge directions.
EDGE_SIDE, EDGE_CELLS, EDGE_BINS = 64, 4, 8
#: At most this many training images are used for the statistics (a seeded sample).
MAX_FIT = 5000
#: The group-shift test (:func:`group_shift`): a class is tested when the set and the model's
#: val images each have at least this many of it, and the set counts as shifted when a class's
#: one-sided p-value is under ``SHIFT_ALPHA`` divided by the number of classes tested.
SHIFT_MIN_IMAGES, SHIFT_ALPHA = 20, 0.01


# --------------------------------------------------------------------------------------
# arrays in JSON
# --------------------------------------------------------------------------------------


def pack(a: np.ndarray) -> dict:
    """A float32 array as ``{"shape", "base64"}`` (JSON-safe, 4 bytes per number)."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["base64"]), dtype="<f4").reshape(d["shape"]).astype(np.float64)


# --------------------------------------------------------------------------------------
# the statistics (numpy)
# --------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Class-conditional Mahalanobis in a PCA subspace plus a residual term."""

    mean: np.ndarray  # (D,) mean of the training features
    components: np.ndarray  # (k, D) orthonormal principal directions
    class_means: np.ndarray  # (C, k) class means in the subspace
    precision: np.ndarray  # (k, k) inverse of the shared within-class covariance
    residual_var: float  # mean squared residual per dropped dimension (0: no residual term)
    threshold: float = 1.0  # distance at the val quantile

    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Smallest class-conditional squared Mahalanobis distance of each row of ``feats``."""
        f = np.asarray(feats, np.float64).reshape(len(feats), len(self.mean)) - self.mean
        z = f @ self.components.T
        d = z[:, None, :] - self.class_means[None, :, :]  # (n, C, k)
        maha = np.einsum("nck,kj,ncj->nc", d, self.precision, d).min(axis=1)
        if self.residual_var > 0:
            resid = np.sum(f * f, axis=1) - np.sum(z * z, axis=1)
            maha = maha + np.maximum(resid, 0.0) / self.residual_var
        return maha

    def score(self, feats: np.ndarray) -> np.ndarray:
        """``ood_score``: distance / threshold (above 1 = out of distribution)."""
        return self.distance(feats) / self.threshold

    def to_record(self) -> dict:
        return {"mean": pack(self.mean), "components": pack(self.components), "class_means": pack(self.class_means),
                "precision": pack(self.precision), "residual_var": float(self.residual_var),
                "threshold": float(self.threshold)}

    @classmethod
    def from_record(cls, r: dict) -> Stats:
        return cls(unpack(r["mean"]), unpack(r["components"]), unpack(r["class_means"]), unpack(r["precision"]),
                   float(r["residual_var"]), float(r["threshold"]))


def principal_axes(centred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` principal directions (k, D) of the centred rows ``centred`` (n, D) and
    their sums of squares, from the eigenvectors of the smaller of the two Gram matrices
    (D x D or n x n): the same subspace as an SVD, at a fraction of its time for wide features
    (5,000 x 11,520, a MobileNetV2 map's 3 x 3 grid: 16 s against 69 s for the SVD on the
    2-core box; docs/ood.md). From the n x n matrix, a direction without variance cannot be recovered and is
    left out (fewer than ``k`` for degenerate data)."""
    n, d = centred.shape
    values, vectors = np.linalg.eigh(centred.T @ centred if d <= n else centred @ centred.T)  # ascending
    top = np.argsort(values)[::-1][:k]
    values, vectors = np.maximum(values[top], 0.0), vectors[:, top]
    if d <= n:
        return vectors.T, values
    keep = values > (values[0] if len(values) else 0.0) * 1e-12
    return (vectors[:, keep].T @ centred) / np.sqrt(values[keep])[:, None], values[keep]


def fit_stats(feats: np.ndarray, y: np.ndarray, *, dims: int = DIMS, residual: bool = True) -> Stats:
    """Statistics of the training features ``feats`` (n, D) with labels ``y``; threshold 1
    until :func:`set_threshold`. The shared covariance is shrunk (Ledoit-Wolf) so a small
    split still gives a stable inverse."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(feats, np.float64).reshape(len(feats), -1)
    y = np.asarray(y)
    mean = f.mean(axis=0)
    centred = f - mean
    k = int(max(1, min(dims, f.shape[1], len(f) - 1)))
    components, kept_sq = principal_axes(centred, k)
    if not len(components):  # no variance at all: one arbitrary direction, as an SVD would give
        components, kept_sq = np.eye(1, f.shape[1]), np.zeros(1)
    z = centred @ components.T
    classes = np.unique(y)
    class_means = np.stack([z[y == c].mean(axis=0) for c in classes])
    within = z - class_means[np.searchsorted(classes, y)]
    precision = LedoitWolf(assume_centered=True).fit(within).precision_
    dropped = f.shape[1] - len(components)
    left = max(float(np.sum(centred * centred)) - float(np.sum(kept_sq)), 0.0)  # the squares outside the subspace
    residual_var = left / len(f) / dropped if residual and dropped > 0 else 0.0
    return Stats(mean, components, class_means, precision, residual_var if residual_var > 1e-12 else 0.0)


def set_threshold(stats: Stats, val_feats: np.ndarray, quantile: float = QUANTILE) -> np.ndarray:
    """Set the threshold to the ``quantile`` of the val distances; returns the val scores."""
    d = stats.distance(val_feats)
    stats.threshold = float(max(np.quantile(d, quantile), 1e-9)) if len(d) else 1.0
    return d / stats.threshold


def fit_unseen_threshold(train: np.ndarray, val: np.ndarray, *, quantile: float = QUANTILE, folds: int = FOLDS,
                         seed: int = 0) -> tuple[Stats, np.ndarray]:
    """One-class statistics of the training vectors ``train`` with the threshold at the
    ``quantile`` of distances of vectors the statistics were not fitted on: ``val``'s, and each
    training fold's from statistics fitted on the other folds. For the image parts (no network
    saw the training images, so their out-of-fold distances are as good as val's); about six
    times as many distances as val alone give a steadier far tail. Returns the statistics and
    the val scores."""
    from sklearn.model_selection import KFold

    train, val = np.asarray(train, np.float64), np.asarray(val, np.float64)
    one_class = np.zeros(len(train))
    stats = fit_stats(train, one_class)
    unseen = [stats.distance(val)]
    if len(train) >= 2 * folds:
        for fit_rows, held_out in KFold(folds, shuffle=True, random_state=seed).split(train):
            unseen.append(fit_stats(train[fit_rows], one_class[fit_rows]).distance(train[held_out]))
    distances = np.concatenate(unseen)
    stats.threshold = float(max(np.quantile(distances, quantile), 1e-9)) if len(distances) else 1.0
    return stats, unseen[0] / stats.threshold


@functools.lru_cache(maxsize=16)
def _resize_matrix(n: int, side: int) -> np.ndarray:
    """``(side, n)``: Pillow's bilinear (antialiased) resize of a length-``n`` axis to ``side``
    as a matrix, built by resizing the ``n`` unit impulses with Pillow itself, so a matrix
    product gives what ``Image.resize`` gives (float32 "F" images are not rounded)."""
    from PIL import Image

    impulses = Image.fromarray(np.eye(n, dtype=np.float32), mode="F")  # row i: an impulse at i
    return np.asarray(impulses.resize((side, n), Image.BILINEAR), np.float64).T


def _thumbnail_chunks(x: np.ndarray, side: int, chunk: int = 256, dtype=np.float64):
    """``(start, (m, side, side) thumbnails)`` of model-size images ``x`` ((n, s, s) or
    (n, s, s, 1), uint8 or float), chunk by chunk (``x`` may be a memory map larger than
    memory): Pillow's bilinear (antialiased) resize as two matrix products per chunk, one call
    for a batch instead of one resize per image."""
    if not len(x):
        return
    rows = _resize_matrix(int(x.shape[1]), side).astype(dtype)
    cols = _resize_matrix(int(x.shape[2]), side).astype(dtype)
    for i in range(0, len(x), chunk):
        imgs = np.asarray(x[i : i + chunk], dtype).reshape(-1, x.shape[1], x.shape[2])
        yield i, rows @ imgs @ cols.T


def grid_cells(h: int, w: int, grid: int) -> list[tuple[int, int, int, int]]:
    """``(row0, row1, col0, col1)`` of the ``grid`` x ``grid`` cells of an h x w map, row by row,
    as even as the map allows (as adaptive average pooling cuts them: band i spans
    ``floor(i H / grid)`` to ``ceil((i + 1) H / grid)``, so no row or column is left out)."""
    rows = [(i * h // grid, -(-(i + 1) * h // grid)) for i in range(grid)]
    cols = [(j * w // grid, -(-(j + 1) * w // grid)) for j in range(grid)]
    return [(r0, r1, c0, c1) for r0, r1 in rows for c0, c1 in cols]


def grid_pool(maps: np.ndarray, grid: int) -> np.ndarray:
    """``(n, grid * grid * C)``: feature maps ``maps`` (n, H, W, C) averaged over each of the
    :func:`grid_cells`, cell by cell; grid 1 is global average pooling. The numpy twin of what
    :func:`feature_model` computes in the graph (benchmarks and tests compare the two)."""
    maps = np.asarray(maps)
    n, h, w, c = maps.shape
    cells = [maps[:, r0:r1, c0:c1].mean(axis=(1, 2), dtype=np.float64) for r0, r1, c0, c1 in grid_cells(h, w, grid)]
    return np.stack(cells, axis=1).reshape(n, grid * grid * c)


def layout_thumbnails(x: np.ndarray, side: int = LAYOUT_SIDE, chunk: int = 256) -> np.ndarray:
    """``(n, side * side)`` thumbnails of model-size images ``x`` ((n, s, s) or (n, s, s, 1),
    uint8 or float), each standardised to mean 0 and std 1: the grey layout, whatever the
    exposure. The same function serves the fit and the scoring, so both see the same pixels."""
    out = np.empty((len(x), side * side), np.float64)
    for i, t in _thumbnail_chunks(x, side, chunk):
        t = t.reshape(len(t), -1)
        out[i : i + len(t)] = (t - t.mean(axis=1, keepdims=True)) / (t.std(axis=1, keepdims=True) + 1e-6)
    return out


def _gradient(t: np.ndarray, axis: int) -> np.ndarray:
    """``np.gradient(t, axis=axis)`` (central differences inside, one-sided at the borders),
    written as slices: the same numbers (halving is exact), in a quarter of the time."""
    t = np.moveaxis(t, axis, -1)
    g = np.empty_like(t)
    np.subtract(t[..., 2:], t[..., :-2], out=g[..., 1:-1])
    g[..., 1:-1] *= 0.5
    g[..., 0] = t[..., 1] - t[..., 0]
    g[..., -1] = t[..., -1] - t[..., -2]
    return np.moveaxis(g, -1, axis)


def edge_histograms(x: np.ndarray, side: int = EDGE_SIDE, cells: int = EDGE_CELLS, bins: int = EDGE_BINS,
                    chunk: int = 256) -> np.ndarray:
    """``(n, cells * cells * bins)`` histograms of oriented gradients of model-size images
    ``x``: on a ``side`` px thumbnail, each pixel's gradient magnitude is added to the bin of
    its direction (``bins`` directions over 180 degrees: an edge's two sides are one direction)
    in its cell of a ``cells`` x ``cells`` grid; each image's histogram sums to 1, so exposure
    and contrast do not count, only where the edges are and which way they run. (A plain HOG
    without block normalisation; scikit-image has one, but it is not a dependency and this is a
    gradient and a bincount.)"""
    if side % cells:
        raise ValueError(f"the thumbnail side ({side}) must be a multiple of the grid ({cells})")
    length = cells * cells * bins
    out = np.empty((len(x), length), np.float64)
    band = np.arange(side) // (side // cells)
    first_bin = (band[:, None] * cells + band[None, :]) * bins  # (side, side): each pixel's cell
    # in float32 (half the time of float64; the fit and the scoring both come through here)
    for i, t in _thumbnail_chunks(x, side, chunk, np.float32):
        gy, gx = _gradient(t, 1), _gradient(t, 2)
        # an edge's two sides are one direction (0 to 180 degrees); the bins are centred on 0
        # and 90 degrees, so a horizontal or vertical edge does not flip between two bins on
        # the sign of a rounding error
        turns = np.arctan2(gy, gx) * np.float32(bins / np.pi) + np.float32(0.5)
        # modulo bins without an integer division (several times faster): the floor of turns
        # lies in -bins .. bins
        direction = np.floor(turns).astype(np.int64)
        direction += bins * (direction < 0)
        direction -= bins * (direction >= bins)
        index = np.arange(len(t))[:, None, None] * length + first_bin + direction
        h = np.bincount(index.ravel(), weights=np.sqrt(gx * gx + gy * gy).ravel(), minlength=len(t) * length)
        h = h.reshape(len(t), length)
        out[i : i + len(t)] = h / (h.sum(axis=1, keepdims=True) + 1e-9)
    return out


def picture_vectors(x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``(n, len(PICTURE_KEYS))`` statistics of model-size images ``x`` ((n, s, s) or
    (n, s, s, 1)); the same function serves the fit and the scoring."""
    from .imagecheck import PICTURE_KEYS, batch_stats, picture_rows, views

    out = np.empty((len(x), len(PICTURE_KEYS)), np.float64)
    for i in range(0, len(x), chunk):  # ``x`` may be a memory map larger than memory
        imgs = np.asarray(x[i : i + chunk]).reshape(-1, x.shape[1], x.shape[2])
        if imgs.dtype != np.uint8:
            imgs = np.clip(np.rint(imgs), 0, 255).astype(np.uint8)
        out[i : i + len(imgs)] = picture_rows(batch_stats([views(img, detail=False) for img in imgs]))
    return out


def group_shift(scores: np.ndarray, labels: Sequence[str], reference: dict | None) -> dict:
    """Do these images, as a group, score higher than the model's own val images of the same
    class? One image past the threshold is an outlier; a whole folder whose scores sit a little
    higher is another hospital, even when few of its images are flagged (measured in
    docs/ood.md: a held-out source flagged at 0.8% but shifted at p = 1e-24).

    Per class (``labels``: each image's class name; the true labels, since a shifted set is
    often misclassified), a one-sided two-sample Kolmogorov-Smirnov test of ``scores`` against
    the reference scores (:func:`fit_ood`'s ``reference``); classes with fewer than
    :data:`SHIFT_MIN_IMAGES` images on either side are listed but not tested; Bonferroni over
    the classes tested, at :data:`SHIFT_ALPHA`. Comparing class with class keeps a set of one
    class from looking shifted only because its class scores higher than the others."""
    if reference is None:
        return {"available": False, "tested": 0, "shifted": False}
    from scipy.stats import ks_2samp

    scores = np.asarray(scores, np.float64)
    ref_scores = unpack(reference["scores"])
    ref_labels = np.asarray([reference["classes"][i] for i in reference["labels"]], dtype=object)
    labels = np.asarray(list(labels), dtype=object)
    per_class: dict[str, dict] = {}
    for name in reference["classes"]:
        mine, ref = scores[labels == name], ref_scores[ref_labels == name]
        if not len(mine):
            continue
        entry = {"n": int(len(mine)), "reference_n": int(len(ref)), "median": float(np.median(mine)),
                 "reference_median": float(np.median(ref)) if len(ref) else None}
        if min(len(mine), len(ref)) >= SHIFT_MIN_IMAGES:
            # alternative "less": the set's distribution function lies below the reference's,
            # i.e. its scores are higher (scipy's convention)
            test = ks_2samp(mine, ref, alternative="less")
            entry.update(ks_d=float(test.statistic), p=float(test.pvalue))
        per_class[name] = entry
    tested = [e for e in per_class.values() if "p" in e]
    alpha = SHIFT_ALPHA / max(len(tested), 1)
    for e in tested:
        e["shifted"] = e["p"] < alpha
    return {"available": True, "reference": reference.get("split", "val"), "alpha": SHIFT_ALPHA,
            "min_images": SHIFT_MIN_IMAGES, "tested": len(tested),
            "shifted": any(e["shifted"] for e in tested), "per_class": per_class}


def shift_reference(info: Any) -> tuple[dict | None, str]:
    """The val reference scores of a model's OOD record for :func:`group_shift`, or None and
    why there are none."""
    if info.architecture == "ensemble":
        return None, "not for ensembles: their members' val scores are not the ensemble's"
    record = (info.extra or {}).get(KEY)
    if record is None:
        return None, "the model has no OOD statistics"
    if "reference" not in record:
        return None, "its OOD statistics predate the val reference scores; refit them with `cxrtool fit-ood`"
    return record["reference"], ""


def flag_for(score: float | None, image_flag: str | None) -> str:
    """The ``flag`` column: the image check first (it needs no model), then the distance."""
    if image_flag:
        return image_flag
    if score is not None and score > 1.0:
        return OUT_OF_DISTRIBUTION
    return ""


# --------------------------------------------------------------------------------------
# models (Keras)
# --------------------------------------------------------------------------------------


def has_stats(info: Any) -> bool:
    """True when the model (or, for an ensemble, at least one member) carries statistics."""
    if KEY in (info.extra or {}):
        return True
    return any(KEY in m for m in (info.extra or {}).get("members", []))


#: One feature model per Keras model and grid: a new ``keras.Model`` would compile its predict function
#: again (seconds of XLA on a CPU) every time a Scorer is made for the same loaded model.
_FEATURE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: One jitted forward pass per Keras model (see :func:`async_forward`).
_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def async_forward(model):
    """``x -> outputs``: ``model``'s forward pass, returning at once. JAX runs the computation
    on its own threads while the caller goes on (``predict`` judges the batch's pictures
    meanwhile); ``np.asarray`` on an output waits for it. Keras's ``predict_on_batch`` waits
    instead, and copies every variable back into the model after each call. The variables
    are read at each call (Keras may replace their arrays, e.g. while training)."""
    import jax

    fn = _FORWARDS.get(model)
    if fn is None:
        ref = weakref.ref(model)  # the cached function must not keep its model alive
        fn = _FORWARDS[model] = jax.jit(lambda tv, ntv, x: ref().stateless_call(tv, ntv, x, training=False)[0])
    return lambda x: fn([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables], x)


def grid_features(keras, fmap, grid: int):
    """In the graph: the feature map ``fmap`` (n, H, W, C) averaged over each of the
    :func:`grid_cells`, flattened cell by cell as :func:`grid_pool` does. Pooled where the map
    is computed, the probe hands 9 C numbers per image to numpy instead of H W C."""
    h, w = int(fmap.shape[1]), int(fmap.shape[2])
    cells = [keras.ops.mean(fmap[:, r0:r1, c0:c1, :], axis=(1, 2)) for r0, r1, c0, c1 in grid_cells(h, w, grid)]
    return cells[0] if len(cells) == 1 else keras.ops.concatenate(cells, axis=-1)


def feature_model(model, grid: int = FEATURE_GRID):
    """``model`` with a second output: the feature vectors, the last feature map (the input of
    the pooling layer) averaged over a ``grid`` x ``grid`` grid of cells (one forward pass
    gives both)."""
    from .backend import import_keras
    from .models.names import POOL_LAYER

    probes = _FEATURE_MODELS.setdefault(model, {})
    if grid not in probes:
        keras = import_keras()
        feats = grid_features(keras, model.get_layer(POOL_LAYER).input, grid)
        probes[grid] = keras.Model(model.inputs[0], [model.outputs[0], feats])
    return probes[grid]


def predict_features(model, x: np.ndarray, batch_size: int = 64, grid: int = FEATURE_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, features: the feature map's ``grid`` x ``grid`` cell means) for images
    ``x`` (n, s, s) uint8, batch by batch (the last batch padded to the full size: one
    compiled shape)."""
    probe = feature_model(model, grid)
    if not len(x):
        n_classes, dim = (int(t.shape[-1]) for t in probe.outputs)
        return np.zeros((0, n_classes)), np.zeros((0, dim))
    probs, feats = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        padded = np.concatenate([xb, np.repeat(xb[-1:], batch_size - len(xb), axis=0)])
        p, f = probe.predict_on_batch(padded.astype(np.float32)[..., None])
        probs.append(np.asarray(p, np.float64)[: len(xb)])
        feats.append(np.asarray(f, np.float64)[: len(xb)])
    return np.concatenate(probs), np.concatenate(feats)


def fit_ood(model, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, *, batch_size: int = 64,
            quantile: float = QUANTILE, seed: int = 0, val_y: np.ndarray | None = None,
            classes: Sequence[str] | None = None) -> dict:
    """Fit the statistics on (a sample of at most :data:`MAX_FIT`) training images and the
    thresholds on the val images (and, for the image parts, out-of-fold training images);
    returns the record for ``info.extra["ood"]``. With ``val_y`` and ``classes`` it also keeps
    the val images' ``ood_score`` and labels (``reference``): what a later set's scores are
    compared with, class by class, to see a shift of the whole set (:func:`group_shift`)."""
    t0 = time.perf_counter()
    if len(train_x) > MAX_FIT:
        keep = np.sort(np.random.default_rng(seed).choice(len(train_x), MAX_FIT, replace=False))
        train_x, train_y = train_x[keep], np.asarray(train_y)[keep]
    _, f_train = predict_features(model, train_x, batch_size)
    stats = fit_stats(f_train, train_y)
    _, f_val = predict_features(model, val_x, batch_size)
    fitted_on = "val" if len(f_val) else "train"  # no val split: the training distances (optimistic)
    val_scores = set_threshold(stats, f_val if len(f_val) else f_train, quantile)
    parts = {}  # the image parts: thresholds from val and out-of-fold training distances

    def image_part(name: str, train_v: np.ndarray, val_v: np.ndarray, **fields) -> None:
        part, part_val = fit_unseen_threshold(train_v, val_v, quantile=quantile, seed=seed)
        parts[name] = (part_val, {**part.to_record(), **fields, "dims": int(part.components.shape[0]),
                                  "quantile": quantile, "threshold_from": "val+train-folds", "folds": FOLDS,
                                  "val_flagged": float(np.mean(part_val > 1.0)) if len(part_val) else 0.0})

    image_part("layout", layout_thumbnails(train_x), layout_thumbnails(val_x), side=LAYOUT_SIDE)
    pictures = picture_vectors(train_x)
    scale = pictures.std(axis=0) + 1e-6  # comparable units before the shrunk covariance
    image_part("picture", pictures / scale, picture_vectors(val_x) / scale, scale=pack(scale))
    image_part("edges", edge_histograms(train_x), edge_histograms(val_x), side=EDGE_SIDE, cells=EDGE_CELLS, bins=EDGE_BINS)
    record = stats.to_record()
    record.update({name: fields for name, (_, fields) in parts.items()})
    flagged = val_scores > 1.0
    if len(val_x):
        for part_val, _ in parts.values():
            flagged = flagged | (part_val > 1.0)
    record.update(method="mahalanobis-pca", feature_layer="avg_pool:input", grid=FEATURE_GRID,
                  dims=int(stats.components.shape[0]),
                  feature_dim=int(stats.components.shape[1]), quantile=quantile, threshold_from=fitted_on,
                  n_train=int(len(train_x)), n_val=int(len(val_x)),
                  val_flagged=float(np.mean(flagged)) if len(val_scores) else 0.0)
    if len(val_x) and val_y is not None and classes is not None:
        # scored by the code that scores every later input, so the two compare like for like
        scores = Judge.from_record(record).score(f_val, val_x)
        record["reference"] = {"split": "val", "classes": [str(c) for c in classes],
                               "labels": [int(v) for v in val_y], "scores": pack(scores)}
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


@dataclass
class FitResult:
    model_path: Path
    record: dict


def fit_ood_model(path: str | Path, data: str | Path, *, out: str | Path | None = None,
                  models_dir: str | Path | None = None, batch_size: int = 64,
                  progress: ProgressFn | None = None) -> FitResult:
    """Fit the statistics for an existing model on the train/val splits of ``data`` and save it
    to ``out`` (default: replace the model, atomically). An ensemble gets each member's
    statistics fitted on the same data."""
    from .artifact import save_model
    from .inference import open_model_for_data
    from .inputs import load_split

    source, manifest, loaded = open_model_for_data(path, data, splits=("train", "val"), purpose="the OOD statistics",
                                                   models_dir=models_dir, progress=progress)
    target = Path(out) if out is not None else source
    info = loaded.info

    def fit_one(model, size: int) -> dict:
        train = load_split(manifest, "train", size, progress=progress)
        val = load_split(manifest, "val", size, progress=progress)
        report(progress, "fit", 0, 1, message=f"fitting OOD statistics on {len(train)} train and {len(val)} val images")
        return fit_ood(model, train.x, train.y, val.x, batch_size=batch_size, val_y=val.y, classes=info.classes)

    if info.architecture == "ensemble":
        from .ensemble import member_models

        records = []
        for sub, member, _ in member_models(loaded):
            member[KEY] = fit_one(sub, int(member["image_size"]))
            records.append(member)
        info.extra = {**info.extra, "members": records}
        record = {"members": [m[KEY]["val_flagged"] for m in records]}
    else:
        record = fit_one(loaded.model, int(info.image_size))
        info.extra = {**info.extra, KEY: record}
        record = {k: v for k, v in record.items() if not isinstance(v, dict)}
    report(progress, "save", 0, 1, message=f"saving {target}")
    save_model(loaded.model, target, info)
    return FitResult(model_path=target, record=record)


def apply_on_flag(rows: list, on_flag: str) -> list:
    """``predict --on-flag``: ``keep`` the rows as they are, ``drop`` the flagged ones, or
    ``fail`` them: the row stays, without a prediction, with ``error = "flagged: FLAG"``."""
    if on_flag == "keep":
        return rows
    if on_flag == "drop":
        return [r for r in rows if not r.flag]
    for r in rows:
        if r.flag and r.error is None:
            r.label = r.probability = r.probabilities = None
            r.error = f"flagged: {r.flag}"
    return rows


def flag_summary(flags: list[str], total: int, on_flag: str = "keep") -> str:
    """The one stderr line: how many inputs were flagged, why, and what happened to them."""
    from collections import Counter

    counts = Counter(flags)
    why = ", ".join(f"{n} {flag}" for flag, n in sorted(counts.items()))
    then = {"keep": "their predictions are in the output; see the flag column",
            "drop": "their rows were left out (--on-flag drop)",
            "fail": "their rows have no prediction (--on-flag fail)"}[on_flag]
    return f"{len(flags)} of {total} inputs flagged ({why}): {then}"


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController  # a scikit-learn dependency

    return ThreadpoolController()


def one_blas_thread():
    """A context in which numpy's BLAS uses one thread. The distances are small matrix
    products per batch; with its default threads OpenBLAS keeps a second thread spinning after
    each one, which took CPU from the model's own threads: the flag cost ~20% of predict's CPU
    per image instead of ~0 (docs/benchmarks.md, "OOD flag overhead")."""
    return _blas_controller().limit(limits=1, user_api="blas")


@dataclass
class Judge:
    """One model's statistics: the feature distance and, for models fitted since each exists,
    the layout, picture and edge distances (None for older records). ``grid``: the cells per
    side of the feature map's averages the feature statistics were fitted on (1 for records
    from before the grid: the pooled features)."""

    features: Stats
    layout: Stats | None = None
    side: int = LAYOUT_SIDE
    picture: Stats | None = None
    picture_scale: np.ndarray | None = None
    edges: Stats | None = None
    edge_grid: tuple[int, int, int] = (EDGE_SIDE, EDGE_CELLS, EDGE_BINS)  # side, cells, bins
    grid: int = 1

    @classmethod
    def from_record(cls, r: dict) -> Judge:
        judge = cls(Stats.from_record(r), grid=int(r.get("grid", 1)))
        if lay := r.get("layout"):
            judge.layout, judge.side = Stats.from_record(lay), int(lay["side"])
        if pic := r.get("picture"):
            judge.picture, judge.picture_scale = Stats.from_record(pic), unpack(pic["scale"])
        if edg := r.get("edges"):
            judge.edges, judge.edge_grid = Stats.from_record(edg), (int(edg["side"]), int(edg["cells"]), int(edg["bins"]))
        return judge

    def score(self, feats: np.ndarray, x: np.ndarray, pictures: np.ndarray | None = None,
              images: np.ndarray | None = None) -> np.ndarray:
        """``ood_score`` of each image: the largest of its feature, layout, picture and edge
        scores (``feats``: the feature vectors at this judge's ``grid``, :func:`feature_model`;
        ``pictures``: :func:`picture_vectors` of ``x`` when the caller has them already;
        ``images``: :meth:`image_score` of ``x`` when computed already)."""
        with one_blas_thread():
            s = self.features.score(feats)
            return np.maximum(s, self.image_score(x, pictures) if images is None else images)

    def image_score(self, x: np.ndarray, pictures: np.ndarray | None = None) -> np.ndarray:
        """The largest of the layout, picture and edge scores of each image of ``x`` (zeros
        for a record without them): the parts that need no features."""
        s = np.zeros(len(x))
        if self.layout is not None:
            s = np.maximum(s, self.layout.score(layout_thumbnails(x, self.side)))
        if self.picture is not None:
            p = picture_vectors(x) if pictures is None else pictures
            s = np.maximum(s, self.picture.score(p / self.picture_scale))
        if self.edges is not None:
            s = np.maximum(s, self.edges.score(edge_histograms(x, *self.edge_grid)))
        return s


class Scorer:
    """Probabilities and ``ood_score`` for batches of model input, in one pass per model.

    For a plain model the forward pass returns the features beside the probabilities; for an
    ensemble each member with statistics runs again on its own input (an ensemble costs about
    twice as much with the score on). ``available`` is False for a model without statistics:
    then :meth:`predict` returns ``None`` scores and only the image checks can flag.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        info = loaded.info
        self.members: list[tuple[Any, Judge]] = []
        self.probe = None
        self.single: Judge | None = None
        if info.architecture == "ensemble":
            from .ensemble import member_models

            for sub, member, _ in member_models(loaded):
                if KEY in member:
                    judge = Judge.from_record(member[KEY])
                    self.members.append((self._member_probe(sub, int(member["image_size"]), judge.grid), judge))
        elif KEY in (info.extra or {}):
            self.single = Judge.from_record(info.extra[KEY])
            self.probe = feature_model(loaded.model, self.single.grid)
        self.available = self.single is not None or bool(self.members)
        # one model (with or without the features beside the probabilities): its forward pass
        # runs while the caller judges the pictures (dispatch, then finish)
        self._forward = None if self.members else async_forward(self.probe or loaded.model)

    def _member_probe(self, sub, member_size: int, grid: int):
        from .backend import import_keras
        from .models.names import POOL_LAYER

        keras = import_keras()
        size = int(self.loaded.info.image_size)
        inner = keras.Model(sub.inputs[0], grid_features(keras, sub.get_layer(POOL_LAYER).input, grid))
        inp = keras.Input((size, size, 1), dtype="float32")
        x = inp
        if member_size != size:  # as the ensemble graph does
            x = keras.layers.Resizing(member_size, member_size, interpolation="bilinear", antialias=True)(x)
        return keras.Model(inp, inner(x))

    def judge(self, images: list[np.ndarray], image_flags: list[str | None],
              batch_size: int = 32) -> list[tuple[float | None, str]]:
        """``(ood_score, flag)`` for decoded grey images of any size (resized as in training)
        and their image-check flags; for callers that do not need the probabilities
        (``gradcam``)."""
        from .inference import model_input

        scores: list[float | None] = []
        for i in range(0, len(images), batch_size):
            x = model_input(images[i : i + batch_size], int(self.loaded.info.image_size))
            s = self.predict(x)[1] if self.available else None
            scores += [None] * len(x) if s is None else [float(v) for v in s]
        return [(s, flag_for(s, f)) for s, f in zip(scores, image_flags)]

    def predict(self, x: np.ndarray, pictures: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probabilities, scores or None)`` for one batch ``x`` (n, S, S, 1) float32
        (``pictures``: :func:`picture_vectors` of ``x``, when computed elsewhere: ``predict``
        computes them per batch, with the image checks)."""
        return self.finish(self.dispatch(x), x, pictures)

    def dispatch(self, x: np.ndarray):
        """Start the forward pass of one batch ``x``; :meth:`finish` gives its result. In
        between, the caller's own work runs beside the model's."""
        return None if self._forward is None else self._forward(x)

    def finish(self, pending, x: np.ndarray, pictures: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict` of the batch ``x`` whose forward pass :meth:`dispatch` started."""
        if self.probe is not None:
            with one_blas_thread():  # the parts from the pictures, while the forward pass runs
                images = self.single.image_score(x, pictures)
            probs, feats = pending
            return np.asarray(probs, np.float32), self.single.score(np.asarray(feats), x, pictures, images=images)
        if not self.members:
            return np.asarray(pending, np.float32), None
        probs = np.asarray(self.loaded.model.predict_on_batch(x), np.float32)
        # a member's layout statistics were fitted at its own size; its thumbnail here comes
        # from the ensemble-size input (both are the same film shrunk to 24 px)
        # (the picture statistics likewise: measured on the ensemble-size image)
        if pictures is None and any(judge.picture is not None for _, judge in self.members):
            pictures = picture_vectors(x)
        scores = np.stack([judge.score(np.asarray(probe.predict_on_batch(x)), x, pictures) for probe, judge in self.members])
        return probs, scores.max(axis=0)


__all__ = ["DIMS", "EDGE_BINS", "EDGE_CELLS", "EDGE_SIDE", "FEATURE_GRID", "FLAGS", "FOLDS", "FitResult", "Judge", "KEY", "LAYOUT_SIDE", "MAX_FIT", "OUT_OF_DISTRIBUTION", "QUANTILE", "SHIFT_ALPHA", "SHIFT_MIN_IMAGES", "Scorer", "Stats",
           "apply_on_flag", "edge_histograms", "feature_model", "fit_ood", "fit_unseen_threshold", "flag_summary", "fit_ood_model", "fit_stats", "flag_for", "grid_cells", "group_shift", "shift_reference", "grid_features", "grid_pool", "has_stats", "layout_thumbnails", "pack",
           "picture_vectors",
           "predict_features", "set_threshold", "unpack"]
