"""Real faces from the shared corpus for tests: a few people with two sharp photos each."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np


def celeba_pairs(faces: Path, people: int) -> np.ndarray:
    """Two photos each of the first `people` CelebA identities (sorted) with 128 px sources: RGB uint8 (2n, 128, 128, 3).

    Person i is at rows 2i and 2i+1.
    """
    by_id = defaultdict(list)
    with open(Path(faces) / "metadata.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"] == "celeba" and int(row["crop_px_in_source"]) >= 128:
                by_id[row["identity"]].append(row["file_name"])
    chosen = sorted(k for k, v in by_id.items() if len(v) >= 2)[:people]
    names = [n for k in chosen for n in sorted(by_id[k])[:2]]
    return np.stack([cv2.cvtColor(cv2.imread(str(Path(faces) / n)), cv2.COLOR_BGR2RGB) for n in names])
