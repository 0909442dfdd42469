"""Session-wide test settings.

A persistent JAX compilation cache: most of the suite's time is XLA compiling the same small
models run after run, so compiled executables are kept on disk in the user's cache folder
(``$XDG_CACHE_HOME/cxrtool/jax-tests``, else ``~/.cache/cxrtool/jax-tests``) and reused by the
next run on this machine, from any checkout (a fresh clone, CI). JAX keys every entry by the
program, the compile options, the JAX/jaxlib versions and the device, so a stale entry is
never used for a different program. The settings are environment
variables, set before any test module imports JAX, so subprocesses the tests start (the CLI
run as ``python -m cxrtool ...``) use the same cache. A value already in the environment
wins; ``JAX_COMPILATION_CACHE_DIR=`` (empty) turns the cache off. The cache is not size-capped
(JAX needs the ``filelock`` package for that): ``rm -rf ~/.cache/cxrtool/jax-tests`` empties it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

JAX_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cxrtool" / "jax-tests"

JAX_CACHE_SETTINGS = {
    "JAX_COMPILATION_CACHE_DIR": str(JAX_CACHE_DIR),
    # every compile is worth keeping: the tests' models are small, so most compiles are short
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


def _use_persistent_jax_cache() -> None:
    for name, value in JAX_CACHE_SETTINGS.items():
        os.environ.setdefault(name, value)
    cache_dir = os.environ["JAX_COMPILATION_CACHE_DIR"]
    if cache_dir:
        try:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)  # a fresh clone has no .cache/ yet
        except OSError:  # a read-only checkout: run without the cache rather than not at all
            cache_dir = os.environ["JAX_COMPILATION_CACHE_DIR"] = ""
    if "jax" in sys.modules:  # imported by a plugin before this file: its flags were read already
        import jax

        jax.config.update("jax_compilation_cache_dir", cache_dir or None)
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
        )
        jax.config.update(
            "jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"])
        )


_use_persistent_jax_cache()
