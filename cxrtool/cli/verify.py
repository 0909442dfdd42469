"""``--verify`` (train, evaluate, calibrate): check the dataset's files against the manifest's
SHA-256 before anything is trained or measured. One option type and one call, shared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

VerifyOption = Annotated[bool, typer.Option(
    "--verify",
    help="First check every image of the splits used against the SHA-256 in manifest.csv; stop with the "
         "first row whose file changed or is missing (e.g. --verify on a dataset copied from elsewhere).",
)]


def verify_splits(dataset: Path, splits: tuple[str, ...]) -> None:
    """Run the check and say how many files passed (stderr); a DatasetError stops the command."""
    from .. import console
    from ..manifest import MANIFEST_NAME, verify_dataset

    n = verify_dataset(dataset, splits)
    console.info(f"verified {n} files of the {', '.join(splits)} split{'s' if len(splits) > 1 else ''} "
                 f"against {Path(dataset) / MANIFEST_NAME}")
