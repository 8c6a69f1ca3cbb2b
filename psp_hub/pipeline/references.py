"""Reference photos: aligned once, embedded once, checked against each other and the input, selected, cached."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from psp_hub.common.images import image_to_tensor
from psp_hub.pipeline.pose import pose_distance


@dataclass
class Reference:
    """One user-given reference: its aligned face (or why it is unusable) and what the pipeline measured."""

    name: str
    index: int
    aligned: np.ndarray | None = None  # (S, S, 3) uint8, FFHQ-aligned
    embedding: np.ndarray | None = None
    pose: np.ndarray | None = None
    faces_found: int = 0
    consistency: float | None = None  # mean cosine to the other usable references
    error: str | None = None  # why it cannot be used (not an image, no face)

    @property
    def usable(self) -> bool:
        return self.aligned is not None and self.error is None


@dataclass
class ReferenceChoice:
    """Which references one face gets, and a line per reference saying why."""

    indices: tuple[int, ...]
    notes: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class ReferenceSet:
    """Prepared references plus a cache of encoded subsets, so each subset is encoded by the model only once."""

    def __init__(self, references: list[Reference], size: int, warnings: list[str] | None = None) -> None:
        self.references = references
        self.size = size
        self.warnings = list(warnings or [])
        self._caches: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()
        self.encode_count = 0
        self._compute_consistency()

    def __len__(self) -> int:
        return len(self.references)

    @property
    def usable(self) -> list[Reference]:
        return [r for r in self.references if r.usable]

    def _compute_consistency(self) -> None:
        """Mean cosine of each usable reference to the others (needs embeddings and at least 2 references)."""
        refs = [r for r in self.usable if r.embedding is not None]
        self._pair_sims: dict[int, np.ndarray] = {}
        if len(refs) < 2:
            return
        emb = np.stack([r.embedding for r in refs])
        sims = emb @ emb.T
        for i, r in enumerate(refs):
            r.consistency = float((sims[i].sum() - sims[i, i]) / (len(refs) - 1))
            self._pair_sims[r.index] = np.delete(sims[i], i)

    def disagrees(self, ref: Reference, threshold: float) -> bool:
        """True when, among 3 or more references, this one matches (cosine >= threshold) fewer than half the others."""
        others = self._pair_sims.get(ref.index)
        if others is None or len(others) < 2:
            return False
        return int((others >= threshold).sum()) < int(np.ceil(len(others) / 2))

    def tensor(self, indices: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """(1, K, 3, S, S) float tensor in [-1, 1] of the chosen references."""
        return image_to_tensor([self.references[i].aligned for i in indices], device).unsqueeze(0)

    def cache_for(self, model, indices: tuple[int, ...]):
        """The model's ReferenceCache for this subset, encoded on first use and reused afterwards."""
        if not indices:
            return None
        key = tuple(sorted(indices))
        with self._lock:
            if key not in self._caches:
                self._caches[key] = model.encode_references(self.tensor(key, model.device))
                self.encode_count += 1
            return self._caches[key]

    def consistent(self, threshold: float) -> list[Reference]:
        """Usable references that agree with the others (with fewer than 3, agreement cannot be judged: all)."""
        return [r for r in self.usable if not self.disagrees(r, threshold)]

    def centroid(self, threshold: float) -> np.ndarray | None:
        """Unit mean embedding of the consistent references (the person they show), or None."""
        emb = [r.embedding for r in self.consistent(threshold) if r.embedding is not None]
        if not emb:
            return None
        c = np.mean(np.stack(emb), axis=0)
        return c / max(float(np.linalg.norm(c)), 1e-8)

    def choose(
        self,
        face_embedding: np.ndarray | None,
        face_pose: np.ndarray | None,
        k: int,
        input_threshold: float | None,
        consistency_threshold: float,
        drop_mismatched: bool,
        pose_weight: float,
    ) -> ReferenceChoice:
        """Pick at most `k` references for one face: drop (or flag) mismatches, then rank by identity and pose.

        `input_threshold` None means the input face is too small for its identity to be trusted: no input check.
        """
        notes, warnings, candidates = [], [], []
        for r in self.references:
            note = {"reference": r.name, "faces_found": r.faces_found}
            if not r.usable:
                note.update(status="unusable", reason=r.error)
                notes.append(note)
                continue
            sim = (
                float(np.dot(face_embedding, r.embedding))
                if face_embedding is not None and r.embedding is not None
                else None
            )
            pdist = pose_distance(face_pose, r.pose) if face_pose is not None and r.pose is not None else None
            note.update(
                identity_to_input=_round(sim), identity_to_references=_round(r.consistency), pose_distance=_round(pdist)
            )
            reasons = []
            if self.disagrees(r, consistency_threshold):
                reasons.append(f"matches fewer than half of the other references (mean identity {r.consistency:.2f})")
            if sim is not None and input_threshold is not None and sim < input_threshold:
                reasons.append(f"identity to the input face {sim:.2f} < {input_threshold:.2f}")
            if reasons:
                msg = f"reference {r.name} may be someone else ({'; '.join(reasons)})"
                if drop_mismatched:
                    note.update(status="dropped", reason="; ".join(reasons))
                    warnings.append(msg + ": dropped")
                    notes.append(note)
                    continue
                warnings.append(msg + ": kept as asked")
                note["warning"] = "; ".join(reasons)
            score = (sim if sim is not None else 0.0) - pose_weight * (pdist if pdist is not None else 0.0)
            note["selection_score"] = _round(score)
            candidates.append((score, r.index, note))
            notes.append(note)
        candidates.sort(key=lambda c: -c[0])
        warnings += _mark_ranks(candidates, k, pose_weight)
        return ReferenceChoice(tuple(sorted(c[1] for c in candidates[:k])), notes, warnings)

    @staticmethod
    def unassigned(reason: str) -> ReferenceChoice:
        """No references for this face, with the reason in its notes."""
        return ReferenceChoice((), [{"status": "none", "reason": reason}], [])


def _mark_ranks(candidates: list[tuple[float, int, dict]], k: int, pose_weight: float) -> list[str]:
    """Mark the ranked candidates' notes used / not selected; the warning when more matched than the model takes."""
    extra: list[str] = []
    for rank, (_, _, note) in enumerate(candidates):
        if rank < k:
            note["status"] = "used"
            note["reason"] = (
                f"ranked {rank + 1} of {len(candidates)} by identity - {pose_weight:g} x pose distance"
                if len(candidates) > k
                else "matches"
            )
        else:
            note["status"] = "not selected"
            note["reason"] = f"only {k} references fit the model; ranked {rank + 1} of {len(candidates)}"
    if len(candidates) > k:
        extra.append(
            f"{len(candidates)} matching references but the model takes {k}: picked the {k} best "
            "by identity similarity and head pose"
        )
    return extra


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)
