"""`cxrtool build-dataset` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ..errors import CxrError
from .app import app


@app.command("build-dataset", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def build_dataset(ctx: typer.Context) -> None:
    """Not available yet in this version."""
    raise CxrError("`cxrtool build-dataset` is not available yet in this version")
