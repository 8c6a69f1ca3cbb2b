"""The split every person gets in the dataset built from an aligned corpus, without building it.

Used by `like:<corpus>` sources (manifest.py): the sharp 256 px photos of a CelebA person go to the split the same
person has in the 128 px dataset, so no person is trained on at one resolution and tested on at the other.
"""

from __future__ import annotations

from pathlib import Path

from ..config import BuildConfig
from .metadata import read_aligned_metadata
from .scan import ScanResult


def corpus_split_map(
    folder: Path, seed: int = 0, split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05), older_age: int = 50
) -> dict[str, str]:
    """identity -> split of the build `train/build_dataset.py --input <folder>` makes with these settings.

    It runs the builder's own planning on the metadata (every listed file taken as readable, as in the shared
    corpus), so it follows any change to how builds split people.
    """
    from .builder import plan_rows

    records = read_aligned_metadata(Path(folder))
    results = {r.file_name: ScanResult(r.file_name, True, size=0, sha1=r.file_name) for r in records}
    cfg = BuildConfig(input=Path(folder), seed=seed, split_fractions=split_fractions, older_age=older_age)
    groups, _, _ = plan_rows(records, results, cfg, "aligned")
    return {row["identity"]: split for (split, _), rows in groups.items() for row in rows}
