"""Typed configuration of the training data: degradation ranges (eq. 10), the loader, and the dataset builder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from psp_hub.common.config import build_config
from psp_hub.common.paths import REPO_ROOT

DEFAULT_DATASET_DIR = REPO_ROOT / "data" / "psp-faces128"
"""Where `train/build_dataset.py` writes the dataset built from the shared face corpus (git-ignored)."""


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges of eq. (10) x = [(y * k_sigma) down_r + n_delta]_JPEG_q, GFPGAN's values, plus colour jitter and grey."""

    blur_sigma: tuple[float, float] = (0.1, 10.0)  # Gaussian kernel sigma in pixels at `reference_size`
    downsample: tuple[float, float] = (0.8, 8.0)  # scale factor r, relative to the output size
    noise: tuple[float, float] = (0.0, 20.0)  # std of additive Gaussian noise on the 0..255 scale, at LQ resolution
    jpeg_quality: tuple[int, int] = (60, 100)
    reference_size: int = 512  # GFPGAN states sigma at 512 px: it is scaled by out_size / reference_size
    color_jitter_prob: float = 0.3  # GFPGAN jitters the degraded input only
    brightness: float = 0.5  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.1  # shift drawn from [-h, h] (fraction of the hue circle)
    gray_prob: float = 0.01
    gt_gray: bool = True  # when the input turns grey, so does the target (GFPGAN's gt_gray)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DegradationConfig:
        """From a plain dict (YAML), strictly (psp_hub.common.config): unknown keys and wrong types are errors."""
        return build_config(cls, values)

    @classmethod
    def fixed(cls, scale: float, sigma: float, noise: float, jpeg_quality: int) -> DegradationConfig:
        """A single fixed level (evaluation): no randomness in eq. (10), no jitter, no grey."""
        return cls(
            blur_sigma=(sigma, sigma),
            downsample=(scale, scale),
            noise=(noise, noise),
            jpeg_quality=(jpeg_quality, jpeg_quality),
            color_jitter_prob=0.0,
            gray_prob=0.0,
        )

    @classmethod
    def moderate(cls) -> DegradationConfig:
        """Evaluation level 'moderate': x4, sigma 2 (at 512 px), noise 5, JPEG 85."""
        return cls.fixed(scale=4.0, sigma=2.0, noise=5.0, jpeg_quality=85)

    @classmethod
    def severe(cls) -> DegradationConfig:
        """Evaluation level 'severe': x8, sigma 4 (at 512 px), noise 10, JPEG 70."""
        return cls.fixed(scale=8.0, sigma=4.0, noise=10.0, jpeg_quality=70)

    @classmethod
    def preset(cls, name: str) -> DegradationConfig:
        """'train' (GFPGAN ranges), 'moderate' or 'severe'."""
        presets = {"train": cls, "moderate": cls.moderate, "severe": cls.severe}
        if name not in presets:
            raise ValueError(f"unknown degradation preset {name!r}; choose from {sorted(presets)}")
        return presets[name]()


@dataclass(frozen=True)
class DataConfig:
    """What the trainer's data loader reads and how it mixes, augments and degrades it."""

    path: str = str(DEFAULT_DATASET_DIR)  # Hub dataset id or local folder of shards with README.md
    split: str = "train"
    revision: str | None = None  # Hub revision
    out_size: int = 128  # S: targets, inputs and references are S x S
    max_references: int = 3  # Kmax; K is drawn per sample from [min_references, max_references]
    min_references: int = 0
    single_photo_refs: Literal["augment", "none"] = "augment"  # people with one photo: augmented views, flagged
    older_fraction: float = 0.3  # share of the older stream in the main phase (paper 4.1: 30 %)
    boost_older_fraction: float = 0.6  # share in the final 'boost' phase (paper 3.3)
    boost_start: float = 0.875  # fraction of training after which the boost phase runs (700k of 800k iterations)
    shuffle_buffer: int = 1000
    seed: int = 0
    num_workers: int = 2
    prefetch_factor: int = 4
    worker_start_method: Literal["spawn", "forkserver", "fork"] = "spawn"  # arrow's thread pools are not fork-safe
    pin_memory: bool = False
    hflip_prob: float = 0.5
    ref_hflip_prob: float = 0.5
    eye_box_iod: float = 0.6  # eye box side as a fraction of the inter-ocular distance
    mouth_box_width: float = 1.1  # mouth box side as a fraction of the mouth-corner distance
    ref_cache_mb: int = 128  # per-process cache of reference image bytes
    node_split: Literal["auto", "shards", "examples"] = "auto"  # datasets.split_dataset_by_node strategy
    # "workers": the streaming DataLoader above (decode and eq. (10) per sample in CPU worker processes).
    # "resident": every face of the split decoded once into a uint8 tensor on the training device (a 256 px face is
    # 192 KiB: 30k of them take 5.9 GB), batches drawn, augmented and degraded there in one go (data/resident.py)
    loader: Literal["workers", "resident"] = "workers"
    resident_on_cpu: bool = False  # resident: keep the decoded faces in RAM, not on the GPU (degradation still there)
    resident_max_rows: int = 0  # resident: decode only the first N rows of the split (0 = all; for quick benchmarks)
    # resident: make this many steps' batches in one draw and hand them out in turn. A draw launches the same few
    # hundred kernels whatever its size, and the compiled psp-256 step is bound by the host's launches (docs/speed.md).
    batches_per_draw: int = 1
    # Mixed resolution (resident loader only; data/mixing.py holds the rule). A face is native at out_size when its
    # measured sharpness (`sharp_px`, else its stored side) reaches sharp_threshold, else at out_size // 2: its pixel,
    # perceptual, identity and U-Net losses compare output and target at that size, and only native faces are the
    # discriminators' reals. 0 = off: every face counts as native at out_size (the behaviour before the rule).
    sharp_threshold: int = 0
    # A second dataset held resident with `path` (e.g. data/psp-faces128 beside data/sharp256: most identity pairs and
    # all older faces). Its faces are upsampled to out_size once, at load time, so both sets share one uint8 tensor
    # and one gather (26k faces x 192 KiB = 5.2 GB at 256 px); references stay within each set.
    extra_path: str | None = None
    extra_fraction: float = 0.0  # share of the general (not older) samples drawn from extra_path; older: both sets
    degradation: DegradationConfig = field(default_factory=DegradationConfig)

    def __post_init__(self) -> None:
        """Reject settings that cannot work."""
        if not 0 <= self.min_references <= self.max_references:
            raise ValueError("need 0 <= min_references <= max_references")
        for name in ("older_fraction", "boost_older_fraction", "boost_start", "hflip_prob", "extra_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        if self.out_size < 16:
            raise ValueError("out_size must be at least 16")
        if self.extra_path and (self.loader != "resident" or self.sharp_threshold <= 0):
            raise ValueError("extra_path needs loader: resident and a sharp_threshold (its faces are not native)")
        if self.extra_fraction > 0 and not self.extra_path:
            raise ValueError("extra_fraction needs extra_path")
        if self.sharp_threshold > 0 and self.loader != "resident":
            raise ValueError("sharp_threshold (mixed resolution) needs loader: resident")
        if self.batches_per_draw < 1 or (self.batches_per_draw > 1 and self.loader != "resident"):
            raise ValueError("batches_per_draw must be >= 1, and above 1 only with loader: resident")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DataConfig:
        """From a plain dict (YAML), strictly, with `degradation` as a nested dict or a preset name."""
        return build_config(cls, values)

    def replace(self, **changes: Any) -> DataConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class BuildConfig:
    """How the builder turns a folder of faces (aligned + metadata, or plain photos) into Hub-style shards."""

    input: Path
    output: Path = DEFAULT_DATASET_DIR
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)  # train, validation, test (of images)
    older_age: int = 50  # ages >= this form the older group (see docs/data.md)
    mode: Literal["auto", "aligned", "photos"] = "auto"
    rows_per_shard: int = 2048
    row_group_size: int = 128  # small row groups keep random access to references cheap
    min_native_px: int = 64  # "tiny face": the crop spans fewer source pixels than this
    min_det_score: float = 0.5  # aligned input: drop rows whose recorded detector score is lower
    detector_threshold: float = 0.9  # photo input: RetinaFace score threshold
    size: int = 512  # photo input: aligned crop size
    image_format: Literal["png", "webp"] = "png"  # photo input: how aligned crops are stored
    source_name: str = "photos"  # photo input: the `source` column
    license: str | None = None  # photo input: licence of those photos, for the card
    workers: int = 0  # 0 = all CPU cores
    pretty_name: str | None = None

    def __post_init__(self) -> None:
        """Reject settings that cannot work."""
        fr = self.split_fractions
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6 or fr[0] <= 0:
            raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1, got {fr}")
        if self.rows_per_shard < 1 or self.row_group_size < 1:
            raise ValueError("rows_per_shard and row_group_size must be positive")
