"""Write a fake multi-source CXR tree (the four public layouts, with planted duplicates,
label conflicts, bad exposures, corrupt and junk files) to try cxrtool without any download.

    python examples/make_phantom_sources.py /tmp/sources
    cxrtool build-dataset /tmp/sources /tmp/data
"""

import sys
from pathlib import Path

from cxrtool.synthetic import write_source_tree

root = Path(sys.argv[1] if len(sys.argv) > 1 else "phantom-sources")
tree = write_source_tree(root, n_per_class=24, size=128, seed=0)
print(root)
print(
    f"{len(tree.files)} files; planted: {len(tree.exact_duplicates)} exact and {len(tree.near_duplicates)} near "
    f"duplicates, {len(tree.label_conflicts)} label conflicts, {len(tree.bad_exposure)} bad exposures, "
    f"{len(tree.corrupt)} corrupt and {len(tree.junk)} junk files",
    file=sys.stderr,
)
