"""The Typer application object and the global options every command shares."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..version import __version__
from .. import console

app = typer.Typer(
    name="cxrtool",
    help=(
        "Chest X-ray classification (COVID-19, pneumonia, normal): build a clean dataset, "
        "train, ensemble, evaluate, explain with Grad-CAM, predict.\n\n"
        "Results go to stdout; progress, tables and warnings go to stderr.\n\n"
        "[bold]Examples[/bold]\n\n"
        "  cxrtool build-dataset sources/ data/ --per-class 7000\n\n"
        "  cxrtool train data/ --model resnet50\n\n"
        "  cxrtool gradcam scan.png --model resnet50\n\n"
        "  find scans -name '*.png' | cxrtool predict --model ensemble - --format jsonl"
    ),
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: "debug": set by the global callback (main() shows tracebacks); "argv": the arguments main() ran
#: with (train repeats them in its --resume advice after an interrupt).
state: dict = {"debug": False, "argv": []}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxrtool {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr.")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Global options; they may also be given after the subcommand (``cxrtool predict ... -q``)."""
    state["debug"] = debug
    console.set_verbosity(3 if debug else 0 if quiet else 1 + verbose)
