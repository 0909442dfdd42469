"""The CLI contract: help and version, exit codes, one-line errors, a fast start-up that does
not import Keras/JAX, and the JAX backend being forced.

The subcommand tests are written over whatever subcommands the app registers, so they keep
working as the placeholder modules are replaced by real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import typer.main

from cxrtool import __version__, console
from cxrtool.cli import main
from cxrtool.cli.app import app, state
from cxrtool.errors import CxrError, UsageError

#: The subcommands the tool promises (more may be added; none of these may go missing).
EXPECTED_SUBCOMMANDS = ("build-dataset", "train", "ensemble", "calibrate", "fit-ood", "evaluate", "gradcam", "predict", "info")

HEAVY_MODULES = ("keras", "jax", "jaxlib", "sklearn", "matplotlib", "tensorflow", "torch")


def subcommands() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


def run_py(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def mentions_example(help_text: str) -> bool:
    """'Example' anywhere, or a ``cxrtool ...`` invocation outside the Usage line itself."""
    if "example" in help_text.lower():
        return True
    body = [line for line in help_text.splitlines() if "Usage:" not in line]
    return any("cxrtool " in line for line in body)


# --------------------------------------------------------------------------- help and version


def test_all_promised_subcommands_exist():
    assert set(EXPECTED_SUBCOMMANDS) <= set(subcommands())


def test_top_level_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "cxrtool" in out
    assert "Example" in out
    for name in EXPECTED_SUBCOMMANDS:
        assert name in out
    assert main(["-h"]) == 0


def test_version(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"cxrtool {__version__}"


@pytest.mark.parametrize("name", sorted(set(EXPECTED_SUBCOMMANDS) | set(subcommands())))
def test_subcommand_help(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"cxrtool {name}" in out  # the Usage line
    assert "not available yet" not in out.lower()
    assert mentions_example(out), out


# --------------------------------------------------------------------------- exit codes and errors


@pytest.fixture
def failing_commands():
    """Temporarily register commands that fail in known ways; removed again afterwards."""
    before = list(app.registered_commands)

    @app.command("raise-cxr-error-test", hidden=True)
    def _cxr() -> None:
        raise CxrError("the scan folder /nope does not exist")

    @app.command("raise-usage-error-test", hidden=True)
    def _usage() -> None:
        raise UsageError("--a and --b cannot be used together")

    @app.command("raise-bug-test", hidden=True)
    def _bug() -> None:
        raise RuntimeError("an unexpected bug")

    yield
    app.registered_commands[:] = before
    state["debug"] = False  # the global callback's state, as a fresh run would have it
    console.set_verbosity(1)


def test_usage_errors_exit_2(capsys):
    assert main(["--no-such-option"]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["info", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "no-such" in err.lower() or "no such" in err.lower()


def test_cxr_error_is_one_line_exit_1(failing_commands, capsys):
    assert main(["raise-cxr-error-test"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == ["error: the scan folder /nope does not exist"]
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_usage_error_subclass_exits_2(failing_commands, capsys):
    assert main(["raise-usage-error-test"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: --a and --b cannot be used together"]


@pytest.mark.parametrize(
    "argv",
    [["--debug", "raise-cxr-error-test"], ["raise-cxr-error-test", "--debug"]],
    ids=["before", "after-subcommand"],
)
def test_debug_shows_traceback(failing_commands, capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "CxrError" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: the scan folder /nope does not exist"
    ]


def test_unexpected_exception_is_one_line_without_debug(failing_commands, capsys):
    assert main(["raise-bug-test"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: internal error: RuntimeError")
    assert "--debug" in lines[0]
    assert main(["raise-bug-test", "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, level",
    [(["-q"], 0), (["--quiet"], 0), ([], 1), (["-v"], 2), (["--verbose"], 2), (["-vv"], 3), (["-v", "-v"], 3),
     (["-qv"], 0), (["-q", "-v"], 0)],
)
def test_global_flags_after_subcommand_set_the_verbosity(flags, level, capsys):
    """-q/-v given after the subcommand (alone, repeated or combined as -qv) still set the level; quiet wins."""
    from cxrtool import console

    console.set_verbosity(1)
    assert main(["info", "--help", *flags]) == 0
    assert console.verbosity() == level
    capsys.readouterr()
    console.set_verbosity(1)


# --------------------------------------------------------------------------- Keras/JAX (one subprocess)

CHECK_TAG = "BACKEND-CHECK "


@pytest.fixture(scope="module")
def keras_process() -> subprocess.CompletedProcess:
    """One interpreter (importing Keras/JAX costs seconds) with KERAS_BACKEND=tensorflow that
    calls ``import_keras()`` twice and then runs ``cxrtool info --json``; the backend facts go
    to stderr as one tagged line so stdout holds only the JSON."""
    return run_py(
        f"""
        import json, os, sys
        from cxrtool.backend import import_keras
        k = import_keras()
        k2 = import_keras()  # a second call must not warn again
        facts = {{"backend": k.backend.backend(), "same": k is k2, "env": os.environ.get("KERAS_BACKEND")}}
        print({CHECK_TAG!r} + json.dumps(facts), file=sys.stderr, flush=True)
        from cxrtool.cli import main
        sys.exit(main(["info", "--json"]))
        """,
        env={"KERAS_BACKEND": "tensorflow"},
    )


def test_keras_backend_forced_to_jax_with_one_warning(keras_process):
    proc = keras_process
    assert proc.returncode == 0, proc.stderr
    tagged = [line for line in proc.stderr.splitlines() if line.startswith(CHECK_TAG)]
    assert len(tagged) == 1, proc.stderr
    facts = json.loads(tagged[0][len(CHECK_TAG) :])
    assert facts == {"backend": "jax", "same": True, "env": "jax"}
    # exactly one warning, naming the ignored variable, even though info imported Keras again
    warning_lines = [line for line in proc.stderr.splitlines() if "KERAS_BACKEND" in line]
    assert len(warning_lines) == 1, proc.stderr
    assert "tensorflow" in warning_lines[0] and "JAX" in warning_lines[0]


def test_info_json_lists_devices(keras_process):
    proc = keras_process
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)  # stdout is pure JSON
    assert facts["backend"] == "jax"
    assert facts["cxrtool"] == __version__
    assert isinstance(facts["devices"], list) and len(facts["devices"]) >= 1
    assert {"id", "platform", "kind"} <= set(facts["devices"][0])


# --------------------------------------------------------------------------- start-up guard


def test_help_does_not_import_heavy_modules():
    proc = run_py(
        f"""
        import contextlib, io, sys
        import typer.main
        from cxrtool.cli import app, main

        names = sorted(typer.main.get_command(app).commands)
        assert set({EXPECTED_SUBCOMMANDS!r}) <= set(names), names
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            codes = [main(["--help"])] + [main([n, "--help"]) for n in names]
        assert codes == [0] * len(codes), (codes, sink.getvalue()[-2000:])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY_MODULES!r})
        assert not heavy, "--help imported: " + ", ".join(heavy[:20])
        print("ok", len(names))
        """
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.startswith("ok")


def test_python_m_cxrtool_help_imports_no_heavy_module():
    """The real entry point (``python -m cxrtool --help``), every module it imports listed by
    ``-X importtime``. How long start-up takes is measured by benchmarks/startup.py, not here."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cxrtool", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage" in proc.stdout
    imported = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert {"cxrtool.cli.app", "typer"} <= imported, sorted(imported)[:50]  # the listing is read right
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY_MODULES)
    assert not heavy, "`python -m cxrtool --help` imported: " + ", ".join(heavy[:20])
