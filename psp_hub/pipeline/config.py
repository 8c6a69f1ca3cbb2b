"""The pipeline's typed options: which faces, upscale factor, reference checks and selection, limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

FACE_SELECTIONS = ("all", "largest", "center")
MISMATCH_POLICIES = ("drop", "keep")
REFERENCE_FACES = ("best", "all")
NO_FACE_POLICIES = ("error", "upscale")
LARGE_FACE_POLICIES = ("restore", "keep")


@dataclass
class PipelineConfig:
    """Options for restoring one photo; validated on creation so a bad value fails early with its name."""

    faces: str = "all"  # which faces to restore: all, largest, center
    upscale: float = 2.0  # output size / input size for the whole photo
    only_faces: bool = False  # return the restored aligned faces only (no pasted photo)
    strength: float = 1.0  # how much the references steer the restoration (model's `strength`; 0 = blind)
    # 0 = the model's restoration, 1 = keep the input face (a blend at output scale, inside the face mask). Measured
    # (benchmarks/never_worse.py --fidelity, 12 degraded held-out faces at 2x): identity to the clean original 0.610,
    # 0.614, 0.611, 0.594, 0.561 and face detail 2.04, 1.61, 1.28, 1.09, 1.00x Lanczos at 0, 0.25, 0.5, 0.75, 1.
    fidelity: float = 0.25
    large_faces: str = "restore"  # faces far larger than the model: restore (frequency split) or keep untouched
    large_face_ratio: float = 3.0  # "far larger": the aligned crop spans more than this many photo px per model px
    input_is_aligned: bool = False  # the photo is already an FFHQ-aligned face crop: skip detection
    no_face: str = "error"  # what to do when no face is found: error, or upscale the photo alone
    detection_threshold: float = 0.9  # RetinaFace score below which a detection is ignored
    min_face_size: float = 16.0  # ignore faces whose box is narrower than this (pixels; RetinaFace's smallest anchor)
    max_faces: int = 32  # restore at most this many faces per photo (largest first)
    padding: str = "blur"  # alignment padding where the crop leaves the photo
    feather: float = 0.08  # paste-back feather width, as a fraction of the aligned crop
    background: str = "lanczos"  # background resampling: lanczos, bicubic, bilinear, area, nearest
    max_output_pixels: int = 60_000_000  # the upscale factor is lowered (with a warning) above this
    max_references: int | None = None  # at most this many references per face (default: the model's K)
    reference_faces: str = "best"  # which faces get the references: the best identity match (one person), or all
    # Cosine of a face to the references' centroid below which it is someone else: the FAR <= 1 % point on faces
    # degraded with the 'moderate' preset, which is what the pipeline sees (benchmarks/identity_gate.py --threshold
    # 0.53 [--degrade moderate], the corpus' test people). Degraded: FAR 0.91 / 0.01 / 0 %, TAR 31 / 40 / 45 % for
    # K = 1 / 2 / 3; clean: FAR 1.51 / 0 / 0 % (0.01 % without UTKFace's pairs, whose labels call repeat photos of one
    # person different people), TAR 93 / 95 / 96 %. At 0.60 (the clean 1 % point) degraded TAR fell to 16-27 %.
    identity_threshold: float = 0.53
    # In a group photo the best face must beat the next one by this much: the margin that keeps stranger-only groups
    # under 1 % at the threshold (0.35 clean, 0.24 degraded: the larger); own face accepted 95 % in clean groups.
    identity_margin: float = 0.35
    reference_input_threshold: float = (
        0.15  # a single reference whose cosine to the input face is below this is a mismatch
    )
    reference_consistency_threshold: float = (
        0.35  # a reference matching (cosine >= this) under half of the others is a mismatch
    )
    identity_min_face_px: float = 64.0  # faces whose aligned crop spans fewer photo pixels are too small to verify
    mismatched_references: str = "drop"  # drop mismatched references (and say so), or keep them (with a warning)
    pose_weight: float = 0.5  # reference selection score = identity cosine - pose_weight * pose distance
    # Measure each used reference's share for the report (PSPGANOutput.contributions). With reference selection (the
    # bundled model) they are the weights the model mixes by: model.restore 156 -> 163 ms, 3 cached references, 2 CPU
    # cores. Without it they are an extra attention measure: 0.17 -> 0.30 s, one face's restore 0.30 -> 0.44 s. The
    # CLI asks for them only when it writes reports.
    reference_shares: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.faces not in FACE_SELECTIONS:
            raise ValueError(f"faces must be one of {FACE_SELECTIONS}, got {self.faces!r}")
        if self.no_face not in NO_FACE_POLICIES:
            raise ValueError(f"no_face must be one of {NO_FACE_POLICIES}, got {self.no_face!r}")
        if self.mismatched_references not in MISMATCH_POLICIES:
            raise ValueError(
                f"mismatched_references must be one of {MISMATCH_POLICIES}, got {self.mismatched_references!r}"
            )
        if self.reference_faces not in REFERENCE_FACES:
            raise ValueError(f"reference_faces must be one of {REFERENCE_FACES}, got {self.reference_faces!r}")
        if not 0.25 <= float(self.upscale) <= 8:
            raise ValueError(f"upscale must be between 0.25 and 8, got {self.upscale}")
        if not 0.0 <= float(self.strength) <= 2.0:
            raise ValueError(f"strength must be between 0 and 2, got {self.strength}")
        if not 0.0 <= float(self.fidelity) <= 1.0:
            raise ValueError(f"fidelity must be between 0 and 1, got {self.fidelity}")
        if self.large_faces not in LARGE_FACE_POLICIES:
            raise ValueError(f"large_faces must be one of {LARGE_FACE_POLICIES}, got {self.large_faces!r}")
        if not float(self.large_face_ratio) > 0:
            raise ValueError(f"large_face_ratio must be > 0, got {self.large_face_ratio}")
        if not -1.0 <= float(self.identity_threshold) <= 1.0:
            raise ValueError(f"identity_threshold must be a cosine between -1 and 1, got {self.identity_threshold}")
        if not 0.0 <= float(self.identity_margin) <= 2.0:
            raise ValueError(f"identity_margin must be between 0 and 2, got {self.identity_margin}")
        if self.max_references is not None and self.max_references < 0:
            raise ValueError(f"max_references must be >= 0, got {self.max_references}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        from psp_hub.face.alignment import PADDINGS

        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        from psp_hub.pipeline.background import RESAMPLING

        if self.background not in RESAMPLING:
            raise ValueError(f"background must be one of {tuple(RESAMPLING)}, got {self.background!r}")

    def replace(self, **changes) -> PipelineConfig:
        """A copy with some fields changed (validated)."""
        return PipelineConfig(**{**asdict(self), **changes})

    def to_dict(self) -> dict:
        return asdict(self)
