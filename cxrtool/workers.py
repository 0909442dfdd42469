"""How many workers to use by default: the CPUs this process may actually run on."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers(cap: int | None = None, requested: int | None = None) -> int:
    """REQUESTED if given (a user's ``--workers``), else the available CPUs, at most CAP."""
    if requested:
        return max(1, int(requested))
    n = available_cpus()
    return min(n, cap) if cap else n
