"""Eq. (10) degradation, component boxes, configs, age groups and person-level splits, on real face images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from psp_hub.common.geometry import component_boxes, flip_landmarks
from psp_hub.data import (
    DataConfig,
    DegradationConfig,
    age_group,
    degrade,
    is_older,
    sample_degradation,
)
from psp_hub.data.augment import augmented_view
from psp_hub.data.build.splits import split_identities
from psp_hub.data.images import decode_rgb, resize_square, scale_points
from psp_hub.data.rng import sample_generators

TEMPLATE_128 = np.array(
    [[48.25, 59.99], [79.73, 60.05], [64.16, 78.50], [50.32, 92.85], [78.27, 92.79]], dtype=np.float32
)


@pytest.fixture(scope="module")
def face(faces) -> np.ndarray:
    return decode_rgb((faces / "celeba_00000.webp").read_bytes())


def _sharpness(img: np.ndarray) -> float:
    gray = cv2.cvtColor(np.asarray(img, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def test_sampled_parameters_cover_gfpgan_ranges():
    cfg = DegradationConfig()
    rng = np.random.default_rng(0)
    draws = [sample_degradation(cfg, rng, 512) for _ in range(2000)]
    sig = np.array([d.sigma_nominal for d in draws])
    assert 0.1 <= sig.min() < 0.6 and 9.5 < sig.max() <= 10.0
    scale = np.array([d.scale for d in draws])
    assert 0.8 <= scale.min() < 1.0 and 7.8 < scale.max() <= 8.0
    noise = np.array([d.noise for d in draws])
    assert 0.0 <= noise.min() < 0.5 and 19.5 < noise.max() <= 20.0
    q = np.array([d.jpeg_quality for d in draws])
    assert q.min() == 60 and q.max() == 100
    assert all(d.sigma == d.sigma_nominal for d in draws)  # at 512 px, no scaling
    at128 = sample_degradation(cfg, np.random.default_rng(1), 128)
    assert at128.sigma == pytest.approx(at128.sigma_nominal / 4)
    jit = np.mean([d.jitter for d in draws])
    assert 0.25 < jit < 0.35
    assert 0.0 < np.mean([d.gray for d in draws]) < 0.03


def test_degrade_blurs_shrinks_and_keeps_shape(face):
    severe = sample_degradation(DegradationConfig.severe(), np.random.default_rng(0), 128)
    assert (severe.scale, severe.sigma_nominal, severe.noise, severe.jpeg_quality) == (8.0, 4.0, 10.0, 70)
    lq = degrade(face, severe, np.random.default_rng(0))
    assert lq.shape == face.shape and lq.dtype == np.float32
    assert 0.0 <= lq.min() and lq.max() <= 1.0
    assert _sharpness(lq * 255) < 0.3 * _sharpness(face)
    mild = DegradationConfig.fixed(scale=1.0, sigma=0.1, noise=0.0, jpeg_quality=100)
    near = degrade(face, sample_degradation(mild, np.random.default_rng(0), 128), np.random.default_rng(0))
    assert np.abs(near * 255 - face).mean() < 2.0  # the identity-like setting barely changes the face
    again = degrade(face, severe, np.random.default_rng(0))
    assert np.array_equal(lq, again)  # same draws, same pixels
    other = degrade(face, severe, np.random.default_rng(1))
    assert not np.array_equal(lq, other)  # the noise is random


def test_gray_and_jitter_change_colour(face):
    cfg = DegradationConfig(color_jitter_prob=1.0, gray_prob=1.0)
    p = sample_degradation(cfg, np.random.default_rng(3), 128)
    lq = degrade(face, p, np.random.default_rng(3))
    assert np.allclose(lq[..., 0], lq[..., 1]) and np.allclose(lq[..., 1], lq[..., 2])


def test_flip_and_component_boxes():
    flipped = flip_landmarks(TEMPLATE_128, 128)
    assert np.allclose(flip_landmarks(flipped, 128), TEMPLATE_128)
    assert flipped[0, 0] < flipped[1, 0]  # index 0 is still the image-left eye
    assert flipped[0, 0] == pytest.approx(127 - TEMPLATE_128[1, 0])
    boxes = component_boxes(TEMPLATE_128, 128)
    assert boxes.shape == (3, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert np.allclose(centres[0], TEMPLATE_128[0], atol=1e-4) and np.allclose(centres[1], TEMPLATE_128[1], atol=1e-4)
    assert np.allclose(centres[2], (TEMPLATE_128[3] + TEMPLATE_128[4]) / 2, atol=1e-4)
    side = boxes[:, 2] - boxes[:, 0]
    iod = TEMPLATE_128[1, 0] - TEMPLATE_128[0, 0]
    assert side[0] == pytest.approx(0.6 * iod, rel=1e-3)
    assert boxes[0, 2] < boxes[1, 0]  # the two eye boxes do not overlap
    at512 = component_boxes(scale_points(TEMPLATE_128, 128, 512), 512)
    assert np.allclose(at512, (boxes + 0.5) * 4 - 0.5, atol=0.05)


def test_resize_keeps_template_geometry(face):
    big = resize_square(face, 512)
    assert big.shape == (512, 512, 3)
    lm = scale_points(TEMPLATE_128, 128, 512)
    assert lm[0] == pytest.approx([194.5, 241.46], abs=0.1)  # FFHQ 512 template left eye ~ (193, 240)


def test_augmented_views_differ_but_keep_the_face(face):
    a = augmented_view(face, np.random.default_rng(0))
    b = augmented_view(face, np.random.default_rng(1))
    assert a.shape == face.shape and a.dtype == np.uint8
    assert np.abs(a.astype(float) - face).mean() > 5 and not np.array_equal(a, b)
    corr = np.corrcoef(cv2.resize(a, (16, 16)).ravel(), cv2.resize(face, (16, 16)).ravel())[0, 1]
    corr_flip = np.corrcoef(cv2.resize(a[:, ::-1], (16, 16)).ravel(), cv2.resize(face, (16, 16)).ravel())[0, 1]
    assert max(corr, corr_flip) > 0.6


def test_sample_generators_depend_only_on_their_key():
    a = [g.random() for g in sample_generators(0, "main", 0, 17)]
    assert a == [g.random() for g in sample_generators(0, "main", 0, 17)]
    assert a != [g.random() for g in sample_generators(0, "main", 0, 18)]
    assert a != [g.random() for g in sample_generators(0, "boost", 0, 17)]
    assert a != [g.random() for g in sample_generators(0, "main", 1, 17)]
    assert len(set(a)) == 4


def test_configs_from_plain_dicts():
    cfg = DataConfig.from_dict(
        {"path": "x", "out_size": 512, "max_references": 4, "degradation": {"downsample": [1, 4], "gray_prob": 0}}
    )
    assert cfg.out_size == 512 and cfg.degradation.downsample == (1, 4) and cfg.degradation.blur_sigma == (0.1, 10.0)
    assert DataConfig.from_dict({"degradation": "severe"}).degradation == DegradationConfig.severe()
    with pytest.raises(ValueError, match="unknown"):
        DataConfig.from_dict({"older_fraktion": 0.3})
    with pytest.raises(ValueError):
        DataConfig(min_references=3, max_references=2)
    with pytest.raises(ValueError):
        DegradationConfig.preset("extreme")


def test_age_groups_and_threshold():
    assert [age_group(a) for a in (None, 5, 15, 25, 40, 50, 64, 65, 110)] == [
        "unknown",
        "child",
        "teen",
        "young_adult",
        "adult",
        "older",
        "older",
        "senior",
        "senior",
    ]
    assert is_older(50) and not is_older(49) and not is_older(None)
    assert is_older(60, older_age=60) and not is_older(55, older_age=60)


def test_split_identities_by_person_with_target_fractions():
    rng = np.random.default_rng(0)
    photos = {f"p{i}": int(rng.integers(1, 30)) if i < 300 else 1 for i in range(3000)}
    strata = {p: ("celeba" if i < 300 else "utk") for i, p in enumerate(photos)}
    split = split_identities(photos, strata, (0.8, 0.1, 0.1), seed=0)
    assert set(split) == set(photos)
    totals = {s: sum(n for p, n in photos.items() if split[p] == s) for s in ("train", "validation", "test")}
    all_images = sum(photos.values())
    assert totals["train"] / all_images == pytest.approx(0.8, abs=0.02)
    assert totals["validation"] / all_images == pytest.approx(0.1, abs=0.02)
    for stratum in ("celeba", "utk"):  # every stratum is spread over all splits
        assert {split[p] for p in photos if strata[p] == stratum} == {"train", "validation", "test"}
    assert split == split_identities(dict(reversed(list(photos.items()))), strata, (0.8, 0.1, 0.1), seed=0)
    assert split != split_identities(photos, strata, (0.8, 0.1, 0.1), seed=1)
