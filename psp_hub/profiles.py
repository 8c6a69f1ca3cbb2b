"""Person profiles: one person's chosen references, prepared and encoded once, reused for an album or a video.

A profile holds the references' aligned crops (uint8 at the model's size), their identity embeddings and head
poses, the model's ReferenceCache for them (keyed by a hash of the model's config and weights) and metadata
(name, source files, when built, which references were dropped and why). It is one safetensors file: tensors
plus a JSON header entry, never pickle. Loading with a different model re-encodes the stored crops.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from psp_hub.common.images import image_to_tensor
from psp_hub.models import ReferenceCache
from psp_hub.pipeline.references import Reference, ReferenceSet

PROFILE_FORMAT = 1
_META_KEY = "psp_profile"


def model_fingerprint(model) -> str:
    """sha256 of the model's config and every state-dict tensor (name, dtype, shape, bytes): the cache's key."""
    fp = getattr(model, "fingerprint", None)
    if isinstance(fp, str):  # e.g. an ONNX backend, which hashes its graph files
        return fp
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ProfileReferenceSet(ReferenceSet):
    """A ReferenceSet whose full-profile subset is already encoded: the pipeline reuses the profile's cache."""

    def __init__(self, references: list[Reference], size: int, cache: ReferenceCache | None):
        super().__init__(references, size)
        self._profile_cache = cache

    def cache_for(self, model, indices: tuple[int, ...]):
        if self._profile_cache is not None and tuple(sorted(indices)) == tuple(range(len(self.references))):
            return self._profile_cache
        return super().cache_for(model, indices)  # a face that keeps only some references: encode that subset


@dataclass
class PersonProfile:
    """One person's references for a model, built once (`build`), saved (`save`) and reused (`load`)."""

    name: str
    crops: np.ndarray  # (N, S, S, 3) uint8, FFHQ-aligned at the model's size
    embeddings: np.ndarray | None = None  # (N, D) float32 unit vectors
    poses: np.ndarray | None = None  # (N, 2) head-pose descriptors
    sources: list[str] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)  # {"reference": name, "reason": why}
    created: str = ""
    model_hash: str | None = None
    cache: ReferenceCache | None = None
    reencoded: str | None = None  # why the cache was recomputed when loading, if it was

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def build(
        cls, pipeline, photos: Sequence, name: str = "person", names: Sequence[str] | None = None, aligned: bool = False
    ) -> PersonProfile:
        """Prepare `photos` with the pipeline, keep the usable references that agree with each other (the best
        `max_references` by agreement) and encode them once with the pipeline's model."""
        refset = pipeline.prepare_references(list(photos), names, aligned)
        threshold = pipeline.config.reference_consistency_threshold
        dropped = [{"reference": r.name, "reason": r.error} for r in refset.references if not r.usable]
        agree = refset.consistent(threshold)
        agreeing = {r.index for r in agree}
        dropped += [
            {
                "reference": r.name,
                "reason": f"matches fewer than half of the other references (mean identity {r.consistency:.2f})",
            }
            for r in refset.usable
            if r.index not in agreeing
        ]
        ranked = sorted(agree, key=lambda r: -(r.consistency if r.consistency is not None else 0.0))
        keep = sorted(ranked[: pipeline.max_references], key=lambda r: r.index)
        dropped += [
            {
                "reference": r.name,
                "reason": f"only {pipeline.max_references} references fit the model; "
                "kept the ones that agree most with the others",
            }
            for r in ranked[pipeline.max_references :]
        ]
        if not keep:
            raise ValueError(
                "no usable reference photo: " + "; ".join(f"{d['reference']}: {d['reason']}" for d in dropped)
            )
        with_emb = all(r.embedding is not None for r in keep)
        with_pose = all(r.pose is not None for r in keep)
        profile = cls(
            name=name,
            crops=np.stack([r.aligned for r in keep]).astype(np.uint8),
            embeddings=np.stack([r.embedding for r in keep]).astype(np.float32) if with_emb else None,
            poses=np.stack([r.pose for r in keep]).astype(np.float32) if with_pose else None,
            sources=[r.name for r in keep],
            dropped=dropped,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        profile.encode(pipeline.model)
        return profile

    @torch.inference_mode()
    def encode(self, model) -> ReferenceCache:
        """(Re)compute the reference cache with `model` and record its fingerprint."""
        self.cache = model.encode_references(image_to_tensor(self.crops, model.device).unsqueeze(0))
        self.model_hash = model_fingerprint(model)
        return self.cache

    def reference_set(self, pipeline) -> ProfileReferenceSet:
        """The references as the pipeline's ReferenceSet, with this profile's cache on the pipeline's model."""
        if self.size != pipeline.size:
            raise ValueError(f"the profile's crops are {self.size} px but the model works at {pipeline.size} px")
        if self.cache is None or self.model_hash != model_fingerprint(pipeline.model):
            self.reencoded = "the profile was encoded for another model: re-encoded from its crops"
            self.encode(pipeline.model)
        refs = [
            Reference(
                name=n,
                index=i,
                aligned=self.crops[i],
                faces_found=1,
                embedding=None if self.embeddings is None else self.embeddings[i],
                pose=None if self.poses is None else self.poses[i].astype(np.float64),
            )
            for i, n in enumerate(self.sources)
        ]
        return ProfileReferenceSet(refs, self.size, self.cache.to(pipeline.device))

    # -- files --------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write one safetensors file: crops, embeddings, poses and cache tensors, metadata as JSON in its header."""
        path = Path(path)
        tensors = {"crops": np.ascontiguousarray(self.crops)}
        if self.embeddings is not None:
            tensors["embeddings"] = self.embeddings
        if self.poses is not None:
            tensors["poses"] = self.poses
        if self.cache is not None:
            tensors["cache.mask"] = self.cache.mask.cpu().numpy()
            for r, d in self.cache.features.items():
                for key, t in d.items():
                    tensors[f"cache.{r}.{key}"] = t.detach().float().cpu().contiguous().numpy()
        meta = {
            "format": PROFILE_FORMAT,
            "name": self.name,
            "sources": self.sources,
            "dropped": self.dropped,
            "created": self.created,
            "model_hash": self.model_hash,
            "size": self.size,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={_META_KEY: json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path, model=None) -> PersonProfile:
        """Read a profile; with `model`, check the cache's model hash and re-encode from the crops on a mismatch."""
        with safe_open(str(path), framework="numpy") as f:
            header = (f.metadata() or {}).get(_META_KEY)
        if header is None:
            raise ValueError(f"{path} is not a PSP-GAN person profile (no '{_META_KEY}' metadata)")
        meta = json.loads(header)
        if meta.get("format") != PROFILE_FORMAT:
            raise ValueError(
                f"{path}: profile format {meta.get('format')} is not supported (expected {PROFILE_FORMAT})"
            )
        t = load_file(str(path))
        profile = cls(
            name=meta["name"],
            crops=t["crops"],
            embeddings=t.get("embeddings"),
            poses=t.get("poses"),
            sources=list(meta["sources"]),
            dropped=list(meta["dropped"]),
            created=meta["created"],
            model_hash=meta.get("model_hash"),
            cache=_cache_from(t),
        )
        if model is not None and (profile.cache is None or profile.model_hash != model_fingerprint(model)):
            profile.reencoded = "the profile was encoded for another model: re-encoded from its crops"
            profile.encode(model)
        return profile

    def summary(self) -> dict:
        """JSON-ready description for reports and the app."""
        return {
            "name": self.name,
            "references": self.sources,
            "dropped": self.dropped,
            "created": self.created,
            "size": self.size,
            "model_hash": self.model_hash,
            "reencoded": self.reencoded,
        }


def _cache_from(tensors: dict[str, np.ndarray]) -> ReferenceCache | None:
    if "cache.mask" not in tensors:
        return None
    features: dict[int, dict[str, torch.Tensor]] = {}
    for name, arr in tensors.items():
        if name.startswith("cache.") and name != "cache.mask":
            _, r, key = name.split(".", 2)
            features.setdefault(int(r), {})[key] = torch.from_numpy(arr)
    return ReferenceCache(features, torch.from_numpy(tensors["cache.mask"]).bool())
