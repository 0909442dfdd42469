"""The one image loader every command uses.

Reads PNG (8/16-bit), JPEG (incl. CMYK, progressive), BMP, TIFF, WebP and, with the
``dicom`` extra, DICOM; applies EXIF orientation; returns single-channel grayscale.
Every failure is a typed :class:`~cxrtool.errors.ImageLoadError` naming the file and
the reason, so callers can skip one bad file and go on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .imagecheck import colour_fraction
from .errors import (
    CorruptImageError,
    EmptyFileError,
    ImageLoadError,
    ImageTooLargeError,
    MissingFileError,
    NotAnImageError,
    UnsupportedImageError,
)

#: File suffixes treated as images when walking folders.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm"})

#: Explicit decompression-bomb limit (pixels). The largest real CXRs are ~4300x3500 = 15 MP.
MAX_PIXELS = 80_000_000

#: Names that are never X-rays: OS droppings and thumbnails.
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "__macosx", "ehthumbs.db"})

_GRAY_VIA_RGB = {"P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LA", "La", "RGBa", "1"}

#: Leading bytes of the formats we read: a file that starts like one of these but does not
#: decode is a corrupt image, not "not an image".
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)

#: EXIF orientations that turn the image by 90 degrees (width and height swap).
_SIDEWAYS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class LoadedImage:
    """Decoded grayscale pixels plus what the file said about itself."""

    pixels: np.ndarray  # (H, W) uint8, or float32 in [0, 1]
    width: int  # original width, before any draft-mode reduction
    height: int
    format: str  # "PNG", "JPEG", "DICOM", ...
    mode: str  # the file's own Pillow mode ("L", "RGB", "I;16", ...)
    bits: int  # significant bits of the source samples (8, 10, 12, 16)
    colour: float = 0.0  # fraction of pixels with visible colour (cxrtool.imagecheck.colour_fraction)


def is_junk(path: Path) -> bool:
    """True for OS droppings (``.DS_Store``, ``__MACOSX``, AppleDouble ``._x``, thumbnails)."""
    if any(part.lower() in JUNK_NAMES for part in path.parts):
        return True
    return path.name.startswith("._") or path.name.lower() in JUNK_NAMES


def is_image_file(path: Path) -> bool:
    """An image by name: a known suffix and not junk (the content is checked when loading)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not is_junk(path)


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (a file is returned as itself), sorted for determinism."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.relative_to(root)))


def iter_images(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (recursively, images only) in the given order."""
    for item in paths:
        p = Path(item)
        if p.is_dir():
            yield from find_images(p)
        else:
            yield p


def read_image(
    path: str | Path,
    *,
    draft: int | None = None,
    as_float: bool = False,
    max_pixels: int = MAX_PIXELS,
    data: bytes | None = None,
) -> LoadedImage:
    """Decode one image to grayscale.

    ``data``: the file's bytes when the caller has already read them (build-dataset hashes the
    bytes too), so the file is not read twice.

    ``draft``: for JPEG, let the decoder shrink by a power of two while keeping both sides
    >= ``draft`` (much faster when full resolution is not needed, e.g. hashing).
    """
    path = Path(path)
    _check_file(path)
    is_dicom = data[128:132] == b"DICM" if data is not None else _has_dicom_preamble(path)
    if path.suffix.lower() == ".dcm" or is_dicom:
        return _read_dicom(path, as_float=as_float, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            # DecompressionBombWarning (we enforce max_pixels ourselves) and plugin chatter
            # such as "Corrupt EXIF data" must not leak onto the user's terminal
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data) if data is not None else path)
    except UnidentifiedImageError:
        claimed = _sniff_format(path)
        if claimed:
            raise CorruptImageError(path, f"starts like a {claimed} file but cannot be decoded") from None
        raise NotAnImageError(path, "not a recognised image file") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(path, f"image too large ({exc})") from None
    except PermissionError as exc:
        raise ImageLoadError(path, f"cannot read: {exc.strerror or exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # plugins raise OSError, ValueError, ... for broken headers
        raise CorruptImageError(path, f"cannot open: {exc}") from None
    with im:
        width, height = im.size
        if width * height > max_pixels:
            raise ImageTooLargeError(
                path, f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}"
            )
        if width == 0 or height == 0:
            raise CorruptImageError(path, "image has zero width or height")
        fmt, mode = im.format or "?", im.mode
        if draft and fmt == "JPEG":
            im.draft("L", (draft, draft))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
                colour = colour_fraction(im)
                orientation = _orientation(im)
                im = ImageOps.exif_transpose(im)
        except MemoryError:
            raise
        except Exception as exc:  # OSError, SyntaxError, zlib.error, EOFError, struct.error, ...
            raise CorruptImageError(path, f"truncated or corrupt image data ({exc})") from None
        pixels, bits = _to_gray(im, path)
    # EXIF orientation may turn the image sideways: report the upright original size. (Decided
    # from the tag, not from the array's shape: a draft-reduced near-square image can come out
    # exactly square.)
    if orientation in _SIDEWAYS:
        width, height = height, width
    if as_float:
        pixels = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels
    elif pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return LoadedImage(np.ascontiguousarray(pixels), width, height, fmt, mode, bits, colour)


def load_image(path: str | Path, *, as_float: bool = False, draft: int | None = None) -> np.ndarray:
    """Grayscale pixels of one image: (H, W) uint8, or float32 in [0, 1] with ``as_float``."""
    return read_image(path, as_float=as_float, draft=draft).pixels


def _orientation(im: Image.Image) -> int:
    """The EXIF Orientation tag (1 = upright when absent or unreadable)."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value)
    except Exception:  # corrupt EXIF: exif_transpose will not rotate either
        return 1


def _sniff_format(path: Path) -> str | None:
    """The image format the file's first bytes claim, if any."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MissingFileError(path, "no such file")
    if path.is_dir():
        raise NotAnImageError(path, "is a directory, not an image")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read: {exc.strerror}") from None
    if size == 0:
        raise EmptyFileError(path, "empty file (0 bytes)")


def _to_gray(im: Image.Image, path: Path) -> tuple[np.ndarray, int]:
    """(pixels, bits): uint8 for 8-bit sources, float32 in [0, 1] for deeper ones."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8), 8
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        data = np.asarray(im)
        if data.size and (data.min() < 0 or data.max() > 65535):
            raise UnsupportedImageError(path, f"{mode} samples outside 0..65535 are not supported")
        return _scale_deep(data.astype(np.float64)), _bits_for(int(data.max()) if data.size else 0)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa", "P") and ("transparency" in im.info or mode != "P"):
        # LA/La go through RGBA too, so gray+alpha is composited exactly like colour+alpha
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # X-ray background is black
        return np.asarray(Image.alpha_composite(background, rgba).convert("L"), dtype=np.uint8), 8
    if mode in _GRAY_VIA_RGB:
        rgb = im.convert("RGB") if mode in ("CMYK", "P", "1", "YCbCr", "RGBX") else im
        return np.asarray(rgb.convert("L"), dtype=np.uint8), 8
    raise UnsupportedImageError(path, f"unsupported image mode {mode!r}")


def _bits_for(max_value: int) -> int:
    for bits in (8, 10, 12, 14, 16):
        if max_value < (1 << bits):
            return bits
    return 16


def _scale_deep(data: np.ndarray) -> np.ndarray:
    """Scale high-bit-depth samples by their container depth (8/10/12/14/16 bits), not by min-max,
    so exposure stays measurable."""
    top = (1 << _bits_for(int(data.max()) if data.size else 0)) - 1
    return (data / top).astype(np.float32)


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_dicom(path: Path, *, as_float: bool, max_pixels: int) -> LoadedImage:
    """DICOM via pydicom: rescale slope/intercept, VOI window, MONOCHROME1 inversion."""
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        raise UnsupportedImageError(path, "DICOM needs pydicom: pip install 'cxrtool[dicom]'") from None
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise NotAnImageError(path, "not a DICOM file (no 'DICM' header)") from None
    except Exception as exc:
        raise CorruptImageError(path, f"cannot read DICOM ({exc})") from None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        if rows * cols > max_pixels:
            raise ImageTooLargeError(path, f"{cols}x{rows} exceeds the limit of {max_pixels:,} pixels")
        arr = ds.pixel_array
        photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
        if arr.ndim == 3 and photometric.startswith("MONOCHROME"):
            arr = arr[0]  # multi-frame: first frame
        if not photometric.startswith("MONOCHROME"):
            raise UnsupportedImageError(path, f"DICOM photometric interpretation {photometric} is not grayscale")
        data = apply_modality_lut(arr, ds).astype(np.float64)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            data = apply_voi_lut(data, ds, prefer_lut=True).astype(np.float64)
    except ImageLoadError:
        raise
    except Exception as exc:  # pydicom raises many types for bad files
        raise CorruptImageError(path, f"cannot decode DICOM ({exc})") from None
    lo, hi = float(data.min()), float(data.max())
    pixels = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    pixels = pixels.astype(np.float32)
    bits = int(getattr(ds, "BitsStored", 16))
    if not as_float:
        pixels = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return LoadedImage(pixels, cols, rows, "DICOM", photometric, bits)
