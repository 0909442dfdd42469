"""build-dataset from Python: the CLI is a thin wrapper over cxrtool.build.build_dataset.

    python examples/build_dataset_api.py SOURCES OUT
"""

import sys
from pathlib import Path

from cxrtool.build import BuildOptions, Thresholds, build_dataset

srcs, out = [Path(p) for p in sys.argv[1:-1]], Path(sys.argv[-1])
result = build_dataset(
    srcs,
    out,
    BuildOptions(per_class=1000, split=(0.8, 0.1, 0.1), seed=1, thresholds=Thresholds(min_size=128), overwrite=True),
)
report = result.report
print(f"kept {report['total_kept']} images; per split: {report['counts_per_split']}")
print(f"label conflicts: {len(report['duplicates']['label_conflicts'])}; leak check: {report['leak_check']}")
for warning in report["warnings"]:
    print("warning:", warning)
