"""Per-source counts and the sharpness distribution of a build, for build_report.json and the dataset card."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np

from .metadata import InputRecord
from .splits import SPLITS

SHARP_LEVELS = (128, 192, 256, 384)
"""Thresholds the card counts faces and people at (`sharp_px` >= level)."""


def _distribution(values: list[int]) -> dict:
    """Quantiles of measured sharpness and how many faces reach each level."""
    if not values:
        return {"measured": 0}
    v = np.asarray(values)
    out = {"measured": int(v.size), **{f"p{q}": int(np.percentile(v, q)) for q in (10, 25, 50, 75, 90)}}
    out.update({f">={level}": int((v >= level).sum()) for level in SHARP_LEVELS})
    return out


def _people_with_sharp_pairs(rows: list[dict]) -> dict[str, int]:
    """People with at least two photos at each sharpness level (identity pairs usable as target + reference)."""
    out = {}
    for level in SHARP_LEVELS:
        per_person = Counter(r["identity"] for r in rows if (r.get("sharp_px") or 0) >= level)
        out[f">={level}"] = sum(1 for n in per_person.values() if n >= 2)
    return out


def sharpness_report(groups: Mapping, records: list[InputRecord], skipped_by_source: Mapping[str, Counter]) -> dict:
    """`per_source` (inputs, kept, skipped by reason, rows per split, people), `sharpness`, `sharp_pairs`."""
    rows_by_source: dict[str, list[dict]] = defaultdict(list)
    split_rows: dict[str, list[dict]] = defaultdict(list)
    for (split, _), rows in groups.items():
        for r in rows:
            rows_by_source[r["source"]].append({**r, "split": split})
            split_rows[split].append(r)
    inputs = Counter(r.source for r in records)
    per_source = {}
    for source in sorted(set(inputs) | set(rows_by_source)):
        rows = rows_by_source.get(source, [])
        people = Counter(r["identity"] for r in rows)
        per_source[source] = {
            "inputs": inputs.get(source, 0),
            "kept": len(rows),
            "skipped": dict(sorted(skipped_by_source.get(source, Counter()).items())),
            "splits": {s: sum(1 for r in rows if r["split"] == s) for s in SPLITS},
            "people": len(people),
            "multi_photo": sum(1 for n in people.values() if n >= 2),
        }
    sharpness = {
        s: _distribution([r["sharp_px"] for r in rows if r.get("sharp_px") is not None])
        for s, rows in sorted(rows_by_source.items())
    }
    sharpness["all"] = _distribution(
        [r["sharp_px"] for rows in rows_by_source.values() for r in rows if r.get("sharp_px") is not None]
    )
    return {
        "per_source": per_source,
        "sharpness": sharpness,
        "sharp_pairs": {s: _people_with_sharp_pairs(split_rows.get(s, [])) for s in SPLITS},
    }
