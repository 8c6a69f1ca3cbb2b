"""What an evaluation measures and on what: the metrics, which way each is better, and the run's settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from psp_hub.metrics import geometric_mean

METRICS = ("psnr", "ssim", "lpips", "dlib_distance", "arcface_similarity", "sharpness_ratio")
LOWER_IS_BETTER = {"lpips", "dlib_distance"}
TOWARDS_ONE = {"sharpness_ratio"}  # detail of output over target: 1 is right, below is soft, above is noise
AGGREGATE = {"sharpness_ratio": geometric_mean}  # ratios average on a log scale; every other metric: the mean
SHARP_FRACTION = 0.8
"""A face whose detail runs right up to its pixel size measures about 0.8 of it in `sharp_px` (docs/data.md), so a
fair target at S px has sharp_px >= 0.8 S."""
RESIZE_MODE = "bicubic"  # a model output of another size to the evaluation size (torch, align_corners=False)


@dataclass
class EvalConfig:
    """What to evaluate and on what."""

    model: str = "checkpoints/psp-gan-128"
    data: str = "data/psp-faces128"
    split: str = "test"
    levels: tuple[str, ...] = ("moderate", "severe")
    refs: tuple[int, ...] = (0, 1, 3)
    max_samples: int | None = 400
    batch_size: int = 16
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: str = "outputs/eval"
    grid_faces: int = 6
    other_person_refs: bool = False  # control: K=max with another test person's references (does K use identity?)
    size: int | None = None  # evaluation size; None: the model's out_size
    compare_model: str | None = None  # a second model (e.g. the 128 px one) restoring the same faces
    min_sharp_px: int | None = None  # targets below are left out; None: 0.8 x scored size above 128 px, else none
    # outputs and targets area-downsampled to this size before scoring (None: the evaluation size): faces native at
    # 128 px (the 128 px corpus, where every older test face is) restored at 256 and compared where their detail is
    # real, the training's mixed-resolution rule
    score_size: int | None = None

    def scored_size(self, size: int) -> int:
        """The size metrics compare at, for an evaluation at `size`."""
        return min(self.score_size, size) if self.score_size else size

    def sharp_threshold(self, size: int) -> int:
        """The `sharp_px` a target needs for an evaluation at `size` (0 = no filter: the 128 px corpus as is)."""
        if self.min_sharp_px is not None:
            return self.min_sharp_px
        scored = self.scored_size(size)
        return round(SHARP_FRACTION * scored) if scored > 128 else 0
