"""`cxrtool gradcam` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ..errors import CxrError
from .app import app


@app.command("gradcam", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def gradcam(ctx: typer.Context) -> None:
    """Not available yet in this version."""
    raise CxrError("`cxrtool gradcam` is not available yet in this version")
