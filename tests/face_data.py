"""Real faces from the shared corpus for tests: a few people with two sharp photos each."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np


def celeba_people(faces: Path, people: int, per_person: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """`per_person` photos each of the first `people` CelebA identities (sorted) with sources of 128 px or more.

    Returns RGB uint8 (people * per_person, 128, 128, 3) and the person index of each row (rows grouped by person).
    """
    by_id = defaultdict(list)
    with open(Path(faces) / "metadata.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"] == "celeba" and int(row["crop_px_in_source"]) >= 128:
                by_id[row["identity"]].append(row["file_name"])
    chosen = sorted(k for k, v in by_id.items() if len(v) >= per_person)[:people]
    assert len(chosen) == people, f"the corpus has {len(chosen)} CelebA people with {per_person} photos"
    names = [n for k in chosen for n in sorted(by_id[k])[:per_person]]
    images = np.stack([cv2.cvtColor(cv2.imread(str(Path(faces) / n)), cv2.COLOR_BGR2RGB) for n in names])
    return images, np.repeat(np.arange(people), per_person)


def celeba_pairs(faces: Path, people: int) -> np.ndarray:
    """Two photos each of the first `people` CelebA identities: RGB uint8 (2n, 128, 128, 3); person i at 2i, 2i+1."""
    return celeba_people(faces, people, 2)[0]
