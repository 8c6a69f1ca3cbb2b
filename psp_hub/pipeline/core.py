"""The photo -> restored photo pipeline: detect, align, check references, restore, paste back, report."""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from psp_hub.face.alignment import align_face, ffhq_template, similarity_scale
from psp_hub.face.detection import DetectedFace, FaceDetector, center_face, largest_face
from psp_hub.face.paste import paste_faces
from psp_hub.imageio import DEFAULT_MAX_PIXELS, ImageLoadError, ImageSource, load_image
from psp_hub.pipeline.background import BackgroundUpscaler, ResizeUpscaler, output_size
from psp_hub.pipeline.config import PipelineConfig
from psp_hub.pipeline.errors import NoFaceError, PipelineError
from psp_hub.pipeline.identity import IdentityScorer
from psp_hub.pipeline.model_loading import ModelInfo, load_restoration_model, pick_dtype
from psp_hub.pipeline.pose import pose_descriptor
from psp_hub.pipeline.references import Reference, ReferenceChoice, ReferenceSet
from psp_hub.pipeline.result import RestorationResult, RestoredFace


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _to_tensor(faces: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [-1, 1]."""
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    return x.to(device)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) in about [-1, 1] -> (N, S, S, 3) uint8."""
    return x.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


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
        self.detector = detector or FaceDetector(device=self.device, score_threshold=min(self.config.detection_threshold, 0.5))
        self.identity = identity if identity is not None else IdentityScorer(device=self.device)
        self.background_upscaler = background_upscaler
        self.max_input_pixels = max_input_pixels
        self.size = int(model.config.out_size)
        self._detect_lock = threading.Lock()
        self._has_strength = "strength" in inspect.signature(model.restore).parameters

    @classmethod
    def from_pretrained(cls, id_or_path: str | None = None, device: str | None = None, **kwargs) -> "RestorationPipeline":
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
            pad = int(round(0.3 * max(h, w)))
            padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
            grow = max(1.0, 480.0 / max(padded.shape[:2]))
            if grow > 1.0:
                padded = cv2.resize(padded, None, fx=grow, fy=grow, interpolation=cv2.INTER_CUBIC)
            retry = [f for f in self.detector.detect(padded) if f.score >= threshold]
        return [DetectedFace(box=(f.box / grow - pad).astype(np.float32), landmarks=(f.landmarks / grow - pad).astype(np.float32),
                             score=f.score) for f in retry]

    def _select_faces(self, faces: list[DetectedFace], shape, cfg: PipelineConfig, warnings: list[str]) -> list[DetectedFace]:
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

    @torch.inference_mode()
    def restore(
        self,
        photo: ImageSource,
        references: ReferenceSet | Sequence[ImageSource] | None = None,
        config: PipelineConfig | None = None,
        **overrides,
    ) -> RestorationResult:
        """Restore the faces of `photo` with `references` (a ReferenceSet, or photos/paths to prepare).

        Options come from `config` (default: the pipeline's) with keyword `overrides`, e.g. upscale=4, faces="largest".
        Raises ImageLoadError for an unusable photo and NoFaceError when no face is found (unless no_face="upscale").
        """
        cfg = (config or self.config).replace(**overrides) if overrides else (config or self.config)
        t = {"start": time.perf_counter()}
        warnings: list[str] = []
        if self.info is not None and not self.info.trained:
            warnings.append(self.info.message)

        image = load_image(photo, max_pixels=self.max_input_pixels)
        h, w = image.shape[:2]
        t["load"] = time.perf_counter()

        if references is None or isinstance(references, ReferenceSet):
            refset = references or ReferenceSet([], self.size)
        else:
            refset = self.prepare_references(list(references))
        if refset.size != self.size:
            raise PipelineError(f"the references were aligned at {refset.size} px but the model works at {self.size} px")
        warnings += refset.warnings
        t["references"] = time.perf_counter()

        if cfg.input_is_aligned:
            face, affine = self._aligned_input_face(image)
            detected, selected = [face], [face]
            aligned = [cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA if w > self.size else cv2.INTER_CUBIC)]
            affines = [affine]
        else:
            detected = self.detect(image)
            selected = self._select_faces(detected, image.shape, cfg, warnings)
            al = [align_face(image, f.landmarks, self.size, padding=cfg.padding) for f in selected]
            aligned, affines = [a.image for a in al], [a.affine for a in al]
        if not selected:
            msg = "No face was found in the photo." if not detected else "No face passed the face filter."
            if cfg.no_face == "error":
                raise NoFaceError(msg + " Try a photo where the face is visible and at least about 16 pixels wide.")
            warnings.append(msg + " The photo was only upscaled.")
        t["detect_align"] = time.perf_counter()

        # Identity of the inputs, then per-face reference choice.
        k = self.max_references if cfg.max_references is None else min(cfg.max_references, self.max_references)
        use_identity = self.identity is not None and selected
        emb_in = self.identity.embed(aligned) if use_identity else None
        if self.identity is None and refset.usable:
            warnings.append("identity network unavailable: references were not checked")
        poses = [pose_descriptor(f.landmarks, a) for f, a in zip(selected, affines)]
        spans = [self.size / similarity_scale(a) for a in affines]
        choices = self._plan_references(emb_in, poses, spans, refset, cfg, k, warnings)
        for c in choices:
            warnings += c.warnings
        if not refset.usable and selected:
            warnings.append("No usable references: blind restoration (the model uses no reference photos).")
        t["identity"] = time.perf_counter()

        # Restore, one model call per distinct reference subset (the subset's encoding is cached).
        restored: list[np.ndarray | None] = [None] * len(selected)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(choices):
            groups.setdefault(c.indices, []).append(i)
        encode_before = refset.encode_count
        with self._autocast():
            for key, ids in groups.items():
                cache = refset.cache_for(self.model, key)
                lq = _to_tensor([aligned[i] for i in ids], self.device)
                kwargs = {"strength": float(cfg.strength)} if self._has_strength and cache is not None else {}
                out = _to_uint8(self.model.restore(lq, cache, **kwargs).image)
                for j, i in enumerate(ids):
                    restored[i] = out[j]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t["restore"] = time.perf_counter()

        faces = []
        emb_out = self.identity.embed(restored) if use_identity else None
        for i, (f, c) in enumerate(zip(selected, choices)):
            used = [refset.references[j] for j in c.indices]
            rf = RestoredFace(index=i, box=f.box, landmarks=f.landmarks, score=f.score, affine=affines[i],
                              aligned_input=aligned[i], restored=restored[i], references_used=[r.name for r in used],
                              reference_notes=c.notes)
            if emb_out is not None:
                rf.identity_restored_vs_input = round(float(emb_out[i] @ emb_in[i]), 3)
                ref_emb = [r.embedding for r in used if r.embedding is not None]
                if ref_emb:
                    rf.identity_input_vs_references = round(float(np.mean(np.stack(ref_emb) @ emb_in[i])), 3)
                    rf.identity_restored_vs_references = round(float(np.mean(np.stack(ref_emb) @ emb_out[i])), 3)
            faces.append(rf)
        t["identity_out"] = time.perf_counter()

        out_image, scale = None, float(cfg.upscale)
        if not cfg.only_faces:
            if h * w * scale * scale > cfg.max_output_pixels:
                scale = math.sqrt(cfg.max_output_pixels / (h * w))
                warnings.append(f"upscale lowered from {cfg.upscale:g}x to {scale:.2f}x to stay under "
                                f"{cfg.max_output_pixels / 1e6:g} megapixels")
            oh, ow = output_size(image.shape, scale)
            background = self._upscaler(cfg)(image, (oh, ow))
            if background.shape[:2] != (oh, ow):
                raise PipelineError(f"the background upscaler returned {background.shape[:2]}, expected {(oh, ow)}")
            out_image = paste_faces(background, [(f.restored, f.affine) for f in faces], (ow / w, oh / h), cfg.feather)
        t["paste"] = time.perf_counter()

        report = self._report(image, out_image, detected, faces, refset, cfg, scale, t, warnings,
                              refset.encode_count - encode_before)
        return RestorationResult(image=out_image, faces=faces, report=report, warnings=report["warnings"])

    def _plan_references(self, emb_in, poses, spans, refset: ReferenceSet, cfg: PipelineConfig, k: int,
                         warnings: list[str]) -> list[ReferenceChoice]:
        """Decide which faces get the references (they show one person) and which references each face uses."""
        n = len(poses)
        if not refset.usable or n == 0:
            return [ReferenceSet.unassigned("no usable references: blind restoration") for _ in range(n)]
        if k == 0:
            warnings.append("max_references is 0: blind restoration")
            return [ReferenceSet.unassigned("max_references is 0") for _ in range(n)]
        centroid = refset.centroid(cfg.reference_consistency_threshold) if emb_in is not None else None
        face_sims = [float(emb_in[i] @ centroid) if centroid is not None else None for i in range(n)]
        reliable = [spans[i] >= cfg.identity_min_face_px for i in range(n)]
        if cfg.reference_faces == "all" or n == 1:
            receivers = list(range(n))
        elif centroid is not None:
            best = max(range(n), key=lambda i: face_sims[i])
            receivers = [best]
            warnings.append(f"{n} faces: the references were used for face {best} only, the best identity match "
                            f"({face_sims[best]:.2f}); the others were restored blind")
        else:
            receivers = [max(range(n), key=lambda i: spans[i])]
            warnings.append("no identity network: the references were used for the largest face only")
        choices = []
        for i in range(n):
            if i not in receivers:
                choices.append(ReferenceSet.unassigned(f"the references belong to face {receivers[0]} (best identity match)"))
                continue
            sim = face_sims[i]
            if sim is not None and reliable[i] and sim < cfg.identity_threshold:
                msg = (f"the references do not look like face {i} (identity {sim:.2f} < {cfg.identity_threshold:.2f}); "
                       "they may show someone else")
                if cfg.mismatched_references == "drop":
                    warnings.append(msg + ": restored blind")
                    choices.append(ReferenceSet.unassigned(msg))
                    continue
                warnings.append(msg + ": used anyway, as asked")
            elif sim is not None and not reliable[i]:
                warnings.append(f"face {i} is only about {spans[i]:.0f} px across: its identity cannot be checked "
                                "against the references")
            choices.append(refset.choose(
                emb_in[i] if emb_in is not None else None, poses[i], k,
                cfg.reference_input_threshold if reliable[i] else None, cfg.reference_consistency_threshold,
                cfg.mismatched_references == "drop", cfg.pose_weight))
        return choices

    def _report(self, image, out_image, detected, faces, refset, cfg, scale, t, warnings, encoded) -> dict:
        """The JSON-ready summary: sizes, faces, references, identity scores, timings, warnings."""
        stamps = list(t.items())
        timings = {name: round(stamp - prev, 4) for (_, prev), (name, stamp) in zip(stamps, stamps[1:])}
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
            "references": [{"name": r.name, "faces_found": r.faces_found, "usable": r.usable, "error": r.error,
                            "identity_to_other_references": None if r.consistency is None else round(r.consistency, 3)}
                           for r in refset.references],
            "reference_encodings_computed": encoded,
            "max_references": self.max_references,
            "strength": cfg.strength,
            "timings_s": timings,
            "warnings": _dedupe(warnings),
        }
