"""Evaluation above the model's size: the sharpness ratio, the sharp-target rule, a compare model resized, the files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from psp_hub import PSPGAN, tiny_config
from psp_hub.common.imageio import load_image
from psp_hub.data import DataConfig, build_eval_dataset
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.evaluation import METRICS, EvalConfig, main
from psp_hub.metrics import face_detail, geometric_mean, sharpness_ratio
from tests.model_helpers import make_live


@pytest.fixture(scope="module")
def sample_data(faces, tmp_path_factory):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def face256(faces):
    """A real aligned face at 256 px (Lanczos from the 128 px corpus) with fine grain added, so it has 256 px detail."""
    face = load_image(min(Path(faces).glob("celeba_*.webp")))
    big = cv2.resize(face, (256, 256), interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
    texture = np.random.default_rng(0).normal(0, 12, big.shape[:2])[..., None]
    return np.clip(big + texture, 0, 255).astype(np.uint8)


def test_sharpness_ratio_is_one_on_the_target_below_for_blur_above_for_noise(face256):
    assert sharpness_ratio([face256], [face256]).tolist() == [1.0]
    blurred = cv2.GaussianBlur(face256, (0, 0), 2.0)
    soft = cv2.resize(
        cv2.resize(face256, (64, 64), interpolation=cv2.INTER_AREA), (256, 256), interpolation=cv2.INTER_CUBIC
    )
    noisy = np.clip(face256 + np.random.default_rng(1).normal(0, 25, face256.shape), 0, 255).astype(np.uint8)
    ratios = sharpness_ratio([blurred, soft, noisy], [face256] * 3)
    assert ratios[0] < 0.3 and ratios[1] < 0.3 and ratios[2] > 2.0, ratios
    # the face region, not the padding: texture only outside the face box leaves the measure unchanged
    framed = face256.copy()
    framed[:40] = np.random.default_rng(2).integers(0, 255, framed[:40].shape, dtype=np.uint8)
    assert face_detail(framed) == face_detail(face256)
    assert geometric_mean([2.0, 0.5]) == pytest.approx(1.0) and geometric_mean([0.05]) == pytest.approx(0.05)


def test_sharp_target_rule_filters_targets_not_references(sample_data):
    cfg = DataConfig(path=str(sample_data), out_size=128, max_references=1, num_workers=0)
    every = build_eval_dataset(cfg, "test", num_references=1, only_with_references=True)
    sharp = build_eval_dataset(cfg, "test", num_references=1, only_with_references=True, min_sharp_px=125)
    assert 0 < len(sharp) < len(every)
    assert all(r["sharp_px"] >= 125 for r in sharp.rows)
    ids = {r["id"] for r in sharp.rows}
    refs = [rid for i in range(len(sharp)) for rid in sharp[i]["ref_ids"] if rid]
    assert refs and not set(refs) <= ids  # references still come from any photo of the person
    assert EvalConfig().sharp_threshold(128) == 0 and EvalConfig().sharp_threshold(256) == 205
    assert EvalConfig(min_sharp_px=100).sharp_threshold(256) == 100


def test_evaluate_at_256_with_a_smaller_compare_model(sample_data, tmp_path):
    model_dir, small_dir, out = tmp_path / "m256", tmp_path / "small", tmp_path / "eval"
    make_live(PSPGAN(tiny_config(256))).save_pretrained(model_dir)
    make_live(PSPGAN(tiny_config(64)), seed=1).save_pretrained(small_dir)
    args = ["--model", str(model_dir), "--data", str(sample_data), "--levels", "severe", "--refs", "0", "1"]
    args += ["--max-samples", "5", "--batch-size", "5", "--device", "cpu", "--out", str(out), "--other-person-refs"]
    with pytest.raises(ValueError, match="sharp_px >= 205"):  # 128 px faces are no fair 256 px target
        main(args)
    assert main([*args, "--compare-model", str(small_dir), "--min-sharp-px", "100"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["size"], results["model_size"], results["compare_model_size"]) == (256, 256, 64)
    assert results["min_sharp_px"] == 100
    severe = results["levels"]["severe"]
    small = "small (64 px), "
    assert set(severe["methods"]) == {"bicubic", "K=0", "K=1", "K=1, other person"} | {
        small + m for m in ("K=0", "K=1", "K=1, other person")
    }
    for groups in severe["methods"].values():
        for metrics in groups.values():
            assert set(metrics) == set(METRICS) and all(math.isfinite(v) for v in metrics.values())
    # bicubic from x8 keeps a small part of the target's fine detail; the compare model is a model of its own
    assert severe["methods"]["bicubic"]["all"]["sharpness_ratio"] < 0.5
    assert severe["methods"][small + "K=1"]["all"] != severe["methods"]["K=1"]["all"]
    assert results["grid_columns"] == ["input", "bicubic", small + "K=1", "K=0", "K=1", "target", "K=1, other person"]
    with Image.open(out / "grid.png") as grid:
        assert grid.width == 2 + 7 * (256 + 2)
    md = (out / "results.md").read_text()
    assert "Evaluated at 256 px" in md and "sharp_px >= 100" in md and "| small (64 px), K=1 |" in md


def test_faces_native_at_128_are_scored_at_128_in_a_256_evaluation(sample_data, tmp_path):
    """`--score-size 128`: the 128 px corpus (where the older test faces are) evaluated at 256 px with no sharpness
    filter, every output and target area-downsampled to 128 before scoring; a scoring size is a property of the
    metrics only (the grid keeps the restored 256 px images)."""
    model_dir, out = tmp_path / "m256", tmp_path / "eval"
    make_live(PSPGAN(tiny_config(256))).save_pretrained(model_dir)
    args = ["--model", str(model_dir), "--data", str(sample_data), "--levels", "severe", "--refs", "0"]
    args += ["--max-samples", "4", "--batch-size", "4", "--device", "cpu", "--out", str(out), "--score-size", "128"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["size"], results["score_size"], results["min_sharp_px"]) == (256, 128, 0)
    scored = results["levels"]["severe"]["methods"]["K=0"]["all"]
    assert set(scored) == set(METRICS) and all(math.isfinite(v) for v in scored.values())
    assert "scored at 128 px" in (out / "results.md").read_text()
    with Image.open(out / "grid.png") as grid:
        assert grid.width == 2 + 4 * (256 + 2)  # input, bicubic, K=0, target: 256 px tiles
    assert EvalConfig(score_size=128).sharp_threshold(256) == 0
    assert EvalConfig(score_size=512).scored_size(256) == 256
