"""build-dataset's worker processes are safe to start from a process that already runs JAX
(a notebook that trained a model, then builds another dataset): no fork of a multithreaded
JAX process, and the same results as one worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.mark.slow
def test_workers_after_jax_is_loaded_do_not_fork_it(tmp_path):
    script = textwrap.dedent(
        f"""
        import warnings
        import jax, jax.numpy as jnp
        jnp.ones(3).block_until_ready()  # JAX's threads are running now
        from pathlib import Path
        from cxrtool.build import BuildOptions, Thresholds, build_dataset
        from cxrtool.build.analyse import _pool_context
        from cxrtool.synthetic import write_source_tree
        assert _pool_context().get_start_method() != "fork"
        write_source_tree(Path({str(tmp_path / 'src')!r}), n_per_class=12, size=64)
        opts = dict(seed=0, thresholds=Thresholds(min_size=32), figures=False, dry_run=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            two = build_dataset([Path({str(tmp_path / 'src')!r})], Path({str(tmp_path / 'a')!r}), BuildOptions(workers=2, **opts))
        fork_warnings = [str(w.message) for w in caught if "fork" in str(w.message)]
        assert not fork_warnings, fork_warnings
        one = build_dataset([Path({str(tmp_path / 'src')!r})], Path({str(tmp_path / 'b')!r}), BuildOptions(workers=1, **opts))
        n = len(two.candidates)
        assert n >= 64, n  # enough files for the worker pool to be used
        assert [c.analysis.hash for c in two.candidates] == [c.analysis.hash for c in one.candidates]
        print("OK", n)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK"), proc.stdout
