"""Chest X-Ray Images (Pneumonia), Kermany et al., Cell 2018: the Guangzhou pediatric set."""

from __future__ import annotations

import re
from pathlib import Path

from .base import SourceAdapter, child_dirs, normalise

_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_IM = re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+", re.IGNORECASE)


class PediatricPneumonia(SourceAdapter):
    """``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``; ``personN_bacteria_M.jpeg`` and
    ``IM-NNNN-MMMM.jpeg`` file names carry the patient id, so one child never spans splits."""

    kind = "chest-xray-pneumonia"
    title = "Chest X-Ray Images (Pneumonia), pediatric"
    population = "pediatric"  # children aged one to five (Kermany et al. 2018)

    @classmethod
    def matches(cls, root: Path) -> bool:
        for split in child_dirs(root):
            if normalise(split.name) in {"train", "test", "val"}:
                classes = {normalise(p.name) for p in child_dirs(split)}
                if "pneumonia" in classes and classes <= {"pneumonia", "normal"}:
                    return True
        return False

    def patient_for(self, rel: Path) -> str:
        name = rel.name
        match = _PERSON.match(name) or _IM.match(name)
        return match.group(1) if match else ""
