"""COVID-19+PNEUMONIA+NORMAL Chest X-Ray Image Dataset: ``COVID``, ``NORMAL``, ``PNEUMONIA``."""

from __future__ import annotations

from pathlib import Path

from .base import SourceAdapter, child_dirs


class CovidPneumoniaNormal(SourceAdapter):
    kind = "covid-pneumonia-normal"
    title = "COVID-19+PNEUMONIA+NORMAL Chest X-Ray Image Dataset"

    @classmethod
    def matches(cls, root: Path) -> bool:
        return {p.name for p in child_dirs(root)} == {"COVID", "NORMAL", "PNEUMONIA"}
