"""`cxrtool ensemble` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ..errors import CxrError
from .app import app


@app.command("ensemble", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ensemble(ctx: typer.Context) -> None:
    """Not available yet in this version."""
    raise CxrError("`cxrtool ensemble` is not available yet in this version")
