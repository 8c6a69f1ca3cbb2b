"""Age groups and the 'older' group that the loader oversamples (paper 4.1: 30 % older faces)."""

from __future__ import annotations

OLDER_AGE = 50
"""Default threshold: from about 50, wrinkles, sagging and age spots are the norm on faces (see docs/data.md)."""

AGE_GROUPS: tuple[tuple[str, int, int], ...] = (
    ("child", 0, 12),
    ("teen", 13, 19),
    ("young_adult", 20, 34),
    ("adult", 35, 49),
    ("older", 50, 64),
    ("senior", 65, 200),
)
UNKNOWN_GROUP = "unknown"


def age_group(age: int | None) -> str:
    """Life-stage label of an age in years; 'unknown' when there is no age label."""
    if age is None:
        return UNKNOWN_GROUP
    for name, lo, hi in AGE_GROUPS:
        if lo <= age <= hi:
            return name
    return UNKNOWN_GROUP


def is_older(age: int | None, older_age: int = OLDER_AGE) -> bool:
    """True for labelled ages at or above the threshold; unlabelled faces stay in the general stream."""
    return age is not None and age >= older_age
