"""COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021)."""

from __future__ import annotations

from pathlib import Path

from .base import SourceAdapter, child_dirs, normalise

_MARKERS = {"lungopacity", "viralpneumonia"}
_CLASS_DIRS = {"covid", "covid19", "normal", "viralpneumonia", "lungopacity"}


class RadiographyDatabase(SourceAdapter):
    """Folders ``COVID``, ``Normal``, ``Viral Pneumonia``, ``Lung_Opacity`` (flat, or with
    ``images/`` and ``masks/``; older releases ``COVID-19``, ``NORMAL``). Masks are skipped."""

    kind = "covid19-radiography"
    title = "COVID-19 Radiography Database"
    population = "mixed"  # adult COVID; some normals and viral pneumonias are the pediatric set's

    @classmethod
    def matches(cls, root: Path) -> bool:
        names = {normalise(p.name): p for p in child_dirs(root)}
        if not names or not set(names) <= _CLASS_DIRS | {"readme"}:
            return False
        if _MARKERS & set(names):
            return True
        # a 2-class subset: recognise it by its file names (COVID-1.png, Normal-12.png)
        for key in ("covid", "normal"):
            folder = names.get(key)
            if folder is not None:
                first = next((p for p in sorted(folder.rglob("*.png"))), None)
                if first is not None and first.name.lower().startswith(f"{key}-"):
                    return True
        return False
