"""Building a dataset from public chest X-ray sources (``cxrtool build-dataset``).

    from cxrtool.build import BuildOptions, build_dataset
    result = build_dataset([Path("sources")], Path("data"), BuildOptions(per_class=1000))
    result.report["counts_per_split"]

Importing this package is cheap: numpy, Pillow, imagehash and scipy, never Keras, JAX or
matplotlib (figures import it when they are drawn). The modules, in the order data flows:
``sources`` (one adapter per public source) -> ``analyse`` (one decode per file: checksums,
``hashing``, ``quality`` metrics) -> ``dedup`` (clusters, using the exact ``search``) ->
``split`` (balance, group-aware split) -> ``report`` / ``figures`` -> ``write``; ``pipeline``
runs them in that order over the rows defined in ``types``.
"""

from .pipeline import build_dataset
from .quality import Thresholds
from .types import BuildOptions, BuildResult

__all__ = ["BuildOptions", "BuildResult", "Thresholds", "build_dataset"]
