"""The photo -> restored photo pipeline: detect, align, check references, restore, paste back, report."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from psp_hub.common.geometry import ffhq_template, similarity_scale
from psp_hub.common.imageio import DEFAULT_MAX_PIXELS, ImageLoadError, ImageSource, load_image
from psp_hub.common.images import image_to_tensor, tensor_to_image
from psp_hub.face.alignment import align_face
from psp_hub.face.detection import DetectedFace, FaceDetector, center_face, largest_face
from psp_hub.pipeline.background import BackgroundUpscaler, ResizeUpscaler
from psp_hub.pipeline.compose import compose_photo, faithful_colour, flag_large_faces, target_scale
from psp_hub.pipeline.config import PipelineConfig
from psp_hub.pipeline.errors import NoFaceError, PipelineError
from psp_hub.pipeline.gate import GateInput, decide
from psp_hub.pipeline.identity import IdentityScorer
from psp_hub.pipeline.model_loading import ModelInfo, load_restoration_model, pick_dtype
from psp_hub.pipeline.pose import pose_descriptor
from psp_hub.pipeline.references import Reference, ReferenceChoice, ReferenceSet
from psp_hub.pipeline.result import RestorationResult, RestoredFace


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass
class _Faces:
    """The faces found in one photo: all detections, the selected ones, their aligned crops and photo -> crop maps."""

    detected: list[DetectedFace]
    selected: list[DetectedFace]
    aligned: list[np.ndarray]
    affines: list[np.ndarray]


def _source_name(src, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    return getattr(src, "name", None) or f"reference {index + 1}"


class RestorationPipeline:
    """Restores every face of ordinary photos with PSP-GAN, guided by reference photos of the same person."""

    def __init__(
        self,
        model,
        info: ModelInfo | None = None,
        detector: FaceDetector | None = None,
        identity: IdentityScorer | None = None,
        config: PipelineConfig | None = None,
        background_upscaler: BackgroundUpscaler | None = None,
        max_input_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.info = info
        self.config = config or PipelineConfig()
        self.detector = detector or FaceDetector(
            device=self.device, score_threshold=min(self.config.detection_threshold, 0.5)
        )
        self.identity = identity if identity is not None else IdentityScorer(device=self.device)
        self.background_upscaler = background_upscaler
        self.max_input_pixels = max_input_pixels
        self.size = int(model.config.out_size)
        self._detect_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, id_or_path: str | None = None, device: str | None = None, **kwargs) -> RestorationPipeline:
        """Build the pipeline around `load_restoration_model(id_or_path)` (PSP_MODEL, bundled, or untrained)."""
        model, info = load_restoration_model(id_or_path, device=device)
        return cls(model, info=info, **kwargs)

    @property
    def max_references(self) -> int:
        return int(self.model.config.max_references)

    # -- faces ------------------------------------------------------------------------------------
    def detect(self, image: np.ndarray, threshold: float | None = None) -> list[DetectedFace]:
        """All faces above `threshold`, sorted by score; tight or tiny crops are retried on a padded, enlarged copy."""
        threshold = self.config.detection_threshold if threshold is None else threshold
        with self._detect_lock:
            faces = [f for f in self.detector.detect(image) if f.score >= threshold]
            if faces:
                return faces
            h, w = image.shape[:2]
            pad = round(0.3 * max(h, w))
            padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
            grow = max(1.0, 480.0 / max(padded.shape[:2]))
            if grow > 1.0:
                padded = cv2.resize(padded, None, fx=grow, fy=grow, interpolation=cv2.INTER_CUBIC)
            retry = [f for f in self.detector.detect(padded) if f.score >= threshold]
        return [
            DetectedFace(
                box=(f.box / grow - pad).astype(np.float32),
                landmarks=(f.landmarks / grow - pad).astype(np.float32),
                score=f.score,
            )
            for f in retry
        ]

    def _select_faces(
        self, faces: list[DetectedFace], shape, cfg: PipelineConfig, warnings: list[str]
    ) -> list[DetectedFace]:
        """Apply the min size, the which-faces option and the face cap."""
        small = [f for f in faces if (f.box[2] - f.box[0]) < cfg.min_face_size]
        faces = [f for f in faces if (f.box[2] - f.box[0]) >= cfg.min_face_size]
        if small:
            warnings.append(f"ignored {len(small)} face(s) narrower than {cfg.min_face_size:g} px")
        if not faces:
            return []
        if cfg.faces == "largest":
            return [largest_face(faces)]
        if cfg.faces == "center":
            return [center_face(faces, shape)]
        if len(faces) > cfg.max_faces:
            warnings.append(f"{len(faces)} faces found; restoring the {cfg.max_faces} largest")
            keep = sorted(faces, key=lambda f: -f.area)[: cfg.max_faces]
            faces = [f for f in faces if any(f is k for k in keep)]
        return faces

    def _aligned_input_face(self, image: np.ndarray) -> tuple[DetectedFace, np.ndarray]:
        """For an already aligned crop: the whole image as one face and its photo -> crop scaling."""
        h, w = image.shape[:2]
        if abs(h - w) > 0.02 * max(h, w):
            raise PipelineError(f"an aligned face crop must be square, got {w}x{h}; turn off 'input is aligned'")
        sx, sy = self.size / w, self.size / h
        affine = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
        inv = cv2.invertAffineTransform(affine)
        lm = ffhq_template(self.size) @ inv[:, :2].T + inv[:, 2]
        return DetectedFace(box=np.array([0, 0, w, h], np.float32), landmarks=lm.astype(np.float32), score=1.0), affine

    # -- references -------------------------------------------------------------------------------
    def prepare_references(
        self,
        sources: Sequence[ImageSource] | None,
        names: Sequence[str] | None = None,
        aligned: bool = False,
    ) -> ReferenceSet:
        """Load, detect (largest face), align and embed each reference; unusable ones are kept with the reason."""
        refs, warnings = [], []
        for i, src in enumerate(sources or []):
            name = names[i] if names and i < len(names) and names[i] else _source_name(src, i)
            ref = Reference(name=name, index=i)
            refs.append(ref)
            try:
                image = load_image(src, max_pixels=self.max_input_pixels)
            except ImageLoadError as exc:
                ref.error = f"not usable: {exc}"
                warnings.append(f"reference {name} skipped: {exc}")
                continue
            if aligned:
                face, affine = self._aligned_input_face(image)
                ref.faces_found = 1
                ref.aligned = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
                ref.pose = pose_descriptor(face.landmarks, affine)
                continue
            faces = self.detect(image)
            ref.faces_found = len(faces)
            if not faces:
                ref.error = "no face found"
                warnings.append(f"reference {name} skipped: no face found in it")
                continue
            if len(faces) > 1:
                warnings.append(f"reference {name} shows {len(faces)} faces: used the largest")
            face = largest_face(faces)
            al = align_face(image, face.landmarks, self.size, padding=self.config.padding)
            ref.aligned, ref.pose = al.image, pose_descriptor(face.landmarks, al.affine)
        usable = [r for r in refs if r.usable]
        if usable and self.identity is not None:
            emb = self.identity.embed([r.aligned for r in usable])
            for r, e in zip(usable, emb):
                r.embedding = e
        return ReferenceSet(refs, self.size, warnings)

    # -- restoration ------------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=pick_dtype(self.device))
        return contextlib.nullcontext()

    def _upscaler(self, cfg: PipelineConfig) -> Callable:
        return self.background_upscaler or ResizeUpscaler(cfg.background)

    def _reference_set(self, references) -> ReferenceSet:
        """A ReferenceSet from a ReferenceSet, one photo, a sequence of photos, or nothing (blind)."""
        if isinstance(references, ReferenceSet):
            refset = references
        elif references is None or (isinstance(references, (list, tuple)) and not references):
            refset = ReferenceSet([], self.size)
        elif isinstance(references, (str, bytes, os.PathLike, np.ndarray)) or not isinstance(references, Sequence):
            refset = self.prepare_references([references])
        else:
            refset = self.prepare_references(list(references))
        if refset.size != self.size:
            raise PipelineError(
                f"the references were aligned at {refset.size} px but the model works at {self.size} px"
            )
        return refset

    def _find_faces(self, image: np.ndarray, cfg: PipelineConfig, warnings: list[str]) -> _Faces:
        """Detect (or take the aligned input as one face), select and align the faces to restore."""
        if cfg.input_is_aligned:
            face, affine = self._aligned_input_face(image)
            flag = cv2.INTER_AREA if image.shape[1] > self.size else cv2.INTER_CUBIC
            return _Faces([face], [face], [cv2.resize(image, (self.size, self.size), interpolation=flag)], [affine])
        detected = self.detect(image)
        selected = self._select_faces(detected, image.shape, cfg, warnings)
        al = [align_face(image, f.landmarks, self.size, padding=cfg.padding) for f in selected]
        found = _Faces(detected, selected, [a.image for a in al], [a.affine for a in al])
        if not selected:
            msg = "No face was found in the photo." if not detected else "No face passed the face filter."
            if cfg.no_face == "error":
                raise NoFaceError(msg + " Try a photo where the face is visible and at least about 16 pixels wide.")
            warnings.append(msg + " The photo was only upscaled.")
        return found

    @torch.inference_mode()
    def restore(
        self,
        photo: ImageSource,
        references: ReferenceSet | ImageSource | Sequence[ImageSource] | None = None,
        config: PipelineConfig | None = None,
        **overrides,
    ) -> RestorationResult:
        """Restore the faces of `photo`, guided by `references` (a ReferenceSet, one or several photos, or None: blind).

        Options come from `config` (default: the pipeline's) with keyword `overrides`, e.g. upscale=4, faces="largest".
        Raises ImageLoadError for an unusable photo and NoFaceError when no face is found (unless no_face="upscale").
        """
        base = config or self.config
        cfg = base.replace(**overrides) if overrides else base
        t = {"start": time.perf_counter()}
        warnings = [self.info.message] if self.info is not None and not self.info.trained else []
        image = load_image(photo, max_pixels=self.max_input_pixels)
        t["load"] = time.perf_counter()
        refset = self._reference_set(references)
        warnings += refset.warnings
        t["references"] = time.perf_counter()
        found = self._find_faces(image, cfg, warnings)
        t["detect_align"] = time.perf_counter()
        emb_in = self.identity.embed(found.aligned) if self.identity is not None and found.selected else None
        choices = self._plan_references(emb_in, found, refset, cfg, warnings)
        t["identity"] = time.perf_counter()
        encode_before = refset.encode_count
        restored, shares = self._run_model(found.aligned, choices, refset, cfg)
        t["restore"] = time.perf_counter()
        faces = self._restored_faces(found, restored, choices, refset, emb_in, cfg)
        for face, share in zip(faces, shares):
            face.reference_shares = share
        t["identity_out"] = time.perf_counter()
        flag_large_faces(faces, cfg, self.size, warnings)
        scale, out_image = float(cfg.upscale), None
        if not cfg.only_faces:
            scale = target_scale(image.shape, cfg, warnings)
            out_image = compose_photo(image, faces, cfg, self._upscaler(cfg), scale)
        t["paste"] = time.perf_counter()
        report = self._report(
            image,
            out_image,
            found.detected,
            faces,
            refset,
            cfg,
            scale,
            t,
            warnings,
            refset.encode_count - encode_before,
        )
        return RestorationResult(image=out_image, faces=faces, report=report, warnings=report["warnings"])

    def _run_model(
        self, aligned: list[np.ndarray], choices: list[ReferenceChoice], refset: ReferenceSet, cfg: PipelineConfig
    ) -> tuple[list[np.ndarray], list[list[float] | None]]:
        """Restore every aligned face: one model call per distinct reference subset (its encoding is cached).
        Also each face's reference shares, in its choice's order (None without references, when not asked for, or
        from a backend that does not report them)."""
        restored: list[np.ndarray | None] = [None] * len(aligned)
        shares: list[list[float] | None] = [None] * len(aligned)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(choices):
            groups.setdefault(c.indices, []).append(i)
        with self._autocast():
            for key, ids in groups.items():
                cache = refset.cache_for(self.model, key)  # its slots hold sorted(key)
                lq = image_to_tensor([aligned[i] for i in ids], self.device)
                shares_wanted = bool(key) and cfg.reference_shares
                out = self.model.restore(lq, cache, strength=float(cfg.strength), return_contributions=shares_wanted)
                images = tensor_to_image(out.image)
                slot = {ref: n for n, ref in enumerate(sorted(key))}
                for j, i in enumerate(ids):
                    restored[i] = images[j]
                    if out.contributions is not None and key:
                        shares[i] = [float(out.contributions[j, slot[ref]]) for ref in key]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return restored, shares

    def _restored_faces(
        self,
        found: _Faces,
        restored: list[np.ndarray],
        choices: list[ReferenceChoice],
        refset: ReferenceSet,
        emb_in,
        cfg: PipelineConfig,
    ) -> list[RestoredFace]:
        """One RestoredFace per face, with the input's colours and identity scores of input, restoration, references."""
        faces = []
        for i, (f, c) in enumerate(zip(found.selected, choices)):
            rf = RestoredFace(
                index=i,
                box=f.box,
                landmarks=f.landmarks,
                score=f.score,
                affine=found.affines[i],
                aligned_input=found.aligned[i],
                restored=restored[i],
                references_used=[refset.references[j].name for j in c.indices],
                reference_notes=c.notes,
            )
            rf.restored = faithful_colour(rf, cfg.feather)
            faces.append(rf)
        if emb_in is None or not faces:
            return faces
        emb_out = self.identity.embed([f.restored for f in faces])
        for i, (rf, c) in enumerate(zip(faces, choices)):
            rf.identity_restored_vs_input = round(float(emb_out[i] @ emb_in[i]), 3)
            ref_emb = [refset.references[j].embedding for j in c.indices if refset.references[j].embedding is not None]
            if ref_emb:
                rf.identity_input_vs_references = round(float(np.mean(np.stack(ref_emb) @ emb_in[i])), 3)
                rf.identity_restored_vs_references = round(float(np.mean(np.stack(ref_emb) @ emb_out[i])), 3)
        return faces

    def _plan_references(
        self, emb_in, found: _Faces, refset: ReferenceSet, cfg: PipelineConfig, warnings: list[str]
    ) -> list[ReferenceChoice]:
        """Decide which faces get the references (the identity gate) and which references each of them uses."""
        n = len(found.selected)
        k = self.max_references if cfg.max_references is None else min(cfg.max_references, self.max_references)
        blind = (
            "no usable references: blind restoration (the model uses no reference photos)"
            if not refset.usable
            else "strength is 0: blind restoration"
            if cfg.strength == 0
            else "max_references is 0: blind restoration"
            if k == 0
            else None
        )
        if blind or n == 0:
            if blind and n:
                warnings.append(blind[0].upper() + blind[1:] + ".")
            return [ReferenceSet.unassigned(blind or "") for _ in range(n)]
        centroid = refset.centroid(cfg.reference_consistency_threshold) if emb_in is not None else None
        poses = [pose_descriptor(f.landmarks, a) for f, a in zip(found.selected, found.affines)]
        spans = [self.size / similarity_scale(a) for a in found.affines]
        reliable = [s >= cfg.identity_min_face_px for s in spans]
        sims = [
            float(e @ centroid) if centroid is not None else None
            for e in (emb_in if emb_in is not None else [None] * n)
        ]
        decision = decide(
            GateInput(sims, reliable, spans),
            cfg.identity_threshold,
            cfg.identity_margin,
            cfg.reference_faces,
            cfg.mismatched_references == "keep",
        )
        if decision.message:
            warnings.append(decision.message)
        choices = []
        for i in range(n):
            if i not in decision.receivers:
                choices.append(ReferenceSet.unassigned(decision.reasons.get(i, "not chosen by the identity gate")))
                continue
            c = refset.choose(
                emb_in[i] if emb_in is not None else None,
                poses[i],
                k,
                cfg.reference_input_threshold if reliable[i] else None,
                cfg.reference_consistency_threshold,
                cfg.mismatched_references == "drop",
                cfg.pose_weight,
            )
            warnings += c.warnings
            choices.append(c)
        return choices

    def _report(self, image, out_image, detected, faces, refset, cfg, scale, t, warnings, encoded) -> dict:
        """The JSON-ready summary: sizes, faces, references, identity scores, timings, warnings."""
        stamps = list(t.items())
        timings = {name: round(stamp - prev, 4) for (_, prev), (name, stamp) in itertools.pairwise(stamps)}
        timings["total"] = round(stamps[-1][1] - stamps[0][1], 4)
        return {
            "model": self.info.to_dict() if self.info else {"out_size": self.size},
            "input_size": [int(image.shape[1]), int(image.shape[0])],
            "output_size": None if out_image is None else [int(out_image.shape[1]), int(out_image.shape[0])],
            "upscale": round(scale, 4),
            "faces_found": len(detected),
            "faces_restored": len(faces),
            "face_selection": cfg.faces,
            "faces": [f.summary() for f in faces],
            "references_given": len(refset),
            "references_usable": len(refset.usable),
            "references": [
                {
                    "name": r.name,
                    "faces_found": r.faces_found,
                    "usable": r.usable,
                    "error": r.error,
                    "identity_to_other_references": None if r.consistency is None else round(r.consistency, 3),
                }
                for r in refset.references
            ],
            "reference_encodings_computed": encoded,
            "max_references": self.max_references,
            "strength": cfg.strength,
            "fidelity": cfg.fidelity,
            "large_faces": cfg.large_faces,
            "identity_threshold": cfg.identity_threshold,
            "identity_margin": cfg.identity_margin,
            "timings_s": timings,
            "warnings": _dedupe(warnings),
        }
