"""Read the input folder: an aligned corpus with a metadata table, or a tree of ordinary photos."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")


@dataclass
class InputRecord:
    """One input image and what the metadata says about it (fields left None when unknown)."""

    file_name: str  # relative to the input folder
    identity: str
    source: str
    id: str | None = None
    age: int | None = None
    gender: str | None = None
    det_score: float | None = None
    native_px: int | None = None
    faces_in_photo: int | None = None
    origin: str | None = None
    extra: dict = field(default_factory=dict)


def find_metadata(folder: Path) -> Path | None:
    """The metadata table of an aligned corpus (HF imagefolder names), or None for a photo folder."""
    for name in METADATA_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _clean(value):
    """Empty strings and NaN become None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _opt_int(value) -> int | None:
    """An optional integer cell."""
    value = _clean(value)
    return None if value is None else int(float(value))


def _opt_float(value) -> float | None:
    """An optional float cell."""
    value = _clean(value)
    return None if value is None else float(value)


def _read_table(path: Path) -> list[dict]:
    """Rows of a csv / jsonl / parquet metadata table as dicts."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_aligned_metadata(folder: Path, default_source: str = "faces") -> list[InputRecord]:
    """Records of an aligned corpus; `file_name` is required, identity defaults to the file itself."""
    path = find_metadata(folder)
    if path is None:
        raise FileNotFoundError(f"no {' / '.join(METADATA_NAMES)} in {folder}")
    records = []
    for row in _read_table(path):
        name = _clean(row.get("file_name"))
        if name is None:
            continue
        source = _clean(row.get("source")) or default_source
        records.append(
            InputRecord(
                file_name=str(name),
                identity=str(_clean(row.get("identity")) or f"{source}:{Path(name).stem}"),
                source=str(source),
                id=_clean(row.get("id")),
                age=_opt_int(row.get("age")),
                gender=_clean(row.get("gender")),
                det_score=_opt_float(row.get("det_score")),
                native_px=_opt_int(row.get("crop_px_in_source", row.get("native_resolution"))),
                faces_in_photo=_opt_int(row.get("faces_in_photo")),
                origin=_clean(row.get("origin")),
            )
        )
    return records


def list_photos(folder: Path, source: str) -> list[InputRecord]:
    """Photos under `folder`; a photo in a sub-folder belongs to the person named by that sub-folder."""
    records = []
    paths = [Path(root) / name for root, _, names in os.walk(folder, followlinks=True) for name in names]
    for path in sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        person = rel.parent.as_posix() if rel.parent != Path(".") else rel.stem
        records.append(
            InputRecord(file_name=rel.as_posix(), identity=f"{source}:{person}", source=source, origin=rel.as_posix())
        )
    return records
