"""`cxrtool info`: versions, backend and devices."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .app import app


@app.command(epilog="Example: cxrtool info --json | jq .devices")
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")] = False,
) -> None:
    """Show cxrtool, Keras and JAX versions, the backend and the devices JAX sees."""
    from ..backend import runtime_info

    facts = runtime_info()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    from rich.table import Table

    from ..console import err

    table = Table(title="cxrtool", show_header=False)
    for key, value in facts.items():
        if key == "devices":
            value = ", ".join(f"{d['platform']}:{d['id']} ({d['kind']})" for d in value)
        table.add_row(key, str(value))
    err.print(table)
    # the devices are the result people ask for: also on stdout, one per line
    for d in facts["devices"]:
        typer.echo(f"{d['platform']}:{d['id']}\t{d['kind']}")
