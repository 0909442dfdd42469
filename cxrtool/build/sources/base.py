"""What every source adapter shares: walking a folder, skipping junk, mapping folder names
to the shared label space. An adapter for a new public source is a short subclass."""

from __future__ import annotations

import csv
import json
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...labels import CLASSES
from ...errors import UsageError
from ...imageio import IMAGE_EXTENSIONS, is_junk
from ...labels import CLASS_ALIASES, normalise  # noqa: F401  (re-exported for adapters)

#: Known folders that are deliberately not one of the three classes.
EXCLUDED_FOLDERS: dict[str, str] = {
    "lungopacity": "Lung_Opacity is not one of the three classes",
    "masks": "lung masks are not X-rays",
    "mask": "lung masks are not X-rays",
}

#: Folders that only split a source (ignored: everything is re-split).
SPLIT_FOLDERS = frozenset({"train", "test", "val", "valid", "validation", "images"})


@dataclass(frozen=True, slots=True)
class Item:
    """One file of a source with the label its source gives it (None: excluded, see ``reason``)."""

    path: Path
    source: str
    rel: str  # posix path relative to the source root
    label: str | None
    patient: str = ""
    reason: str = ""


class Strings:
    """Many short strings held as one UTF-8 blob plus end offsets (a million relative paths
    as Python ``str`` objects took ~70 MB; here they take their bytes plus 8 per string).
    Append-only; ``surrogatepass`` so any file name (undecodable bytes included) round-trips."""

    __slots__ = ("_blob", "_ends")

    def __init__(self, values: "Iterator[str] | None" = None) -> None:
        self._blob = bytearray()
        self._ends = array("q")
        for v in values or ():
            self.append(v)

    def append(self, value: str) -> None:
        self._blob += value.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        if i < 0:
            i += len(self._ends)
        end = self._ends[i]
        start = self._ends[i - 1] if i > 0 else 0
        return self._blob[start:end].decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


#: Label codes of a scan's files: 0 = no label, k = CLASSES[k - 1].
NO_LABEL = 0


@dataclass
class Scan:
    """Everything one source contributes: its files (labelled or not, with the reason), plus
    what was skipped and why.

    The files are held compactly (relative paths and patients as :class:`Strings`, labels as
    one byte each, the reasons of unlabelled files interned): ``items`` builds :class:`Item`
    views on demand, for code that wants one object per file."""

    name: str
    kind: str
    root: Path
    population: str = "unknown"  # the adapter's POPULATION
    junk: Counter = field(default_factory=Counter)  # reason -> count (not images at all)
    rels: Strings = field(default_factory=Strings)  # posix paths relative to root, scan order
    patients: Strings = field(default_factory=Strings)
    labels: bytearray = field(default_factory=bytearray)  # NO_LABEL or 1 + CLASSES index
    reasons: dict[int, str] = field(default_factory=dict)  # file index -> why it has no label
    _interned: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, rel: str, label: str | None, patient: str = "", reason: str = "") -> None:
        """Record one file (``label`` None: excluded, for ``reason``)."""
        if reason:
            self.reasons[len(self.rels)] = self._interned.setdefault(reason, reason)
        self.rels.append(rel)
        self.patients.append(patient)
        self.labels.append(NO_LABEL if label is None else 1 + CLASSES.index(label))

    def __len__(self) -> int:
        return len(self.rels)

    @property
    def n_files(self) -> int:
        return len(self.rels)

    def label(self, i: int) -> str | None:
        code = self.labels[i]
        return None if code == NO_LABEL else CLASSES[code - 1]

    def item(self, i: int) -> Item:
        rel = self.rels[i]
        return Item(self.root / rel, self.name, rel, self.label(i), self.patients[i], self.reasons.get(i, ""))

    @property
    def items(self) -> list[Item]:
        """One :class:`Item` per file, in scan order (built on each access: a view)."""
        return [self.item(i) for i in range(len(self.rels))]


@dataclass(frozen=True)
class LabelMap:
    """User overrides: normalised folder name -> class or ``exclude``."""

    mapping: dict[str, str]

    @classmethod
    def load(cls, path: Path | None) -> "LabelMap":
        """Read a JSON object or a two-column CSV (folder,label); ``exclude`` drops a folder."""
        if path is None:
            return cls({})
        if not path.is_file():
            raise UsageError(f"{path}: label-map file not found")
        try:
            if path.suffix.lower() == ".json":
                raw = json.loads(path.read_text(encoding="utf-8"))
                pairs = list(raw.items())
            else:
                with path.open(newline="", encoding="utf-8") as fh:
                    pairs = [(r[0], r[1]) for r in csv.reader(fh) if len(r) >= 2 and not r[0].startswith("#")]
                if pairs and normalise(pairs[0][0]) == "folder":
                    pairs = pairs[1:]
        except (ValueError, OSError) as exc:
            raise UsageError(f"{path}: cannot read label map ({exc})") from None
        mapping = {}
        for folder, label in pairs:
            label = str(label).strip().lower()
            if label not in CLASSES and label != "exclude":
                raise UsageError(f"{path}: label {label!r} for {folder!r} is not one of {', '.join(CLASSES)} or exclude")
            mapping[normalise(str(folder))] = label
        return cls(mapping)


class SourceAdapter:
    """Base adapter: walk the source, skip junk, label each image from its folders.

    Subclasses set ``kind``/``title``, say whether a folder looks like theirs (``matches``)
    and may override ``label_for``/``patient_for``/``extra_reason``.
    """

    kind = "generic"
    title = "folder of class sub-folders"
    #: Whose X-rays these are: "pediatric", "adult", "mixed" or "unknown". A model cannot learn
    #: a class for patients it never saw (adult pneumonia from children's X-rays), so the build
    #: report says when a class comes only from pediatric sources.
    population = "unknown"

    def __init__(self, label_map: LabelMap | None = None):
        self.label_map = label_map or LabelMap({})

    @classmethod
    def matches(cls, root: Path) -> bool:
        return False

    def scan(self, root: Path, name: str) -> Scan:
        scan = Scan(name=name, kind=self.kind, root=root, population=self.population)
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(root)
            if is_junk(rel):
                scan.junk["junk file (.DS_Store, __MACOSX, thumbnails)"] += 1
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                scan.junk[f"not an image ({path.suffix.lower() or 'no suffix'})"] += 1
                continue
            if path.name.lower().startswith("thumb"):
                scan.junk["thumbnail"] += 1
                continue
            label, reason = self.label_for(rel)
            scan.add(rel.as_posix(), label, self.patient_for(rel) if label else "", reason)
        return scan

    def label_for(self, rel: Path) -> tuple[str | None, str]:
        """Label from the nearest folder (user map first, then aliases); unknown folders excluded."""
        folders = rel.parts[:-1]
        for folder in reversed(folders):
            key = normalise(folder)
            if key in self.label_map.mapping:
                value = self.label_map.mapping[key]
                return (None, f"folder {folder!r} excluded by the label map") if value == "exclude" else (value, "")
            if key in EXCLUDED_FOLDERS:
                return None, EXCLUDED_FOLDERS[key]
            if key in CLASS_ALIASES:
                return CLASS_ALIASES[key], ""
            if key in SPLIT_FOLDERS:
                continue
            return None, f"unknown folder {folder!r} (not a class name; use --label-map)"
        return None, "image not inside a class folder"

    def patient_for(self, rel: Path) -> str:
        return ""


def child_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_junk(Path(p.name)))
