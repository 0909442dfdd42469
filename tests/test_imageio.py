"""The one image loader: every format it claims to read, every way a file can be bad.

Every file is generated here, in ``tmp_path``; nothing is read from the real data sources.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, features

from cxrtool import imageio
from cxrtool.errors import (
    CorruptImageError,
    EmptyFileError,
    ImageLoadError,
    ImageTooLargeError,
    MissingFileError,
    NotAnImageError,
    UnsupportedImageError,
)
from cxrtool.imageio import (
    MAX_PIXELS,
    LoadedImage,
    find_images,
    is_image_file,
    is_junk,
    iter_images,
    load_image,
    read_image,
)

ORIENTATION = 0x0112


# --------------------------------------------------------------------------- helpers


def gradient(h: int = 24, w: int = 32) -> np.ndarray:
    """A uint8 image with distinct, smooth values (survives JPEG well)."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 255) // max(w - 1, 1) // 2 + (y * 255) // max(h - 1, 1) // 2).astype(np.uint8)


def save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def assert_gray_uint8(img: LoadedImage, h: int, w: int) -> None:
    assert img.pixels.dtype == np.uint8
    assert img.pixels.ndim == 2
    assert img.pixels.shape == (h, w)
    assert (img.width, img.height) == (w, h)
    assert img.pixels.flags["C_CONTIGUOUS"]


def assert_load_error(exc_type: type[ImageLoadError], path: Path, **kw) -> ImageLoadError:
    """``read_image(path)`` raises exactly ``exc_type``, naming the file and giving a reason."""
    with pytest.raises(ImageLoadError) as info:
        read_image(path, **kw)
    err = info.value
    assert type(err) is exc_type, f"{type(err).__name__}: {err}"
    assert str(path) in str(err)
    assert err.path == Path(path)
    assert err.reason and err.reason.strip()
    assert str(err) != str(path)  # a reason beyond the path
    return err


# --------------------------------------------------------------------------- formats


def test_png_8bit_gray_is_exact(tmp_path):
    a = gradient()
    img = read_image(save(Image.fromarray(a, "L"), tmp_path / "a.png"))
    assert_gray_uint8(img, *a.shape)
    assert (img.format, img.mode, img.bits) == ("PNG", "L", 8)
    np.testing.assert_array_equal(img.pixels, a)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), a)


def test_png_rgb_uses_luminance(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:8] = (0, 255, 0)
    rgb[:, 8:] = (90, 90, 90)  # gray stays gray
    img = read_image(save(Image.fromarray(rgb, "RGB"), tmp_path / "c.png"))
    assert_gray_uint8(img, 10, 12)
    assert img.mode == "RGB"
    # ITU-R 601-2 luma, as Pillow's convert("L")
    assert abs(int(img.pixels[0, 0]) - 76) <= 1
    assert abs(int(img.pixels[0, 5]) - 150) <= 1
    assert np.all(img.pixels[:, 8:] == 90)


def test_png_rgba_alpha_composited_on_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :4, 3] = 0  # fully transparent: black
    rgba[:, 4:6, 3] = 255  # opaque: the colour
    rgba[:, 6:, 3] = 128  # half: about half the colour
    img = read_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert_gray_uint8(img, 8, 8)
    assert np.all(img.pixels[:, :4] == 0)
    assert np.all(img.pixels[:, 4:6] == 200)
    assert np.all(np.abs(img.pixels[:, 6:].astype(int) - 100) <= 2)


def test_png_gray_alpha_composited_like_rgba(tmp_path):
    """LA used to drop the alpha (transparent areas kept their hidden gray value)."""
    la = np.zeros((6, 6, 2), np.uint8)
    la[..., 0] = 200
    la[:, :3, 1] = 0
    la[:, 3:, 1] = 255
    img = read_image(save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
    assert img.mode == "LA"
    assert np.all(img.pixels[:, :3] == 0)
    assert np.all(img.pixels[:, 3:] == 200)


def _palette_image(transparent: bool) -> Image.Image:
    im = Image.new("P", (6, 4), 1)
    im.putpalette([0, 0, 0, 255, 255, 255, 100, 100, 100] + [0] * (256 * 3 - 9))
    im.paste(2, (0, 0, 3, 4))  # left half gray (index 2), right half white (index 1)
    if transparent:
        im.info["transparency"] = 1
    return im


def test_png_palette_without_transparency(tmp_path):
    path = tmp_path / "p.png"
    _palette_image(False).save(path)
    img = read_image(path)
    assert img.mode == "P"
    assert_gray_uint8(img, 4, 6)
    assert np.all(img.pixels[:, :3] == 100)
    assert np.all(img.pixels[:, 3:] == 255)


def test_png_palette_with_transparency_composited_on_black(tmp_path):
    path = tmp_path / "pt.png"
    _palette_image(True).save(path, transparency=1)
    img = read_image(path)
    assert img.mode == "P"
    assert np.all(img.pixels[:, :3] == 100)
    assert np.all(img.pixels[:, 3:] == 0)  # the transparent white is background black


def test_png_1bit(tmp_path):
    bits = np.zeros((9, 11), bool)
    bits[::2, ::3] = True
    path = save(Image.fromarray(bits), tmp_path / "b.png")
    assert Image.open(path).mode == "1"
    img = read_image(path)
    assert_gray_uint8(img, 9, 11)
    np.testing.assert_array_equal(img.pixels, np.where(bits, 255, 0).astype(np.uint8))


@pytest.mark.parametrize(
    ("top", "bits"),
    [(4095, 12), (65535, 16), (1023, 10)],
)
def test_png_16bit_scaled_by_container_depth_keeps_relative_exposure(tmp_path, top, bits):
    a = np.zeros((10, 20), np.uint16)
    a[0, 0] = top  # the brightest sample
    a[1, 1] = (top + 1) // 2  # half
    a[2, 2] = (top + 1) // 4  # a quarter
    a[3:, :] = (top + 1) // 8
    path = save(Image.fromarray(a), tmp_path / "deep.png")
    img = read_image(path)
    assert img.mode.startswith("I;16")
    assert img.bits == bits
    assert_gray_uint8(img, 10, 20)
    assert img.pixels[0, 0] == 255
    assert img.pixels[1, 1] == 128
    assert img.pixels[2, 2] == 64
    assert img.pixels[5, 5] == 32
    assert img.pixels[0, 5] == 0  # zero stays zero: no min-max stretch
    f = read_image(path, as_float=True).pixels
    assert f.dtype == np.float32
    np.testing.assert_allclose(f, a / top, atol=1e-6)


def test_png_16bit_dim_12bit_image_is_not_stretched(tmp_path):
    """A dark 12-bit exposure (max 3000) stays dark relative to its container (4095)."""
    a = np.full((4, 4), 100, np.uint16)
    a[0, 0] = 3000
    img = read_image(save(Image.fromarray(a), tmp_path / "dim.png"))
    assert img.bits == 12
    assert img.pixels[0, 0] == round(3000 / 4095 * 255)
    assert img.pixels[1, 1] == round(100 / 4095 * 255)


def test_jpeg_baseline_gray_and_rgb(tmp_path):
    a = gradient(32, 48)
    g = read_image(save(Image.fromarray(a, "L"), tmp_path / "g.jpg", quality=95))
    assert_gray_uint8(g, 32, 48)
    assert (g.format, g.mode) == ("JPEG", "L")
    assert np.abs(g.pixels.astype(int) - a).max() <= 8
    rgb = np.repeat(a[..., None], 3, axis=2)
    c = read_image(save(Image.fromarray(rgb, "RGB"), tmp_path / "c.jpeg", quality=95))
    assert_gray_uint8(c, 32, 48)
    assert c.mode == "RGB"
    assert np.abs(c.pixels.astype(int) - a).max() <= 8


def test_jpeg_progressive(tmp_path):
    a = gradient(40, 40)
    path = save(Image.fromarray(a, "L"), tmp_path / "p.jpg", quality=95, progressive=True)
    assert Image.open(path).info.get("progressive") or Image.open(path).info.get("progression")
    img = read_image(path)
    assert_gray_uint8(img, 40, 40)
    assert np.abs(img.pixels.astype(int) - a).max() <= 8


def test_jpeg_cmyk(tmp_path):
    cmyk = np.zeros((8, 10, 4), np.uint8)
    cmyk[:, 5:, 3] = 255  # right half full black ink
    path = save(Image.fromarray(cmyk, "CMYK"), tmp_path / "k.jpg", quality=100)
    img = read_image(path)
    assert img.mode == "CMYK"
    assert_gray_uint8(img, 8, 10)
    assert img.pixels[:, :3].min() >= 245  # no ink: white
    assert img.pixels[:, 7:].max() <= 10  # black ink: black


def test_bmp(tmp_path):
    a = gradient(7, 13)  # odd width: BMP row padding
    img = read_image(save(Image.fromarray(a, "L"), tmp_path / "a.bmp"))
    assert img.format == "BMP"
    np.testing.assert_array_equal(img.pixels, a)


def test_tiff_8bit_and_16bit(tmp_path):
    a = gradient(9, 14)
    img = read_image(save(Image.fromarray(a, "L"), tmp_path / "a.tif"))
    assert img.format == "TIFF"
    np.testing.assert_array_equal(img.pixels, a)

    d = (a.astype(np.uint16) * 16).astype(np.uint16)  # 12-bit content
    d[0, 0] = 4095
    deep = read_image(save(Image.fromarray(d), tmp_path / "d.tiff"))
    assert deep.mode.startswith("I;16")
    assert deep.bits == 12
    assert deep.pixels[0, 0] == 255
    np.testing.assert_allclose(read_image(tmp_path / "d.tiff", as_float=True).pixels, d / 4095, atol=1e-6)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp_lossless(tmp_path):
    a = gradient(16, 20)
    img = read_image(save(Image.fromarray(a, "L"), tmp_path / "a.webp", lossless=True))
    assert img.format == "WEBP"
    assert_gray_uint8(img, 16, 20)
    assert np.abs(img.pixels.astype(int) - a).max() <= 1


def test_format_detected_by_content_not_suffix(tmp_path):
    a = gradient(5, 6)
    path = tmp_path / "mislabelled.jpg"
    Image.fromarray(a, "L").save(path, format="PNG")
    img = read_image(path)
    assert img.format == "PNG"
    np.testing.assert_array_equal(img.pixels, a)


# --------------------------------------------------------------------------- EXIF orientation


def _exif_jpeg(path: Path, orientation: int, h: int = 40, w: int = 64) -> Path:
    """A landscape JPEG, black with a white 8x8 marker in the stored top-left corner."""
    a = np.zeros((h, w), np.uint8)
    a[:8, :8] = 255
    im = Image.fromarray(a, "L")
    exif = im.getexif()
    exif[ORIENTATION] = orientation
    im.save(path, exif=exif, quality=95)
    return path


def _corner_means(p: np.ndarray) -> dict[str, float]:
    return {
        "top-left": float(p[:8, :8].mean()),
        "top-right": float(p[:8, -8:].mean()),
        "bottom-left": float(p[-8:, :8].mean()),
        "bottom-right": float(p[-8:, -8:].mean()),
    }


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [
        (6, "top-right"),  # stored rotated 90 CCW: displayed rotated 90 CW, top-left goes top-right
        (8, "bottom-left"),  # stored rotated 90 CW: top-left goes bottom-left
        (3, "bottom-right"),  # 180
        (1, "top-left"),
    ],
)
def test_exif_orientation_applied(tmp_path, orientation, corner):
    path = _exif_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    img = read_image(path)
    sideways = orientation in (6, 8)
    expected_shape = (64, 40) if sideways else (40, 64)
    assert img.pixels.shape == expected_shape
    # width/height are reported upright, matching the array
    assert (img.height, img.width) == expected_shape
    means = _corner_means(img.pixels)
    assert max(means, key=means.get) == corner, means
    assert means[corner] > 200
    assert all(v < 30 for k, v in means.items() if k != corner), means


def test_exif_orientation_with_draft(tmp_path):
    path = _exif_jpeg(tmp_path / "big6.jpg", 6, h=400, w=640)
    img = read_image(path, draft=50)
    assert (img.width, img.height) == (400, 640)  # upright original size
    h, w = img.pixels.shape
    assert h > w and min(h, w) >= 50 and h < 640


# --------------------------------------------------------------------------- float / draft


def test_as_float_is_uint8_over_255(tmp_path):
    a = gradient()
    path = save(Image.fromarray(a, "L"), tmp_path / "a.png")
    f = read_image(path, as_float=True).pixels
    assert f.dtype == np.float32
    assert f.shape == a.shape
    assert 0.0 <= f.min() and f.max() <= 1.0
    np.testing.assert_array_equal(f, a.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(load_image(path, as_float=True), f)


def test_draft_mode_shrinks_big_jpeg_but_reports_original_size(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1200, 1600), dtype=np.uint8)
    path = save(Image.fromarray(a, "L"), tmp_path / "big.jpg", quality=80)
    full = read_image(path)
    assert full.pixels.shape == (1200, 1600)
    small = read_image(path, draft=256)
    assert (small.width, small.height) == (1600, 1200)
    h, w = small.pixels.shape
    assert h < 1200 and w < 1600
    assert h >= 256 and w >= 256
    assert small.pixels.dtype == np.uint8
    # draft also works for a colour JPEG (decoded straight to grayscale)
    rgb = save(Image.fromarray(a, "L").convert("RGB"), tmp_path / "bigc.jpg", quality=80)
    c = read_image(rgb, draft=256)
    assert c.pixels.ndim == 2 and min(c.pixels.shape) >= 256 and c.pixels.shape[0] < 1200


def test_draft_on_near_square_jpeg_keeps_width_and_height(tmp_path):
    """160x153 at 1/8 scale decodes to exactly 20x20; the sides must not be reported swapped."""
    path = save(Image.fromarray(np.zeros((153, 160), np.uint8), "L"), tmp_path / "sq.jpg")
    img = read_image(path, draft=16)
    assert img.pixels.shape == (20, 20)
    assert (img.width, img.height) == (160, 153)


def test_draft_ignored_for_png(tmp_path):
    a = gradient(64, 64)
    img = read_image(save(Image.fromarray(a, "L"), tmp_path / "a.png"), draft=8)
    np.testing.assert_array_equal(img.pixels, a)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    err = assert_load_error(MissingFileError, tmp_path / "nope.png")
    assert err.kind == "missing"


def test_directory(tmp_path):
    d = tmp_path / "folder.png"
    d.mkdir()
    assert_load_error(NotAnImageError, d)
    assert_load_error(NotAnImageError, tmp_path)


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    err = assert_load_error(EmptyFileError, p)
    assert "empty" in err.reason


def test_text_file_named_png(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("patient list\nnot an image at all\n")
    assert_load_error(NotAnImageError, p)


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(1)
    p = save(Image.fromarray(rng.integers(0, 256, (120, 160), dtype=np.uint8), "L"), tmp_path / "t.png")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    err = assert_load_error(CorruptImageError, p)
    assert "truncated" in err.reason or "corrupt" in err.reason


def test_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(2)
    p = save(Image.fromarray(rng.integers(0, 256, (120, 160), dtype=np.uint8), "L"), tmp_path / "t.jpg")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert_load_error(CorruptImageError, p)


def test_garbage_after_png_signature_is_corrupt_not_unknown(tmp_path):
    p = tmp_path / "g.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes())
    err = assert_load_error(CorruptImageError, p)
    assert "PNG" in err.reason


def test_garbage_after_valid_png_header_chunk(tmp_path):
    """A valid signature and IHDR, then noise where the IDAT data should be."""
    good = save(Image.fromarray(gradient(30, 30), "L"), tmp_path / "ok.png").read_bytes()
    ihdr_end = 8 + 25  # signature + IHDR chunk (4 len + 4 type + 13 data + 4 crc)
    p = tmp_path / "noise.png"
    p.write_bytes(good[:ihdr_end] + np.random.default_rng(4).integers(0, 256, 400, dtype=np.uint8).tobytes())
    assert_load_error(CorruptImageError, p)


def _png_header_only(path: Path, width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` but carries a single tiny IDAT: costs bytes, not RAM."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb_huge_header(tmp_path):
    p = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert p.stat().st_size < 200
    err = assert_load_error(ImageTooLargeError, p)
    assert err.kind == "too-large"


def test_module_default_max_pixels_enforced(tmp_path):
    # just above MAX_PIXELS but below Pillow's own hard limit: cxrtool's limit must do the refusing
    side = int(MAX_PIXELS**0.5) + 2
    assert side * side > MAX_PIXELS
    assert side * side < 2 * Image.MAX_IMAGE_PIXELS
    p = _png_header_only(tmp_path / "big.png", side, side)
    err = assert_load_error(ImageTooLargeError, p)
    assert f"{MAX_PIXELS:,}" in err.reason
    assert read_image.__kwdefaults__["max_pixels"] == MAX_PIXELS


def test_small_max_pixels_argument(tmp_path):
    p = save(Image.fromarray(gradient(20, 30), "L"), tmp_path / "a.png")
    assert_load_error(ImageTooLargeError, p, max_pixels=500)
    assert read_image(p, max_pixels=600).pixels.shape == (20, 30)  # exactly at the limit is fine


def test_real_1bit_bomb_compresses_tiny_and_is_refused(tmp_path):
    p = tmp_path / "bomb1.png"
    Image.new("1", (12000, 12000)).save(p)  # 144 MP, a few KB on disk
    assert p.stat().st_size < 100_000
    assert_load_error(ImageTooLargeError, p)


def test_unsupported_float_tiff(tmp_path):
    p = save(Image.fromarray(np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)), tmp_path / "f.tif")
    assert Image.open(p).mode == "F"
    err = assert_load_error(UnsupportedImageError, p)
    assert "'F'" in err.reason


def test_errors_are_cxr_errors_with_exit_code_1(tmp_path):
    from cxrtool.errors import CxrError

    with pytest.raises(CxrError) as info:
        read_image(tmp_path / "missing.png")
    assert info.value.exit_code == 1


@pytest.mark.parametrize("fmt_suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("BMP", ".bmp")])
def test_random_corruption_only_raises_typed_errors(tmp_path, fmt_suffix):
    """Flipped bytes and cut files either load or raise ImageLoadError (never anything else, and no
    warnings leak out)."""
    fmt, suffix = fmt_suffix
    rng = np.random.default_rng(5)
    src = tmp_path / f"src{suffix}"
    Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8), "L").save(src, format=fmt)
    data = src.read_bytes()
    p = tmp_path / f"bad{suffix}"
    for _ in range(40):
        d = bytearray(data)
        for pos in rng.integers(0, len(d), rng.integers(1, 6)):
            d[pos] = rng.integers(0, 256)
        if rng.random() < 0.3:
            d = d[: rng.integers(1, len(d))]
        p.write_bytes(bytes(d))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                img = read_image(p)
            except ImageLoadError as exc:
                assert str(p) in str(exc)
            else:
                assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 2
        # Pillow's chatter ("Corrupt EXIF data", "Tag data larger than file") stays inside the loader
        assert not caught, [str(w.message) for w in caught]


# --------------------------------------------------------------------------- DICOM


def _dicom(path: Path, arr: np.ndarray, photometric: str = "MONOCHROME2", **extra) -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).pixel_array.shape == arr.shape
    return path


def _cxr_like() -> np.ndarray:
    a = np.zeros((8, 10), np.uint16)
    a[:, :5] = 1000
    a[0, 0] = 4000
    return a


def test_dicom_monochrome2(tmp_path):
    img = read_image(_dicom(tmp_path / "m2.dcm", _cxr_like()))
    assert (img.format, img.mode, img.bits) == ("DICOM", "MONOCHROME2", 12)
    assert_gray_uint8(img, 8, 10)
    assert img.pixels[0, 0] == 255  # brightest
    assert img.pixels[0, 9] == 0  # darkest
    assert 0 < img.pixels[1, 1] < 255


def test_dicom_monochrome1_is_inverted(tmp_path):
    a = _cxr_like()
    m2 = read_image(_dicom(tmp_path / "m2.dcm", a), as_float=True).pixels
    m1 = read_image(_dicom(tmp_path / "m1.dcm", a, "MONOCHROME1"), as_float=True).pixels
    assert m1.dtype == np.float32
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    u1 = read_image(tmp_path / "m1.dcm").pixels
    assert u1[0, 0] == 0 and u1[0, 9] == 255


def test_dicom_rescale_slope_intercept_applied(tmp_path):
    raw = np.tile(np.arange(0, 1001, 100, dtype=np.uint16), (3, 1))  # 0..1000
    # stored 0..1000 -> modality values -1000..1000; window [-500, 500] only makes sense on those
    rescaled = read_image(
        _dicom(tmp_path / "rs.dcm", raw, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=1000)
    ).pixels[0]
    assert list(rescaled[:3]) == [0, 0, 0]  # -1000, -800, -600: below the window
    assert abs(int(rescaled[5]) - 128) <= 1  # 0: window centre
    assert list(rescaled[-3:]) == [255, 255, 255]  # 600, 800, 1000: above
    # the same window on unrescaled data gives something else entirely
    unscaled = read_image(_dicom(tmp_path / "raw.dcm", raw, WindowCenter=0, WindowWidth=1000)).pixels[0]
    assert not np.array_equal(rescaled, unscaled)
    # a negative slope flips the ramp
    neg = read_image(_dicom(tmp_path / "neg.dcm", raw, RescaleSlope=-1, RescaleIntercept=0)).pixels[0]
    assert neg[0] == 255 and neg[-1] == 0
    assert np.all(np.diff(neg.astype(int)) < 0)


def test_dicom_found_by_preamble_without_suffix(tmp_path):
    p = _dicom(tmp_path / "IM0001", _cxr_like())
    assert read_image(p).format == "DICOM"


def test_dicom_too_large(tmp_path):
    p = _dicom(tmp_path / "m2.dcm", _cxr_like())
    assert_load_error(ImageTooLargeError, p, max_pixels=79)


def test_dcm_suffix_but_not_dicom(tmp_path):
    pytest.importorskip("pydicom")
    p = tmp_path / "x.dcm"
    p.write_text("this is a text file " * 20)
    assert_load_error(NotAnImageError, p)


def test_truncated_dicom(tmp_path):
    p = _dicom(tmp_path / "t.dcm", np.full((64, 64), 7, np.uint16))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 4000])
    assert_load_error(CorruptImageError, p)


# --------------------------------------------------------------------------- walking folders


def test_find_images_skips_junk_and_sorts(tmp_path):
    png = Image.fromarray(gradient(4, 4), "L")
    wanted = [
        tmp_path / "b.png",
        tmp_path / "a.JPG",
        tmp_path / "sub" / "c.tif",
        tmp_path / "sub" / "deeper" / "d.dcm",
        tmp_path / "z.webp",
        tmp_path / "e.jpeg",
        tmp_path / "f.bmp",
        tmp_path / "g.tiff",
    ]
    junk = [
        tmp_path / ".DS_Store",
        tmp_path / "Thumbs.db",
        tmp_path / "desktop.ini",
        tmp_path / "__MACOSX" / "._b.png",
        tmp_path / "__MACOSX" / "b.png",
        tmp_path / "sub" / "._c.tif",
        tmp_path / "notes.txt",
        tmp_path / "labels.csv",
        tmp_path / "b.png.json",
    ]
    for p in wanted + junk:
        p.parent.mkdir(parents=True, exist_ok=True)
        png.save(p, format="PNG")
    found = find_images(tmp_path)
    assert found == sorted(wanted)
    assert list(iter_images([tmp_path])) == found
    # a file is returned as itself; files and folders expand in the order given
    assert find_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    assert list(iter_images([tmp_path / "b.png", tmp_path / "sub"])) == [
        tmp_path / "b.png",
        tmp_path / "sub" / "c.tif",
        tmp_path / "sub" / "deeper" / "d.dcm",
    ]
    assert find_images(tmp_path / "empty-or-missing") == []


def test_is_junk_and_is_image_file():
    assert is_junk(Path(".DS_Store"))
    assert is_junk(Path("x/__MACOSX/y/scan.png"))
    assert is_junk(Path("._scan.png"))
    assert is_junk(Path("a/THUMBS.DB"))
    assert not is_junk(Path("scans/normal/0001.png"))
    assert is_image_file(Path("a/b/scan.PNG"))
    assert not is_image_file(Path("a/b/scan.txt"))
    assert not is_image_file(Path("__MACOSX/scan.png"))


def test_loop_over_folder_with_one_corrupt_file_keeps_going(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8), "L").save(tmp_path / f"ok{i}.png")
    bad = tmp_path / "ok2.png"
    data = bad.read_bytes()
    (tmp_path / "broken.png").write_bytes(data[:20])
    (tmp_path / "empty.jpg").write_bytes(b"")
    loaded, failed = {}, {}
    for path in iter_images([tmp_path]):
        try:
            loaded[path.name] = load_image(path)
        except ImageLoadError as exc:
            failed[path.name] = exc
    assert sorted(loaded) == ["ok0.png", "ok1.png", "ok2.png", "ok3.png"]
    assert sorted(failed) == ["broken.png", "empty.jpg"]
    assert failed["broken.png"].kind in {"corrupt", "not-an-image"}
    assert isinstance(failed["empty.jpg"], EmptyFileError)
    assert all(str(tmp_path / name) in str(exc) for name, exc in failed.items())
    assert loaded["ok3.png"][0, 0] == 120


# --------------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_png_gray_roundtrip_is_identical(tmp_path, a):
    path = tmp_path / "rt.png"
    Image.fromarray(a, "L").save(path)
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, a)
    assert (img.height, img.width) == a.shape
    np.testing.assert_array_equal(read_image(path, as_float=True).pixels * np.float32(255), a.astype(np.float32))


def test_module_exports():
    assert imageio.IMAGE_EXTENSIONS >= {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm"}
    assert MAX_PIXELS >= 20_000_000
