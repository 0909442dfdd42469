"""The shared label space's names: which folder or CSV names mean which class.

Used wherever a folder name becomes a class: the source adapters of ``build-dataset`` and
``evaluate`` on a folder of class folders, so both accept ``COVID-19``, ``NORMAL``,
``Viral Pneumonia`` and the like.
"""

from __future__ import annotations

import re

#: The shared label space, in model output order; every source adapter maps into it, every model
#: predicts it. (Defined here, not in ``cxrtool/__init__``, so modules need not import the package root.)
CLASSES: tuple[str, ...] = ("covid", "pneumonia", "normal")

#: Folder-name aliases (normalised: lower case, no spaces, '-' or '_') for the three classes.
CLASS_ALIASES: dict[str, str] = {
    "covid": "covid",
    "covid19": "covid",
    "pneumonia": "pneumonia",
    "viralpneumonia": "pneumonia",
    "bacterialpneumonia": "pneumonia",
    "normal": "normal",
    "nofinding": "normal",
    "nofindings": "normal",
    "healthy": "normal",
}


def normalise(name: str) -> str:
    """Folder-name key: case, spaces, '-' and '_' ignored."""
    return re.sub(r"[\s_\-]+", "", name.lower())


def class_for_name(name: str) -> str | None:
    """The class a folder or label name stands for (``Viral Pneumonia`` -> ``pneumonia``), or None."""
    key = normalise(name)
    label = CLASS_ALIASES.get(key)
    return label if label in CLASSES else None
