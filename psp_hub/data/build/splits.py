"""Split people (never photos) into train / validation / test, stratified, seeded and stable."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence

SPLITS = ("train", "validation", "test")


def _rank(seed: int, identity: str) -> str:
    """A seeded, stable pseudo-random order of identities (independent of input order)."""
    return hashlib.sha256(f"{seed}:{identity}".encode()).hexdigest()


def _photo_bucket(n: int) -> str:
    """Stratum by photos per person: 1, 2-4, 5+."""
    return "1" if n == 1 else ("2-4" if n <= 4 else "5+")


def split_identities(
    photos_per_identity: Mapping[str, int],
    strata: Mapping[str, str],
    fractions: Sequence[float],
    seed: int,
) -> dict[str, str]:
    """identity -> split name, so each stratum's images follow `fractions` as closely as whole people allow.

    Within a stratum (e.g. source x older x photos-per-person bucket) people are taken in seeded hash order and each
    goes to the split furthest below its target image count (absolute shortfall), so every split gets a similar mix of sources, ages and
    multi-photo people (the ones that carry references).
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for identity, n in photos_per_identity.items():
        groups[f"{strata.get(identity, '')}|{_photo_bucket(n)}"].append(identity)
    out: dict[str, str] = {}
    for key in sorted(groups):
        people = sorted(groups[key], key=lambda i: _rank(seed, i))
        total = sum(photos_per_identity[i] for i in people)
        have = [0] * len(SPLITS)
        for identity in people:
            n = photos_per_identity[identity]
            # the split with the largest absolute shortfall of images; ties go to the earlier split (train first)
            gaps = [fractions[s] * total - have[s] for s in range(len(SPLITS))]
            best = max(range(len(SPLITS)), key=lambda s: (gaps[s] if fractions[s] > 0 else float("-inf"), -s))
            have[best] += n
            out[identity] = SPLITS[best]
    return out
