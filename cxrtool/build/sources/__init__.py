"""Source adapters: one class per public CXR source, each mapping its own layout and labels
into the shared label space (covid, pneumonia, normal), plus discovery of sources under a folder.

Adding a source is adding a module with a :class:`SourceAdapter` subclass and listing it in
``ADAPTERS`` (most specific first).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import UsageError
from .base import CLASS_ALIASES, EXCLUDED_FOLDERS, SPLIT_FOLDERS, Item, LabelMap, Scan, SourceAdapter, child_dirs, normalise
from .covid15k import Covid15k
from .cpn import CovidPneumoniaNormal
from .metadata_csv import CsvLabels, Figure1Covid
from .pediatric import PediatricPneumonia
from .radiography import RadiographyDatabase

#: Specific adapters, most specific first; ``SourceAdapter`` itself is the generic fallback.
ADAPTERS: tuple[type[SourceAdapter], ...] = (
    CsvLabels,
    Figure1Covid,
    PediatricPneumonia,
    RadiographyDatabase,
    Covid15k,
    CovidPneumoniaNormal,
)

__all__ = [
    "ADAPTERS", "Item", "LabelMap", "Scan", "SourceAdapter", "detect_adapter", "discover_sources", "scan_sources",
]


def detect_adapter(root: Path) -> type[SourceAdapter] | None:
    """The specific adapter whose layout ``root`` has, or None."""
    for adapter in ADAPTERS:
        if adapter.matches(root):
            return adapter
    return None


def _is_single_source(root: Path, label_map: LabelMap | None = None) -> bool:
    """A folder is one source when an adapter knows it, or its own sub-folders are classes/splits
    (including folder names the user's label map names)."""
    if detect_adapter(root) is not None:
        return True
    mapped = label_map.mapping if label_map is not None else {}
    for child in child_dirs(root):
        key = normalise(child.name)
        if key in CLASS_ALIASES or key in SPLIT_FOLDERS or key in EXCLUDED_FOLDERS or key in mapped:
            return True
    return not child_dirs(root)


def discover_sources(
    srcs: list[Path], label_map: LabelMap | None = None
) -> list[tuple[str, Path, type[SourceAdapter]]]:
    """(name, root, adapter) for every source under the given SRC folders, names made unique."""
    found: list[tuple[str, Path, type[SourceAdapter]]] = []
    for src in srcs:
        if not src.is_dir():
            raise UsageError(f"{src}: source folder not found")
        roots = [src] if _is_single_source(src, label_map) else child_dirs(src)
        for root in roots:
            found.append((root.name, root, detect_adapter(root) or SourceAdapter))
    names: dict[str, int] = {}
    unique = []
    for name, root, adapter in found:
        names[name] = names.get(name, 0) + 1
        unique.append((name if names[name] == 1 else f"{name}-{names[name]}", root, adapter))
    return unique


def scan_sources(
    srcs: list[Path], label_map: LabelMap | None = None, labels_csv: dict[str, Path] | None = None
) -> list[Scan]:
    """Discover and scan every source; ``labels_csv`` maps a source name to a ``file,label[,patient]`` CSV."""
    labels_csv = dict(labels_csv or {})
    scans = []
    for name, root, adapter_cls in discover_sources(srcs, label_map):
        csv_path = labels_csv.pop(name, None) or labels_csv.pop(str(root), None)
        if csv_path is not None:
            adapter: SourceAdapter = CsvLabels(label_map, csv_path=Path(csv_path))
        else:
            adapter = adapter_cls(label_map)
        scans.append(adapter.scan(root, name))
    if labels_csv:
        raise UsageError(f"--labels-csv names unknown source(s): {', '.join(labels_csv)}")
    return scans
