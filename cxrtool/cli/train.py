"""`cxrtool train` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ..errors import CxrError
from .app import app


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context) -> None:
    """Not available yet in this version."""
    raise CxrError("`cxrtool train` is not available yet in this version")
