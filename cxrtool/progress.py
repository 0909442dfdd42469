"""The one shape of progress callback that library functions accept.

A library function takes ``progress: ProgressFn | None`` and calls it with one dict per
event: ``{"stage": str, "done": int, "total": int | None, ...}`` plus stage-specific keys
(an epoch's metrics, a model name). The CLI turns events into rich progress bars; Python
users can pass ``print``. Library code never draws anything itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[dict], None]


def report(progress: ProgressFn | None, stage: str, done: int, total: int | None = None, **extra: Any) -> None:
    """Send one event to PROGRESS (nothing when it is None)."""
    if progress is not None:
        progress({"stage": stage, "done": done, "total": total, **extra})
