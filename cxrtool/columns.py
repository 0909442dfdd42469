"""Columns of a table held without one Python object per row.

A manifest of a million rows held as one object per row costs about 1 kB a row; as columns it
costs the bytes of its text plus a few bytes of offsets and codes a row. :class:`Strings` is a
column of strings (one shared UTF-8 buffer, a start and an end offset per row);
:class:`Categorical` a column of few distinct strings (one small integer code per row and the
names once). Both read as a sequence of ``str`` (``len``, indexing, iteration,
``np.asarray``), so code written for a list of strings keeps working, and both index with a
slice, a boolean mask or an array of positions into a column of the same kind (offsets or
codes copied, never the text).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np


def positions(i: Any, n: int) -> np.ndarray:
    """An index that is not an integer (slice, boolean mask, positions) as an array of positions."""
    if isinstance(i, slice):
        return np.arange(n)[i]
    idx = np.asarray(i)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean index of shape {idx.shape} for a column of {n}")
        return np.flatnonzero(idx)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"column indices must be integers, slices or boolean masks, not {idx.dtype}")
    return idx.astype(np.int64, copy=False).reshape(-1)


def one_row(i: Any, n: int) -> int | None:
    """``i`` as a position in ``0 .. n - 1`` when it is one integer (IndexError when out of range)."""
    if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
        j = int(i) + (n if i < 0 else 0)
        if not 0 <= j < n:
            raise IndexError(f"row {int(i)} of a column of {n}")
        return j
    return None


def offset_dtype(largest: int) -> np.dtype:
    """The smallest integer type for offsets up to ``largest``."""
    return np.dtype(np.int32) if largest < 2**31 else np.dtype(np.int64)


class Strings(Sequence[str]):
    """A column of strings: row ``i`` is ``data[starts[i]:ends[i]].decode("utf-8")``.

    Several columns may share one ``data`` buffer (rows may even share their bytes); taking
    rows copies their offsets only.
    """

    __slots__ = ("_data", "_starts", "_ends")

    def __init__(self, data: bytes | bytearray, starts: np.ndarray, ends: np.ndarray):
        if len(starts) != len(ends):
            raise ValueError(f"{len(starts)} starts but {len(ends)} ends")
        self._data, self._starts, self._ends = data, starts, ends

    @classmethod
    def of(cls, values: Iterable[str]) -> Strings:
        """A column of ``values`` (a :class:`Strings` is returned as it is)."""
        if isinstance(values, Strings):
            return values
        encoded = [str(v).encode("utf-8") for v in values]
        ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        starts = ends - np.asarray([len(b) for b in encoded], dtype=np.int64)
        dtype = offset_dtype(int(ends[-1]) if len(ends) else 0)
        return cls(b"".join(encoded), starts.astype(dtype), ends.astype(dtype))

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: Any) -> Any:
        j = one_row(i, len(self))
        if j is not None:
            return self._data[self._starts[j] : self._ends[j]].decode("utf-8")
        return self.take(positions(i, len(self)))

    def take(self, positions: np.ndarray) -> Strings:
        """The rows at ``positions``, sharing this column's bytes."""
        return Strings(self._data, self._starts[positions], self._ends[positions])

    def __iter__(self) -> Iterator[str]:
        data = self._data
        for a, b in zip(self._starts.tolist(), self._ends.tolist()):
            yield data[a:b].decode("utf-8")

    def tolist(self) -> list[str]:
        return list(self)

    def byte_lengths(self) -> np.ndarray:
        """The UTF-8 length of every row."""
        return (self._ends - self._starts).astype(np.int64)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array(self.tolist(), dtype=dtype or str)

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3]) + (", ..." if len(self) > 3 else "")
        return f"Strings([{head}], n={len(self)})"


class Categorical(Sequence[str]):
    """A column of few distinct strings: row ``i`` is ``names[codes[i]]``.

    ``codes`` is a NumPy integer array (the bulk view: ``np.bincount(col.codes)``,
    ``col.codes == col.names.index("val")``); ``names`` may include names no row uses.
    """

    __slots__ = ("codes", "names")

    def __init__(self, codes: np.ndarray, names: Sequence[str]):
        self.codes = np.asarray(codes)
        self.names = tuple(names)

    @classmethod
    def of(cls, values: Iterable[str]) -> Categorical:
        """A column of ``values`` with sorted names (a :class:`Categorical` is returned as it is)."""
        if isinstance(values, Categorical):
            return values
        names, codes = np.unique(np.asarray(list(values), dtype=str), return_inverse=True)
        return cls(codes.reshape(-1).astype(code_dtype(len(names))), [str(s) for s in names])

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: Any) -> Any:
        j = one_row(i, len(self))
        if j is not None:
            return self.names[self.codes[j]]
        return Categorical(self.codes[positions(i, len(self))], self.names)

    def __iter__(self) -> Iterator[str]:
        names = self.names
        return (names[c] for c in self.codes.tolist())

    def tolist(self) -> list[str]:
        return list(self)

    def counts(self) -> dict[str, int]:
        """Rows per name, for every name (in the order of ``names``)."""
        found = np.bincount(self.codes, minlength=len(self.names)) if len(self.codes) else np.zeros(len(self.names))
        return {name: int(n) for name, n in zip(self.names, found)}

    def sorted_codes(self) -> np.ndarray:
        """The codes renumbered so that their order is the order of the sorted names."""
        order = sorted(range(len(self.names)), key=self.names.__getitem__)
        if order == list(range(len(self.names))):
            return self.codes
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        return rank[self.codes]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        names = np.asarray(self.names if self.names else [""], dtype=dtype or str)
        return names[self.codes]

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3]) + (", ..." if len(self) > 3 else "")
        return f"Categorical([{head}], n={len(self)}, names={len(self.names)})"


def code_dtype(n_names: int) -> np.dtype:
    """The smallest unsigned integer type for codes of ``n_names`` names."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_names <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


__all__ = ["Categorical", "Strings", "code_dtype", "offset_dtype", "one_row", "positions"]
