"""Command-line entry point. Each subcommand lives in its own module here and is a thin
wrapper over a library module; adding a command is adding a file and one import below."""

from __future__ import annotations

import sys
import traceback

from .. import console, interrupts
from ..atomic import oserrors, write_cause
from ..errors import CxrError
from .app import app, state
from .output import silence_stdout

# Register the subcommands (each module decorates functions with @app.command).
from . import info as _info  # noqa: E402,F401
from . import build_dataset as _build_dataset  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import ensemble as _ensemble  # noqa: E402,F401
from . import calibrate as _calibrate  # noqa: E402,F401
from . import fit_ood as _fit_ood  # noqa: E402,F401
from . import evaluate as _evaluate  # noqa: E402,F401
from . import gradcam as _gradcam  # noqa: E402,F401
from . import predict as _predict  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401

GLOBAL_FLAGS = frozenset({"-q", "--quiet", "-v", "-vv", "-vvv", "--verbose", "--debug"})


def _lift_global_flags(argv: list[str]) -> list[str]:
    """Move global flags given after the subcommand to the front, so ``cxrtool predict x -q`` works."""
    head, rest = [], []
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        is_global = arg in GLOBAL_FLAGS or (len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and set(arg[1:]) <= {"q", "v"})
        (head if is_global else rest).append(arg)
    return head + rest


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) 0, 1 or 2, or 130/143 when
    SIGINT/SIGTERM stopped it (one ``error: interrupted ...`` line, see :mod:`cxrtool.interrupts`)."""
    args = _lift_global_flags(list(sys.argv[1:] if argv is None else argv))
    state["argv"] = args
    with interrupts.handling():
        code = _run_app(args)
        if interrupts.received() is not None:  # whatever the command made of it (Typer's 130, a pool error)
            interrupts.report()
            return interrupts.exit_code(interrupts.received())
    return code


def _run_app(args: list[str]) -> int:
    try:
        # standalone mode: Typer itself prints usage errors and exits 2, --help/--version exit 0
        app(args=args, prog_name="cxrtool")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:  # without a signal handler of ours (a library raised it)
        if interrupts.received() is None:
            console.error("interrupted")
        return 130
    except CxrError as exc:
        if interrupts.received() is not None:
            return 1
        if state["debug"]:
            traceback.print_exc()
        console.error(str(exc))
        return exc.exit_code
    except BrokenPipeError:  # `cxrtool ... | head` closed the pipe: not an error
        silence_stdout()
        return 0
    except Exception as exc:  # a bug: one line, traceback on --debug
        if interrupts.received() is not None:  # a consequence of the interrupt (a pool torn down)
            return 1
        if state["debug"]:
            traceback.print_exc()
        cause = write_cause(exc, under=())  # a full or read-only disk that no helper named: still not a bug
        if cause is not None:
            err = next(oserrors(exc))
            console.error(f"{err.filename2 or err.filename or 'output'}: cannot write: {cause}")
            return 1
        console.error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    return 0


def run() -> None:
    code = main()
    if interrupts.received() is not None:
        # end now: worker threads with queued work would otherwise delay the exit at shutdown
        interrupts.hard_exit(code)
    sys.exit(code)
