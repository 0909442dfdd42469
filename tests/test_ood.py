"""Know what you don't know (cxrtool.imagecheck, cxrtool.ood): non-X-rays and inputs unlike
the training data are flagged in predict, gradcam, evaluate and ensembles; models without
statistics still predict."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtool import CLASSES
from cxrtool.cli import main
from cxrtool.imagecheck import NOT_XRAY, check_image, colour_fraction, failed_checks, image_stats
from cxrtool.ood import OUT_OF_DISTRIBUTION, Stats, fit_stats, flag_for, pack, set_threshold, unpack
from cxrtool.synthetic import make_phantom
from cxrtool.synthetic.nonxray import KINDS, make_non_xray, write_non_xrays
from helpers_dataset import make_dataset

SOURCES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sources"

#: What the image checks alone catch; skull, hand and shapes are left to the model's features.
IMAGE_LEVEL = ("noise", "document", "gradient", "colour", "texture")
SIZE = 24


# --------------------------------------------------------------------------------------
# image checks (no Keras)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", IMAGE_LEVEL)
def test_image_checks_flag_generated_non_xrays(kind):
    for seed in range(6):
        im = make_non_xray(kind, seed, 256)
        gray = np.asarray(im.convert("L"))
        flag = check_image(gray, width=im.width, height=im.height, colour=colour_fraction(im))
        assert flag == NOT_XRAY, (kind, seed, image_stats(gray, colour=colour_fraction(im)))


def test_image_checks_pass_phantom_xrays_and_catch_shape_and_inversion():
    for label in ("covid", "pneumonia", "normal"):
        for seed in range(5):
            img = make_phantom(label, seed, 128)
            assert check_image(img) is None, (label, seed, failed_checks(image_stats(img)))
    img = make_phantom("normal", 0, 128)
    assert "aspect" in failed_checks(image_stats(img, width=1200, height=300))
    assert "inverted" in failed_checks(image_stats(255 - make_phantom("normal", 1, 128)))


def _blown_up(seed: int, small: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tiny = Image.fromarray(rng.integers(0, 256, (small, small)).astype(np.uint8))
    return np.asarray(tiny.resize((size, size), Image.BICUBIC))


def test_fine_detail_flags_blown_up_pictures_and_smooth_fields_but_not_xrays():
    from cxrtool.imagecheck import fine_detail

    for seed in range(4):  # a picture of 8 pixels blown up to 256: no detail at the finest scale
        img = _blown_up(seed, 8)
        assert "no-detail" in failed_checks(image_stats(img)), fine_detail(img)
    y, x = np.mgrid[0:200, 0:200]
    density = (255 * np.exp(-((x - 90) ** 2 + (y - 110) ** 2) / (2 * 45.0 ** 2))).astype(np.uint8)
    assert "no-detail" in failed_checks(image_stats(density))
    for label in ("covid", "pneumonia", "normal"):  # phantoms, also after a harsh JPEG round trip
        for size in (64, 256, 512):
            img = make_phantom(label, 3, size)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=15)
            jpeg = np.asarray(Image.open(buf))
            for version in (img, jpeg):
                assert "no-detail" not in failed_checks(image_stats(version)), (label, size, fine_detail(version))
    assert np.isnan(fine_detail(make_phantom("covid", 0, 24)))  # too small to judge: not flagged
    assert "no-detail" not in failed_checks(image_stats(make_phantom("covid", 0, 24)))


def test_predict_gradcam_and_evaluate_judge_a_file_alike(tmp_path):
    """The checks judge the image the model sees (cxrtool.imagecheck.file_views): predict's
    decoding threads, gradcam's reader and evaluate's model-size arrays give every file the
    same flag, at the default input sizes."""
    from cxrtool.evaluate.ood_section import image_checks
    from cxrtool.gradcam.files import _read
    from cxrtool.imagecheck import batch_checks
    from cxrtool.predict import decode_and_check

    pictures = {"phantom": make_phantom("normal", 1, 300), "blown-up": _blown_up(0, 8, 300),
                "noise": np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8),
                "document": np.asarray(make_non_xray("document", 0, 300).convert("L"))}
    expected = {"phantom": None, "blown-up": NOT_XRAY, "noise": NOT_XRAY, "document": NOT_XRAY}
    for name, img in pictures.items():
        Image.fromarray(img).save(tmp_path / f"{name}.png")
    for size in (100, 224):
        model_inputs = []
        for name in pictures:
            path = str(tmp_path / f"{name}.png")
            px, seen = decode_and_check(path, size)
            assert batch_checks([seen])[0][0] == _read(path, size)[2] == expected[name], (name, size)
            model_inputs.append(px)
        assert image_checks(np.stack(model_inputs))[0] == list(expected.values())


def test_the_checks_judge_the_file_itself_when_the_model_input_is_smaller_than_the_thumbnail():
    from cxrtool.imagecheck import THUMB, file_views, judged_image
    from cxrtool.inputs import resize_image

    full = _blown_up(0, 8, 512)
    for size, judged in ((24, full), (THUMB, resize_image(full, THUMB)), (100, resize_image(full, 100))):
        model_input = resize_image(full, size)
        assert np.array_equal(judged_image(full, model_input), judged)
        seen = file_views(full, model_input, width=512, height=512)
        assert seen.width == seen.height == 512
    # the 24 px model input alone is too small to judge its detail; the file is not, and has none
    assert np.isnan(image_stats(resize_image(full, 24))["detail"])
    assert "no-detail" in failed_checks(image_stats(judged_image(full, resize_image(full, 24))))


@pytest.mark.skipif(not SOURCES.is_dir(), reason="real sources not present (../shared/data/sources)")
def test_real_radiographs_pass_the_fine_detail_check():
    """Every one of the 8,895 shared X-rays passes (lowest 0.031 against the 0.020 limit on
    the 100 px model input, docs/ood.md); here an even sample of each source, as predict
    judges them for a 100 px and a 224 px model."""
    from cxrtool.imagecheck import LIMITS, fine_detail
    from cxrtool.imageio import find_images, read_image
    from cxrtool.inputs import resize_image

    files = []
    for folder in ("chest_xray", "COVID-19_Radiography_Dataset", "Figure1-COVID-chestxray-dataset"):
        found = sorted(find_images(SOURCES / folder))
        files += found[:: max(1, len(found) // 20)][:20]
    if not files:
        pytest.skip("no images under the real sources")
    for size in (100, 224):
        values = {str(p): fine_detail(resize_image(read_image(p).pixels, size)) for p in files}
        assert min(values.values()) > LIMITS.min_detail, (size, min(values.items(), key=lambda kv: kv[1]))


def test_colour_is_measured_on_the_file_and_grey_rgb_is_not_colour(tmp_path):
    from cxrtool.imageio import read_image

    grey_rgb = Image.fromarray(make_phantom("covid", 0, 96)).convert("RGB")
    grey_rgb.save(tmp_path / "grey.png")
    make_non_xray("colour", 0, 96).save(tmp_path / "colour.png")
    assert read_image(tmp_path / "grey.png").colour == 0.0
    assert read_image(tmp_path / "colour.png").colour > 0.5


def test_imagecheck_and_ood_import_no_keras():
    code = ("import sys, cxrtool.imagecheck, cxrtool.ood, cxrtool.imageio, cxrtool.synthetic.nonxray; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'jax', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------
# statistics (numpy)
# --------------------------------------------------------------------------------------


def test_mahalanobis_statistics_separate_far_points_and_survive_packing():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (3, 20))
    y = np.repeat(np.arange(3), 200)
    feats = centres[y] + rng.normal(0, 1, (600, 20))
    stats = fit_stats(feats, y, dims=8)
    val = centres[np.repeat(np.arange(3), 50)] + rng.normal(0, 1, (150, 20))
    val_scores = set_threshold(stats, val, 0.99)
    assert np.mean(val_scores > 1) <= 0.02
    far = rng.normal(0, 1, (50, 20)) * 10 + 30
    assert np.all(stats.score(far) > 1)
    again = Stats.from_record(json.loads(json.dumps(stats.to_record())))
    assert np.allclose(again.score(val), stats.score(val), rtol=1e-5)
    a = rng.normal(size=(3, 4)).astype(np.float32)
    assert np.array_equal(unpack(pack(a)), a)


def test_layout_score_separates_smooth_non_chest_pictures_from_phantom_films():
    """The layout statistics (no network) on standardised thumbnails: fitted on phantom films,
    they pass new phantoms and reject smooth grey pictures a small cnn may place near its X-rays
    (other anatomy, a blurred random field standing in for an elevation map)."""
    from PIL import ImageFilter

    from cxrtool.ood import Judge, layout_thumbnails

    labels = ("covid", "pneumonia", "normal")
    train = np.stack([make_phantom(labels[i % 3], i, 48) for i in range(150)])
    val = np.stack([make_phantom(labels[i % 3], 1000 + i, 48) for i in range(60)])
    test = np.stack([make_phantom(labels[i % 3], 5000 + i, 48) for i in range(60)])
    layout = fit_stats(layout_thumbnails(train), np.zeros(len(train)), dims=64)
    assert np.mean(set_threshold(layout, layout_thumbnails(val), 0.995) > 1) <= 0.02
    assert np.mean(layout.score(layout_thumbnails(test)) > 1) <= 0.05
    rng = np.random.default_rng(0)
    fields = [np.asarray(Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(6)))
              for _ in range(10)]
    others = [np.asarray(make_non_xray(k, s, 48).convert("L")) for k in ("skull", "hand") for s in range(10)]
    assert np.all(layout.score(layout_thumbnails(np.stack(fields + others))) > 1)
    # the same pixels as uint8 (fit) or float32 model input (scoring) give the same thumbnails
    assert np.allclose(layout_thumbnails(train[:4]), layout_thumbnails(train[:4].astype(np.float32)[..., None]))
    # a Judge takes the larger of the feature and layout scores; an old record has no layout
    feats = np.zeros((2, 3))
    features = fit_stats(np.random.default_rng(1).normal(size=(50, 3)), np.zeros(50), dims=2)
    judge = Judge(features, layout)
    pictures = np.stack([test[0], fields[0]])
    assert np.allclose(judge.score(feats, pictures), np.maximum(features.score(feats), layout.score(layout_thumbnails(pictures))))
    assert Judge.from_record(features.to_record()).layout is None


def test_picture_score_catches_what_passes_every_image_limit():
    """The picture statistics (the image checks' numbers and the grey histogram, jointly),
    fitted on phantom films: new phantoms pass; pictures that pass every single image check
    (a skull, a hand, a fractal-like bright blob on black) sit far from them together."""
    from cxrtool.ood import Judge, picture_vectors
    from cxrtool.imagecheck import PICTURE_KEYS

    labels = ("covid", "pneumonia", "normal")
    train = np.stack([make_phantom(labels[i % 3], i, 64) for i in range(150)])
    val = np.stack([make_phantom(labels[i % 3], 1000 + i, 64) for i in range(60)])
    test = np.stack([make_phantom(labels[i % 3], 5000 + i, 64) for i in range(60)])
    vectors = picture_vectors(train)
    assert vectors.shape == (150, len(PICTURE_KEYS)) and np.isfinite(vectors).all()
    scale = vectors.std(axis=0) + 1e-6
    picture = fit_stats(vectors / scale, np.zeros(len(train)), dims=64)
    assert np.mean(set_threshold(picture, picture_vectors(val) / scale, 0.995) > 1) <= 0.02
    assert np.mean(picture.score(picture_vectors(test) / scale) > 1) <= 0.05
    y, x = np.mgrid[0:64, 0:64]
    blob = np.where(np.hypot(x - 44, y - 30) < 18, 250, 20 + 30 * np.sin(x / 3) ** 2).astype(np.uint8)
    others = np.stack([np.asarray(make_non_xray(k, s, 64).convert("L")) for k in ("skull", "hand") for s in range(5)] + [blob])
    passing = [o for o in others if not failed_checks(image_stats(o))]
    assert len(passing) >= 5  # the point: these pass every fixed limit ...
    assert np.all(picture.score(picture_vectors(np.stack(passing)) / scale) > 1)  # ... but not jointly
    # uint8 (fit) and float32 model input (scoring) give the same vectors; a Judge takes the largest
    # score and uses vectors computed elsewhere (predict's decoding threads) when given
    assert np.allclose(picture_vectors(train[:4]), picture_vectors(train[:4].astype(np.float32)[..., None]))
    features = fit_stats(np.random.default_rng(1).normal(size=(50, 3)), np.zeros(50), dims=2)
    judge = Judge(features, None, picture=picture, picture_scale=scale)
    feats, images = np.zeros((2, 3)), np.stack([test[0], blob])
    expected = np.maximum(features.score(feats), picture.score(picture_vectors(images) / scale))
    assert np.allclose(judge.score(feats, images), expected)
    assert np.allclose(judge.score(feats, images, picture_vectors(images)), expected)
    old = Judge.from_record(features.to_record())  # a record from before the picture score
    assert old.picture is None and np.allclose(old.score(feats, images), features.score(feats))


def test_edge_histograms_say_where_edges_are_and_which_way_they_run():
    from cxrtool.ood import edge_histograms

    y, x = np.mgrid[0:64, 0:64].astype(np.float64)
    across = 128 + 100 * np.sin(x / 3)  # grey changes along x: vertical edges, gradient direction 0
    down = 128 + 100 * np.sin(y / 3)  # along y: horizontal edges, direction 90 degrees (bin 4 of 8)
    h = edge_histograms(np.stack([across, down]))
    assert h.shape == (2, 4 * 4 * 8) and np.allclose(h.sum(axis=1), 1)
    by_direction = h.reshape(2, 16, 8).sum(axis=1)
    assert by_direction[0, 0] > 0.95 and by_direction[1, 4] > 0.95
    # only where the edges are: a bright square in the top-left cell puts its edges there
    corner = np.zeros((64, 64))
    corner[4:12, 4:12] = 200
    assert edge_histograms(corner[None]).reshape(16, 8).sum(axis=1)[0] > 0.95
    # exposure and contrast do not count; the model input's float32 (n, s, s, 1) gives the same
    film = make_phantom("normal", 0, 100).astype(np.float64)
    assert np.allclose(edge_histograms(film[None]), edge_histograms((0.5 * film + 40)[None]))
    assert np.allclose(edge_histograms(film[None].astype(np.uint8)), edge_histograms(film.astype(np.float32)[None, ..., None]))
    with pytest.raises(ValueError, match="multiple"):
        edge_histograms(film[None], side=50, cells=4)


def test_unseen_threshold_holds_its_quantile_on_new_data_where_the_training_distances_do_not():
    """The image parts' thresholds: the quantile of val and out-of-fold training distances.
    On new draws from the training distribution the flagged fraction stays near 1 - quantile;
    a threshold from the training distances themselves (the statistics were fitted on them)
    flags far more."""
    from cxrtool.ood import fit_unseen_threshold

    rng = np.random.default_rng(0)
    cov = np.diag(np.linspace(4, 0.1, 40))
    draw = lambda n: rng.multivariate_normal(np.zeros(40), cov, n)  # noqa: E731
    train, val, new = draw(300), draw(60), draw(20000)
    stats, val_scores = fit_unseen_threshold(train, val, quantile=0.99)
    assert np.allclose(val_scores, stats.score(val))
    assert np.mean(stats.score(new) > 1) < 0.02
    in_sample = fit_stats(train, np.zeros(len(train)))
    in_sample.threshold = float(np.quantile(in_sample.distance(train), 0.99))
    assert np.mean(in_sample.score(new) > 1) > 2 * np.mean(stats.score(new) > 1)
    # no val split: the out-of-fold distances alone
    alone, none = fit_unseen_threshold(train, np.zeros((0, 40)), quantile=0.99)
    assert len(none) == 0 and np.mean(alone.score(new) > 1) < 0.02


def test_edge_histograms_equal_their_plain_numpy_form():
    """The gradient as slices and the modulo without a division give the very numbers of
    ``np.gradient`` and ``%`` (the fit and every stored record used those)."""
    from cxrtool.inputs import resize_image
    from cxrtool.ood import _gradient, _thumbnail_chunks, edge_histograms

    def plain(x, side, cells, bins):
        length, band = cells * cells * bins, np.arange(side) // (side // cells)
        first_bin = (band[:, None] * cells + band[None, :]) * bins
        (_, t), = _thumbnail_chunks(x, side, dtype=np.float32)
        gy, gx = np.gradient(t, axis=(1, 2))
        direction = np.floor(np.arctan2(gy, gx) * np.float32(bins / np.pi) + np.float32(0.5)).astype(np.int64) % bins
        index = np.arange(len(t))[:, None, None] * length + first_bin + direction
        h = np.bincount(index.ravel(), weights=np.sqrt(gx * gx + gy * gy).ravel(), minlength=len(t) * length)
        h = h.reshape(len(t), length)
        return h / (h.sum(axis=1, keepdims=True) + 1e-9)

    rng = np.random.default_rng(0)
    images = [make_phantom(label, seed, 100) for label in ("covid", "normal") for seed in range(3)]
    images += [resize_image(np.asarray(make_non_xray(kind, 0, (160, 120)).convert("L")), 100) for kind in KINDS]
    images += [np.zeros((100, 100), np.uint8), rng.integers(0, 256, (100, 100), dtype=np.uint8)]
    x = np.stack(images)
    for grid in ((64, 4, 8), (32, 2, 4), (48, 4, 6)):
        assert np.array_equal(edge_histograms(x, *grid), plain(x, *grid)), grid
    t = rng.normal(size=(3, 7, 11)).astype(np.float32)
    assert all(np.array_equal(_gradient(t, axis), np.gradient(t, axis=axis)) for axis in (0, 1, 2))


def test_edge_score_catches_other_anatomy_and_the_judge_takes_the_largest_score():
    """Fitted on phantom films, the edge statistics pass new phantoms and reject other anatomy
    (a skull, a hand); a Judge takes the largest of its scores; an older record has no edges."""
    from cxrtool.ood import Judge, edge_histograms, fit_unseen_threshold

    labels = ("covid", "pneumonia", "normal")
    train = np.stack([make_phantom(labels[i % 3], i, 64) for i in range(150)])
    val = np.stack([make_phantom(labels[i % 3], 1000 + i, 64) for i in range(60)])
    test = np.stack([make_phantom(labels[i % 3], 5000 + i, 64) for i in range(60)])
    edges, _ = fit_unseen_threshold(edge_histograms(train), edge_histograms(val), quantile=0.997)
    assert np.mean(edges.score(edge_histograms(test)) > 1) <= 0.05
    others = np.stack([np.asarray(make_non_xray(k, s, 64).convert("L")) for k in ("skull", "hand") for s in range(10)])
    assert np.all(edges.score(edge_histograms(others)) > 1)
    features = fit_stats(np.random.default_rng(1).normal(size=(50, 3)), np.zeros(50), dims=2)
    judge = Judge(features, edges=edges)
    feats, images = np.zeros((2, 3)), np.stack([test[0], others[0]])
    assert np.allclose(judge.score(feats, images), np.maximum(features.score(feats), edges.score(edge_histograms(images))))
    record = {**features.to_record(), "edges": {**edges.to_record(), "side": 32, "cells": 2, "bins": 4}}
    assert Judge.from_record(record).edge_grid == (32, 2, 4)  # the grid travels with the statistics
    assert Judge.from_record(features.to_record()).edges is None


def test_predict_prepares_the_checks_in_its_decoding_threads_and_judges_them_per_batch(tmp_path):
    from cxrtool.imagecheck import batch_checks, views
    from cxrtool.ood import picture_vectors
    from cxrtool.predict import decode_and_check

    for size in (24, 64, 100):  # below 64 px the checks look at the full image, the vector at the model input
        items, expected, pixels = [], [], []
        for seed in range(2):
            path = tmp_path / f"{seed}.png"
            full = make_phantom("covid", seed, 300)
            Image.fromarray(full).save(path)
            px, image_views = decode_and_check(str(path), size)
            assert px.shape == (size, size) and image_views.width == 300
            items.append(image_views)
            pixels.append(px)
            expected.append(check_image(px if size >= 64 else full, width=300, height=300))
        flags, pictures = batch_checks(items)
        assert flags == expected == [None, None]
        if size >= 64:  # then predict hands these statistics to the picture score
            assert np.allclose(pictures, picture_vectors(np.stack(pixels)))
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)).save(noise)
    assert batch_checks([decode_and_check(str(noise), 100)[1]])[0] == [NOT_XRAY]


def test_batched_checks_equal_the_checks_image_by_image():
    from cxrtool.imagecheck import PICTURE_KEYS, batch_checks, batch_stats, fine_detail, views

    # sizes that give 64 and 128 px thumbnails, smaller ones, and odd sides (the fine detail's other path)
    images = [make_phantom(label, seed, side) for label in ("covid", "normal") for seed, side in
              enumerate((512, 300, 130, 127, 64, 45, 28))]
    images += [np.asarray(make_non_xray(k, 2, side).convert("L")) for k in KINDS for side in (256, 99)]
    stats = batch_stats([views(g) for g in images])
    for i, g in enumerate(images):
        one = image_stats(g)
        assert set(one) == set(stats)
        for k, v in one.items():
            assert (np.isnan(v) and np.isnan(stats[k][i])) or np.isclose(v, stats[k][i], rtol=1e-5, atol=1e-7), (i, k)
        assert np.isclose(fine_detail(g), one["detail"], equal_nan=True)
    flags, pictures = batch_checks([views(g) for g in images])
    assert flags == [check_image(g) for g in images] and NOT_XRAY in flags and None in flags
    assert np.allclose(pictures, [[image_stats(g)[k] for k in PICTURE_KEYS] for g in images])


def test_fine_detail_enlarges_as_pillow_does():
    """The batched fine detail enlarges the half-size copy with slices; Pillow's own bilinear
    resize is the reference."""
    from cxrtool.imagecheck import _upsample2

    half = np.random.default_rng(0).uniform(0, 255, (3, 16, 10)).astype(np.float32)
    ours = _upsample2(half)
    for img, got in zip(half, ours):
        ref = np.asarray(Image.fromarray(img, mode="F").resize((20, 32), Image.BILINEAR))
        assert np.allclose(got, ref, atol=1e-3)


def test_principal_axes_span_the_svd_subspace_for_tall_and_wide_features():
    from cxrtool.ood import principal_axes

    rng = np.random.default_rng(0)
    for n, d in ((200, 30), (40, 300)):  # D x D Gram matrix, then n x n
        f = rng.normal(size=(n, d)) * np.linspace(3, 0.1, d)
        centred = f - f.mean(axis=0)
        components, squares = principal_axes(centred, 10)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        assert np.allclose(squares, s[:10] ** 2)
        assert np.allclose(components @ components.T, np.eye(10), atol=1e-8)  # orthonormal
        assert np.allclose(np.abs(components @ vt[:10].T), np.eye(10), atol=1e-6)  # the same directions, up to sign
    assert principal_axes(np.zeros((5, 4)), 3)[0].shape == (3, 4)  # no variance: any 3 orthonormal directions
    assert principal_axes(np.zeros((3, 6)), 2)[0].shape == (0, 6)  # ... which the n x n matrix cannot give
    stats = fit_stats(np.ones((3, 6)), np.zeros(3))  # still fits: one arbitrary direction
    assert stats.components.shape == (1, 6) and np.all(np.isfinite(stats.distance(np.ones((2, 6)))))


def test_grid_pool_averages_even_cells_and_grid_one_is_the_global_average():
    from cxrtool.ood import grid_pool

    maps = np.random.default_rng(0).normal(size=(2, 12, 12, 5)).astype(np.float32)
    g3 = grid_pool(maps, 3).reshape(2, 3, 3, 5)
    assert np.allclose(g3[:, 1, 2], maps[:, 4:8, 8:12].mean(axis=(1, 2)))  # row band 1, column band 2
    assert np.allclose(g3.mean(axis=(1, 2)), grid_pool(maps, 1))  # equal cells: their mean is the whole map's
    assert np.allclose(grid_pool(maps, 1), maps.mean(axis=(1, 2)))
    odd = grid_pool(maps[:, :7, :7], 3).reshape(2, 3, 3, 5)  # 7 rows: bands 0-3, 2-5, 4-7 (no row left out)
    assert np.allclose(odd[:, 2, 0], maps[:, 4:7, 0:3].mean(axis=(1, 2)))


def test_the_probe_pools_the_grid_in_the_graph_as_numpy_does(models):
    from cxrtool.artifact import load_model
    from cxrtool.backend import import_keras
    from cxrtool.inference import model_input
    from cxrtool.ood import feature_model, grid_pool

    keras = import_keras()
    model = load_model(models["trained"]).model
    x = model_input([np.asarray(make_phantom(c, s, 96)) for c in ("covid", "normal") for s in range(3)], SIZE)
    maps = np.asarray(keras.Model(model.inputs[0], model.get_layer("avg_pool").input).predict_on_batch(x))
    pooled = np.asarray(model.get_layer("avg_pool")(maps))  # what the classifier reads
    for grid in (1, 2, 3):
        probs, feats = feature_model(model, grid).predict_on_batch(x)
        assert np.allclose(feats, grid_pool(maps, grid), rtol=1e-4, atol=1e-5)
        assert np.allclose(probs, model.predict_on_batch(x), atol=1e-6)
    assert np.allclose(feature_model(model, 1).predict_on_batch(x)[1], pooled, rtol=1e-4, atol=1e-5)
    assert feature_model(model, 3) is feature_model(model, 3)  # one compiled probe per model and grid


def test_a_record_without_a_grid_scores_the_pooled_features_as_before(models):
    """Models fitted before the grid (record without ``grid``) score the map's global average,
    exactly what their avg_pool layer gave when they were fitted."""
    from cxrtool.artifact import load_model
    from cxrtool.backend import import_keras
    from cxrtool.inference import model_input
    from cxrtool.ood import Scorer, fit_stats, set_threshold

    keras = import_keras()
    loaded = load_model(models["trained"])
    record = dict(loaded.info.extra["ood"])
    x = model_input([np.asarray(make_phantom(c, s, 96)) for c in ("covid", "normal") for s in range(6)], SIZE)
    model = loaded.model
    pooled = np.asarray(keras.Model(model.inputs[0], model.get_layer("avg_pool").output).predict_on_batch(x))
    old = fit_stats(pooled, np.arange(len(x)) % 2)
    set_threshold(old, pooled)
    record.update(old.to_record())
    del record["grid"]
    loaded.info.extra = {**loaded.info.extra, "ood": record}
    scorer = Scorer(loaded)
    assert scorer.single.grid == 1
    feats = scorer.probe.predict_on_batch(x)[1]
    assert np.allclose(scorer.single.features.score(np.asarray(feats)), old.score(pooled), rtol=1e-4)
    assert np.all(np.isfinite(scorer.predict(x)[1]))


def test_evaluate_reads_the_checks_and_the_picture_vectors_from_one_pass():
    from cxrtool.evaluate.ood_section import image_checks
    from cxrtool.inputs import resize_image
    from cxrtool.ood import picture_vectors

    x = np.stack([resize_image(make_phantom("normal", 1, 200), 64)]
                 + [resize_image(np.asarray(make_non_xray(k, 3, 200).convert("L")), 64) for k in ("noise", "skull")])
    flags, pictures = image_checks(x)
    assert flags == [check_image(img) for img in x] and flags[0] is None and flags[1] == NOT_XRAY
    assert np.array_equal(pictures, picture_vectors(x))


def test_flag_prefers_the_image_check_and_needs_a_score_above_one():
    assert flag_for(0.5, NOT_XRAY) == NOT_XRAY
    assert flag_for(1.5, None) == OUT_OF_DISTRIBUTION
    assert flag_for(0.99, None) == "" and flag_for(None, None) == ""


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "data", {"train": 10, "val": 8, "test": 4}, size=96)


@pytest.fixture(scope="module")
def models(dataset, tmp_path_factory) -> dict[str, Path]:
    """``trained``: a 1-epoch cnn (train fits the statistics); ``old``: an untrained cnn saved
    without statistics, as a model from before this change."""
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model
    from cxrtool.train import TrainOptions, train

    root = tmp_path_factory.mktemp("models")
    train(dataset, "cnn", options=TrainOptions(epochs=1, image_size=SIZE, batch_size=10, seed=0, lr=3e-3),
          out=root / "trained.keras")
    model = build_model("cnn", image_size=SIZE, weights="none", seed=1)
    save_model(model, root / "old.keras", ModelInfo("cnn", image_size=SIZE, gradcam_layer="feature_map"))
    return {"trained": root / "trained.keras", "old": root / "old.keras"}


@pytest.fixture(scope="module")
def non_xrays(tmp_path_factory) -> list[Path]:
    return write_non_xrays(tmp_path_factory.mktemp("nx"), per_kind=2, size=128)


def _test_images(dataset: Path) -> list[Path]:
    return sorted((dataset / "test").rglob("*.png"))


def _predict(capsys, *args):
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_stores_the_statistics_and_they_load_in_safe_mode(models):
    from cxrtool.artifact import load_model, read_info

    record = read_info(models["trained"]).extra["ood"]
    assert record["method"] == "mahalanobis-pca" and record["threshold"] > 0 and record["n_val"] == 24
    # the feature map's averages over a 3 x 3 grid of cells: 9 x 256 numbers
    assert record["grid"] == 3 and record["feature_dim"] == 9 * 256 and 1 <= record["dims"] <= 64
    layout = record["layout"]  # the grey-layout statistics: 24 x 24 thumbnails, its own threshold
    assert layout["side"] == 24 and layout["threshold"] > 0 and layout["quantile"] == record["quantile"] == 0.997
    assert 0 <= layout["val_flagged"] <= record["val_flagged"] <= 1
    picture = record["picture"]  # the picture statistics: one scale per statistic, its own threshold
    assert picture["threshold"] > 0 and picture["quantile"] == 0.997 and len(unpack(picture["scale"])) == 13
    assert 0 <= picture["val_flagged"] <= record["val_flagged"] <= 1
    edges = record["edges"]  # the edge histograms: 4 x 4 cells of 8 directions on 64 px, its own threshold
    assert (edges["side"], edges["cells"], edges["bins"]) == (64, 4, 8) and edges["threshold"] > 0
    assert unpack(edges["mean"]).shape == (128,) and 0 <= edges["val_flagged"] <= record["val_flagged"] <= 1
    # the image parts' thresholds come from val and out-of-fold training distances; the features' from val
    assert layout["threshold_from"] == picture["threshold_from"] == edges["threshold_from"] == "val+train-folds"
    assert record["threshold_from"] == "val"
    loaded = load_model(models["trained"])
    from cxrtool.ood import Scorer

    assert Scorer(loaded).available and not Scorer(load_model(models["old"])).available


def test_predict_columns_and_flags(capsys, models, dataset, non_xrays):
    xrays = _test_images(dataset)
    code, out, err = _predict(capsys, "--model", models["trained"], *non_xrays, *xrays)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and list(rows[0])[-3:] == ["error", "ood_score", "flag"]
    by_path = {r["path"]: r for r in rows}
    for p in non_xrays:
        kind = p.stem.rsplit("-", 1)[0]
        if kind in IMAGE_LEVEL:
            assert by_path[str(p)]["flag"] == NOT_XRAY, p
        assert by_path[str(p)]["label"]  # the prediction is still given
    assert all(by_path[str(p)]["ood_score"] != "" for p in xrays)
    assert all(by_path[str(p)]["flag"] != NOT_XRAY for p in xrays)
    n_flagged = sum(1 for r in rows if r["flag"])
    assert sum(1 for p in non_xrays if by_path[str(p)]["flag"]) >= 0.8 * len(non_xrays)
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {n_flagged} of {len(rows)} inputs flagged")

    code, out, _ = _predict(capsys, "--model", models["trained"], non_xrays[0], xrays[0], "--format", "jsonl")
    recs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and recs[0]["flag"] == NOT_XRAY and isinstance(recs[0]["ood_score"], float)
    assert {"ood_score", "flag"} <= set(recs[1])


def test_on_flag_keep_drop_fail(capsys, models, dataset, non_xrays):
    noise, xray = non_xrays[KINDS.index("noise") * 2], _test_images(dataset)[0]
    code, out, err = _predict(capsys, "--model", models["trained"], noise, xray, "--on-flag", "drop")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and str(noise) not in [r["path"] for r in rows] and "left out" in err
    code, out, err = _predict(capsys, "--model", models["trained"], noise, xray, "--on-flag", "fail")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1 and rows[0]["path"] == str(noise) and rows[0]["error"] == f"flagged: {NOT_XRAY}"
    assert rows[0]["label"] == rows[0]["probability"] == "" and f"error: {noise}: flagged" in err
    code, out, _ = _predict(capsys, "--model", models["trained"], noise, xray, "--on-flag", "keep")
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 2
    code, _, err = _predict(capsys, "--model", models["trained"], xray, "--on-flag", "ignore")
    assert code == 2 and "--on-flag" in err


def test_old_model_predicts_with_the_score_unavailable_then_fit_ood(capsys, models, dataset, non_xrays, tmp_path):
    noise, xray = non_xrays[KINDS.index("noise") * 2], _test_images(dataset)[0]
    code, out, err = _predict(capsys, "--model", models["old"], noise, xray)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and "no OOD statistics" in err
    assert [r["ood_score"] for r in rows] == ["", ""] and rows[0]["flag"] == NOT_XRAY and rows[1]["label"]

    fitted = tmp_path / "fitted.keras"
    code = main(["fit-ood", str(models["old"]), "--data", str(dataset), "--out", str(fitted)])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == str(fitted) and "threshold" in err
    code, out, err = _predict(capsys, "--model", fitted, xray)
    assert code == 0 and list(csv.DictReader(io.StringIO(out)))[0]["ood_score"] != ""
    assert "no OOD statistics" not in err


def test_ensemble_flags_when_any_member_does(models, dataset, tmp_path):
    from cxrtool.artifact import load_model
    from cxrtool.ensemble import build_ensemble
    from cxrtool.inference import model_input
    from cxrtool.ood import Scorer, fit_ood_model

    fitted = fit_ood_model(models["old"], dataset, out=tmp_path / "m2.keras").model_path
    ens = build_ensemble([models["trained"], fitted], out=tmp_path / "ens.keras").model_path
    half = build_ensemble([models["trained"], models["old"]], out=tmp_path / "half.keras").model_path
    rng = np.random.default_rng(0)
    images = [make_phantom("covid", 5, 96), make_non_xray("skull", 0, 96).convert("L"), rng.integers(0, 256, (96, 96))]
    x = model_input([np.asarray(im, np.uint8) for im in images], SIZE)
    s_ens = Scorer(load_model(ens)).predict(x)[1]
    s_a = Scorer(load_model(models["trained"])).predict(x)[1]
    s_b = Scorer(load_model(fitted)).predict(x)[1]
    assert np.allclose(s_ens, np.maximum(s_a, s_b), rtol=1e-4)
    assert np.allclose(Scorer(load_model(half)).predict(x)[1], s_a, rtol=1e-4)  # the member without statistics is skipped


def test_evaluate_reports_flagged_fractions_and_metrics_without_them(models, dataset):
    from cxrtool.evaluate import evaluate

    doc = evaluate(dataset, [str(models["trained"]), str(models["old"])], n_boot=0)
    o = doc["models"]["trained"]["ood"]
    assert o["available"] and o["n"] == 12 and set(o["per_class"]) == {"covid", "pneumonia", "normal"}
    assert sum(v["n"] for v in o["per_source"].values()) == 12
    assert sum(v["flagged"] for v in o["per_class"].values()) == o["flagged"]
    assert o["unflagged"]["n"] == 12 - o["flagged"] and o["all"]["accuracy"] == pytest.approx(
        doc["models"]["trained"]["metrics"]["accuracy"])
    assert not doc["models"]["old"]["ood"]["available"]


def test_gradcam_says_when_the_input_is_flagged(capsys, models, dataset, non_xrays, tmp_path):
    noise, xray = non_xrays[KINDS.index("noise") * 2], _test_images(dataset)[0]
    code = main(["gradcam", "--model", str(models["trained"]), str(noise), str(xray), "--out", str(tmp_path / "g")])
    out, _ = capsys.readouterr()
    lines = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and lines[0][0] == str(noise) and NOT_XRAY in lines[0][4].split(",")
    flagged = np.asarray(Image.open(lines[0][3]).convert("RGB"))
    assert flagged[-2, 2, 0] > 150 and flagged[-2, 2, 1] < 80  # the red band at the bottom
    assert lines[1][0] == str(xray) and (len(lines[1]) == 4 or OUT_OF_DISTRIBUTION in lines[1][4].split(","))


def test_the_forward_pass_runs_while_the_caller_works_and_gives_keras_own_outputs(models):
    """predict starts the model (Scorer.dispatch), judges the pictures while it runs, then
    reads the result (Scorer.finish): the same probabilities and scores as Keras's own
    predict_on_batch; the weights are read at each call, so a model changed since is seen."""
    from cxrtool.artifact import load_model
    from cxrtool.ood import Scorer, async_forward

    loaded = load_model(models["trained"])
    x = np.stack([make_phantom(label, 7, SIZE) for label in ("covid", "normal", "pneumonia")]).astype(np.float32)[..., None]
    scorer = Scorer(loaded)
    probs_keras, feats = scorer.probe.predict_on_batch(x)
    probs, scores = scorer.finish(scorer.dispatch(x), x)
    assert np.allclose(probs, probs_keras, atol=1e-6)
    assert np.allclose(scores, scorer.single.score(np.asarray(feats), x), rtol=1e-5)
    assert np.allclose(scorer.predict(x)[1], scores)
    plain = Scorer(load_model(models["old"]))
    probs, scores = plain.finish(plain.dispatch(x), x)
    assert scores is None and np.allclose(probs, plain.loaded.model.predict_on_batch(x), atol=1e-6)
    model = plain.loaded.model
    forward = async_forward(model)
    before = np.asarray(forward(x))
    kernel = next(v for v in model.trainable_variables if len(v.shape) == 4)
    kernel.assign(np.asarray(kernel.value) * 0.5)
    after = np.asarray(forward(x))
    assert not np.allclose(before, after) and np.allclose(after, model.predict_on_batch(x), atol=1e-6)


def test_a_cached_forward_pass_does_not_keep_its_model_alive():
    import gc
    import weakref

    from cxrtool.models import build_model
    from cxrtool.ood import _FORWARDS, async_forward

    model = build_model("cnn", image_size=SIZE, weights="none", seed=2)
    x = np.zeros((2, SIZE, SIZE, 1), np.float32)
    assert np.asarray(async_forward(model)(x)).shape == (2, 3)
    assert model in _FORWARDS
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


# ------------------------------------------------------------------ the group-shift test


def _reference(scores_by_class: dict[str, np.ndarray]) -> dict:
    classes = list(scores_by_class)
    labels = [i for i, c in enumerate(classes) for _ in scores_by_class[c]]
    return {"split": "val", "classes": classes, "labels": labels,
            "scores": pack(np.concatenate([scores_by_class[c] for c in classes]))}


def test_group_shift_compares_each_class_with_its_own_val_scores():
    from cxrtool.ood import SHIFT_MIN_IMAGES, group_shift

    rng = np.random.default_rng(0)
    centres = {"covid": 0.45, "pneumonia": 0.25, "normal": 0.30}  # classes score differently, as on real films
    ref = _reference({c: rng.normal(m, 0.08, 80) for c, m in centres.items()})

    def draw(shift: dict[str, float], n: int = 150) -> tuple[np.ndarray, list[str]]:
        names = [c for c in shift for _ in range(n)]
        return np.concatenate([rng.normal(centres[c] + d, 0.08, n) for c, d in shift.items()]), names

    same = group_shift(*draw({"covid": 0, "pneumonia": 0, "normal": 0}), ref)
    assert same["available"] and same["tested"] == 3 and not same["shifted"]
    # a set of one class is compared with that class: covid alone scores far above the val
    # images as a whole, but not above the val covid images
    alone = group_shift(*draw({"covid": 0}), ref)
    assert alone["tested"] == 1 and not alone["shifted"] and set(alone["per_class"]) == {"covid"}
    up = group_shift(*draw({"covid": 0, "pneumonia": 0, "normal": 0.06}), ref)
    assert up["shifted"] and up["per_class"]["normal"]["shifted"] and up["per_class"]["normal"]["ks_d"] > 0.2
    assert not up["per_class"]["covid"]["shifted"] and not up["per_class"]["pneumonia"]["shifted"]
    assert up["per_class"]["normal"]["median"] > up["per_class"]["normal"]["reference_median"]
    down = group_shift(*draw({"normal": -0.06}), ref)  # lower scores: more like the training data, no alarm
    assert not down["shifted"] and down["per_class"]["normal"]["p"] > 0.5
    few = group_shift(*draw({"normal": 0.2}, n=SHIFT_MIN_IMAGES - 1), ref)  # listed, not tested
    assert few["tested"] == 0 and not few["shifted"] and "p" not in few["per_class"]["normal"]
    assert few["per_class"]["normal"]["n"] == SHIFT_MIN_IMAGES - 1
    assert group_shift(np.zeros(3), ["normal"] * 3, None) == {"available": False, "tested": 0, "shifted": False}


def test_group_shift_holds_its_false_alarm_rate_on_unshifted_sets():
    """Without a shift the family-wise alarm rate stays within SHIFT_ALPHA (Bonferroni, one-sided KS)."""
    from cxrtool.ood import SHIFT_ALPHA, group_shift

    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(400):
        ref = _reference({c: rng.gamma(4, 0.07, 70) for c in ("covid", "pneumonia", "normal")})
        scores = rng.gamma(4, 0.07, 300)
        alarms += group_shift(scores, ["covid", "pneumonia", "normal"] * 100, ref)["shifted"]
    # at most 0.01 expected: measured 4, 2 and 3 of 400 over seeds 1-3 (this draw is seeded: 4);
    # without the Bonferroni division over the 3 classes the same draws give 9, 9 and 8
    assert alarms / 400 <= 1.5 * SHIFT_ALPHA


def test_train_keeps_the_val_scores_and_evaluate_scores_the_val_images_alike(models, dataset):
    """The reference is scored by the code that scores every later input: evaluating the val
    split gives back the stored scores, class by class."""
    from cxrtool.artifact import read_info
    from cxrtool.evaluate import evaluate
    from cxrtool.evaluate.ood_section import shift_sentence

    info = read_info(models["trained"])
    ref = info.extra["ood"]["reference"]
    assert ref["split"] == "val" and ref["classes"] == list(info.classes) and len(ref["labels"]) == 24
    doc = evaluate(dataset, [str(models["trained"]), str(models["old"])], split="val", n_boot=0)
    shift = doc["models"]["trained"]["ood"]["group_shift"]
    assert shift["available"] and set(shift["per_class"]) == {"covid", "pneumonia", "normal"}
    for e in shift["per_class"].values():
        assert e["n"] == e["reference_n"] == 8 and e["median"] == pytest.approx(e["reference_median"], rel=1e-5)
    # 8 val images a class: listed, too few to test
    assert shift["tested"] == 0 and "not tested: no class has 20 images" in shift_sentence(shift)
    old = doc["models"]["old"]["ood"]["group_shift"]
    assert not old["available"] and "no OOD statistics" in shift_sentence(old)


def test_the_group_shift_says_why_it_was_not_tested(models, dataset, tmp_path):
    from cxrtool.artifact import load_model, save_model
    from cxrtool.ensemble import build_ensemble
    from cxrtool.evaluate import evaluate
    from cxrtool.evaluate.ood_section import shift_sentence

    loaded = load_model(models["trained"])  # statistics fitted before the reference was kept
    del loaded.info.extra["ood"]["reference"]
    save_model(loaded.model, tmp_path / "earlier.keras", loaded.info)
    ens = build_ensemble([models["trained"], tmp_path / "earlier.keras"], out=tmp_path / "ens.keras").model_path
    doc = evaluate(dataset, [str(tmp_path / "earlier.keras"), str(ens)], n_boot=0)
    earlier, ensemble = (doc["models"][k]["ood"] for k in ("earlier", "ens"))
    assert earlier["available"] and not earlier["group_shift"]["available"]
    assert "refit them with `cxrtool fit-ood`" in shift_sentence(earlier["group_shift"])
    assert ensemble["available"] and "not for ensembles" in shift_sentence(ensemble["group_shift"])


def _write_folder(root: Path, images: dict[str, list[np.ndarray]]) -> Path:
    for label, arrays in images.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(root / label / f"{label}-{i:03d}.png")
    return root


def test_evaluate_says_when_a_whole_folder_is_shifted(capsys, models, tmp_path):
    """A folder of new films like the val films passes; the same films darkened (gamma 1.3,
    as another hospital's exposure might make them) are reported shifted as a group, in
    metrics.json, on stderr and in report.md. (With this tiny 24 px model many of them are
    also flagged one by one; docs/ood.md measures a real held-out source, 0.8% flagged.)"""
    from cxrtool.artifact import read_info

    data = make_dataset(tmp_path / "ds", {"train": 10, "val": 20}, size=96, seed=3)
    fitted = tmp_path / "fitted.keras"
    assert main(["fit-ood", str(models["trained"]), "--data", str(data), "--out", str(fitted)]) == 0
    assert len(read_info(fitted).extra["ood"]["reference"]["labels"]) == 60
    k = 500_000
    films = {c: [make_phantom(c, k + 1000 * j + i, 96) for i in range(30)] for j, c in enumerate(CLASSES)}

    def other_hospital(a: np.ndarray) -> np.ndarray:
        return (255 * (a / 255.0) ** 1.3).astype(np.uint8)

    same = _write_folder(tmp_path / "same", films)
    other = _write_folder(tmp_path / "other", {c: [other_hospital(a) for a in v] for c, v in films.items()})
    capsys.readouterr()
    for folder, shifted in ((same, False), (other, True)):
        out = tmp_path / f"ev-{folder.name}"
        assert main(["evaluate", str(folder), "-m", str(fitted), "--out", str(out), "--bootstrap", "0"]) == 0
        err = capsys.readouterr().err
        shift = json.loads((out / "metrics.json").read_text())["models"]["fitted"]["ood"]["group_shift"]
        assert shift["tested"] == 3 and shift["shifted"] is shifted, shift
        said = [line for line in err.splitlines() if "group shift" in line or "as a group" in line]
        assert len(said) == 1 and said[0].startswith("warning: fitted: as a group" if shifted else "fitted: no group shift")
        assert ("as a group" in (out / "report.md").read_text()) is shifted
