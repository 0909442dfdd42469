"""Chest X-Ray Images (COVID-19) "15K": ``{train,test}/{covid,normal}``."""

from __future__ import annotations

from pathlib import Path

from .base import CLASS_ALIASES, SourceAdapter, child_dirs, normalise


class Covid15k(SourceAdapter):
    kind = "covid19-15k"
    title = "15K Chest X-Ray Images (COVID-19)"

    @classmethod
    def matches(cls, root: Path) -> bool:
        splits = [p for p in child_dirs(root) if normalise(p.name) in {"train", "test"}]
        if not splits:
            return False
        for split in splits:
            labels = {CLASS_ALIASES.get(normalise(p.name)) for p in child_dirs(split)}
            if not ({"covid", "normal"} <= labels and "pneumonia" not in labels):
                return False
        return True
