"""Perceptual hashes of grayscale images, in imagededup's shape: a tiny base class and one
small subclass per imagehash function, looked up by name (``--hash``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import imagehash
import numpy as np
from PIL import Image

from ..errors import UsageError


class Hasher(ABC):
    """A perceptual hash of a grayscale image; subclasses pick the imagehash function."""

    name = "base"

    def __init__(self, hash_size: int = 8):
        if hash_size < 2:
            raise UsageError(f"--hash-size must be at least 2 (got {hash_size})")
        self.hash_size = hash_size

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    @abstractmethod
    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        """The imagehash of a grayscale PIL image."""

    def __call__(self, pixels: np.ndarray) -> str:
        """Hex string of the hash of a uint8 grayscale array (what the manifest stores)."""
        value = self.compute(Image.fromarray(pixels, mode="L"))
        if value.hash.size % 8:
            return str(value)
        bits = value.hash
        return np.packbits(bits.ravel()).tobytes().hex()  # == str(ImageHash), without a Python loop per bit


class PHash(Hasher):
    """DCT perceptual hash: robust to re-encoding, resizing and small brightness changes."""

    name = "phash"

    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        return imagehash.phash(image, hash_size=self.hash_size)


class DHash(Hasher):
    """Difference hash: fast, sensitive to gradients."""

    name = "dhash"

    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        return imagehash.dhash(image, hash_size=self.hash_size)


class AHash(Hasher):
    """Average hash: the simplest; most false positives on look-alike X-rays."""

    name = "ahash"

    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        return imagehash.average_hash(image, hash_size=self.hash_size)


class WHash(Hasher):
    """Wavelet hash (Haar); hash_size must be a power of two."""

    name = "whash"

    def __init__(self, hash_size: int = 8):
        if hash_size & (hash_size - 1):
            raise UsageError(f"whash needs a power-of-two --hash-size (got {hash_size})")
        super().__init__(hash_size)

    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        return imagehash.whash(image, hash_size=self.hash_size)


HASHERS: dict[str, type[Hasher]] = {cls.name: cls for cls in (PHash, DHash, AHash, WHash)}


def get_hasher(name: str, hash_size: int = 8) -> Hasher:
    """The hasher called NAME; a :class:`UsageError` (exit 2) for an unknown name or bad size."""
    try:
        return HASHERS[name](hash_size)
    except KeyError:
        raise UsageError(f"unknown hash {name!r}; choose one of {', '.join(HASHERS)}") from None
