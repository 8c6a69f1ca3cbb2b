"""A small real sample of an aligned corpus (links + a metadata subset) for tests and quick experiments."""

from __future__ import annotations

import csv
import os
import shutil
from collections import defaultdict
from pathlib import Path


def make_sample_corpus(
    corpus: Path,
    out: Path,
    celeba_people: int = 8,
    lfw_multi: int = 25,
    lfw_single: int = 40,
    utk_older: int = 50,
    utk_younger: int = 60,
    max_photos: int = 6,
    older_age: int = 50,
) -> Path:
    """Link a deterministic subset (people with several photos, single-photo people, older faces) into `out`."""
    corpus, out = Path(corpus), Path(out)
    with (corpus / "metadata.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        rows = list(reader)
    people: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        people[r["identity"]].append(r)
    by_source: dict[str, list[str]] = defaultdict(list)
    for ident in sorted(people):
        by_source[people[ident][0]["source"]].append(ident)

    chosen: list[dict] = []
    chosen += [r for p in by_source["celeba"][:celeba_people] for r in people[p][: max_photos * 4]]
    lfw = by_source["lfw"]
    chosen += [r for p in [p for p in lfw if len(people[p]) > 1][:lfw_multi] for r in people[p][:max_photos]]
    chosen += [people[p][0] for p in [p for p in lfw if len(people[p]) == 1][:lfw_single]]
    utk = [people[p][0] for p in by_source["utkface"]]
    chosen += [r for r in utk if r["age"] and int(r["age"]) >= older_age][:utk_older]
    chosen += [r for r in utk if r["age"] and int(r["age"]) < older_age][:utk_younger]

    out.mkdir(parents=True, exist_ok=True)
    for r in chosen:
        dst = out / r["file_name"]
        if not dst.exists():
            try:
                os.symlink(corpus / r["file_name"], dst)
            except OSError:
                shutil.copyfile(corpus / r["file_name"], dst)
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(chosen)
    return out


def build_sample_dataset(
    corpus: Path,
    root: Path,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    rows_per_shard: int = 128,
) -> Path:
    """Sample the corpus into `root/input` and build it into `root/dataset` (a few hundred faces, seconds)."""
    from ..config import BuildConfig
    from .builder import build_dataset

    src = make_sample_corpus(corpus, Path(root) / "input")
    out = Path(root) / "dataset"
    build_dataset(
        BuildConfig(
            input=src, output=out, seed=seed, split_fractions=fractions, rows_per_shard=rows_per_shard, workers=1
        )
    )
    return out
