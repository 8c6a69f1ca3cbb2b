"""The bottom layer: face geometry, image conversions, the channel table and the strict config loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from psp_hub.common import (
    ARCFACE_TEMPLATE_112,
    FFHQ_TEMPLATE_512,
    ConfigError,
    apply_overrides,
    build_config,
    component_boxes,
    deep_merge,
    ffhq_template,
    fit_similarity,
    flip_landmarks,
    image_to_tensor,
    load_config,
    load_yaml,
    resize_to,
    round_to_uint8,
    signed_to_unit,
    similarity_scale,
    stylegan2_channel_table,
    stylegan2_channels,
    tensor_to_image,
    tensor_to_pil,
    to_unit,
    unit_to_signed,
)

# -- geometry ----------------------------------------------------------------------------------------------------


def test_ffhq_template_is_float64_and_scales_linearly():
    assert ffhq_template(512).dtype == np.float64
    np.testing.assert_array_equal(ffhq_template(512), FFHQ_TEMPLATE_512)
    np.testing.assert_allclose(ffhq_template(128), FFHQ_TEMPLATE_512 / 4)
    np.testing.assert_allclose(ffhq_template(128)[0], [48.25, 59.99], atol=0.01)  # the corpus's documented value


def _similar(points: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rot.T + np.asarray(shift)


@pytest.mark.parametrize("method", ["umeyama", "lmeds"])
def test_fit_similarity_recovers_a_known_transform(method):
    src = ffhq_template(256)
    dst = _similar(src, 0.4, 0.7, [12.0, -30.0])
    m = fit_similarity(src, dst, method)
    np.testing.assert_allclose(src @ m[:, :2].T + m[:, 2], dst, atol=1e-4)  # OpenCV's LMEDS refines to ~1e-5 px
    assert similarity_scale(m) == pytest.approx(0.7, rel=1e-6)


def test_umeyama_is_the_least_squares_fit_and_lmeds_ignores_an_outlier():
    rng = np.random.default_rng(0)
    src = ffhq_template(512)
    dst = _similar(src, -0.2, 1.3, [5.0, 9.0]) + rng.normal(0, 0.5, src.shape)
    m = fit_similarity(src, dst)
    # least squares: the closed form equals the 4-parameter linear solve
    a = np.zeros((10, 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    p, *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    np.testing.assert_allclose(m, [[p[0], -p[1], p[2]], [p[1], p[0], p[3]]], atol=1e-9)
    clean = _similar(src, -0.2, 1.3, [5.0, 9.0])
    bad = clean.copy()
    bad[2] += [60.0, 40.0]  # the nose detected far off
    robust = fit_similarity(src, bad, "lmeds")
    assert np.abs(src @ robust[:, :2].T + robust[:, 2] - clean)[[0, 1, 3, 4]].max() < 1e-3
    plain = fit_similarity(src, bad)
    assert np.abs(src @ plain[:, :2].T + plain[:, 2] - clean)[[0, 1, 3, 4]].max() > 5


def test_fit_similarity_rejects_bad_points():
    with pytest.raises(ValueError, match="matching finite"):
        fit_similarity(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="matching finite"):
        fit_similarity(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="method"):
        fit_similarity(ffhq_template(64), ffhq_template(64), "ransac")


def test_arcface_template_maps_from_ffhq_by_a_similarity():
    m = fit_similarity(ffhq_template(512), ARCFACE_TEMPLATE_112)
    residual = ffhq_template(512) @ m[:, :2].T + m[:, 2] - ARCFACE_TEMPLATE_112
    assert np.abs(residual).max() < 2.5  # the templates are nearly similar shapes: 2.11 px worst at 112 px


def test_flip_landmarks_keeps_left_eye_first_and_is_an_involution():
    lm = ffhq_template(128).astype(np.float32)
    flipped = flip_landmarks(lm, 128)
    assert flipped[0, 0] < flipped[1, 0] and flipped[3, 0] < flipped[4, 0]
    np.testing.assert_allclose(flipped[0, 0], 127 - lm[1, 0])
    np.testing.assert_allclose(flip_landmarks(flipped, 128), lm)
    batch = np.stack([lm, lm + 1])
    np.testing.assert_allclose(flip_landmarks(batch, 128)[1], flip_landmarks(lm + 1, 128))


def test_component_boxes_follow_the_rule_at_any_size_and_batch():
    for size in (64, 128, 512):
        lm = ffhq_template(size)
        boxes = component_boxes(lm, size)
        assert boxes.shape == (3, 4) and boxes.dtype == np.float32
        iod = np.linalg.norm(lm[1] - lm[0])
        np.testing.assert_allclose(boxes[0, 2] - boxes[0, 0], 0.6 * iod, rtol=1e-5)
        np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, lm[0], rtol=1e-5)
        np.testing.assert_allclose(boxes[2, 2] - boxes[2, 0], 1.1 * np.linalg.norm(lm[4] - lm[3]), rtol=1e-5)
        np.testing.assert_allclose(boxes / size, component_boxes(ffhq_template(64), 64) / 64, atol=1e-5)
    batch = component_boxes(np.stack([ffhq_template(128), ffhq_template(128) - 200]), 128)
    assert batch.shape == (2, 3, 4) and (batch[1] == 0).all()  # the shifted face is clipped to the image
    with pytest.raises(ValueError, match="5, 2"):
        component_boxes(np.zeros((4, 2)), 64)


# -- images ------------------------------------------------------------------------------------------------------


def test_uint8_round_trip_is_exact_single_and_batch():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = image_to_tensor(batch)
    assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(tensor_to_image(t), batch)
    np.testing.assert_array_equal(tensor_to_image(image_to_tensor(batch[0])), batch[0])
    assert image_to_tensor(np.array([[[0, 255, 128]]], np.uint8)).flatten().tolist() == pytest.approx(
        [-1.0, 1.0, 128 / 127.5 - 1], abs=1e-7
    )


def test_lists_pil_and_float_images_convert_the_same_way():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    torch.testing.assert_close(image_to_tensor(list(batch)), image_to_tensor(batch))
    torch.testing.assert_close(image_to_tensor(Image.fromarray(batch[0])), image_to_tensor(batch[0]))
    torch.testing.assert_close(
        image_to_tensor(batch.astype(np.float32) / 255), image_to_tensor(batch), atol=1e-6, rtol=0
    )
    pil = tensor_to_pil(image_to_tensor(batch[1]))
    np.testing.assert_array_equal(np.asarray(pil), batch[1])
    assert len(tensor_to_pil(image_to_tensor(batch))) == 3


def test_out_of_range_tensors_are_clamped_and_rounded():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.004, 1.0, 7.0]).view(1, 6, 1).expand(3, 6, 1)
    assert tensor_to_image(x)[:, 0, 0].tolist() == [0, 0, 128, 128, 255, 255]
    assert to_unit(x)[0, :, 0].tolist() == pytest.approx([0.0, 0.0, 0.5, 0.502, 1.0, 1.0])
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(3, 3))


def test_range_rules_invert_each_other_and_keep_gradients():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0], requires_grad=True)
    torch.testing.assert_close(unit_to_signed(signed_to_unit(x)), x, rtol=0, atol=1e-7)
    assert signed_to_unit(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [-1.0, 0.5, 2.0]  # unclamped, unlike to_unit
    assert unit_to_signed(torch.tensor([0.5, 2.0])).tolist() == [0.0, 3.0]
    signed_to_unit(x).sum().backward()
    assert x.grad.tolist() == [0.5] * 5
    y = to_unit(x).requires_grad_(True)
    unit_to_signed(y).sum().backward()
    assert y.grad.tolist() == [2.0] * 5


def test_round_to_uint8_rounds_half_to_even_and_clips():
    pixels = np.array([-4.0, 0.4, 0.5, 1.5, 2.5, 254.6, 300.0], np.float32)
    out = round_to_uint8(pixels)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 0, 2, 2, 255, 255]


# -- channels ----------------------------------------------------------------------------------------------------


def test_channel_table_is_stylegan2s():
    assert stylegan2_channel_table(1024) == {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256,
        128: 128,
        256: 64,
        512: 32,
        1024: 16,
    }
    assert stylegan2_channels(64, channel_multiplier=2) == 512 and stylegan2_channels(32, channel_multiplier=2) == 512
    assert stylegan2_channels(128, channel_multiplier=2, max_channels=200) == 200
    assert stylegan2_channel_table(64, narrow=1 / 16) == {4: 32, 8: 32, 16: 32, 32: 32, 64: 16}
    assert stylegan2_channels(1024, narrow=0.01) == 1


# -- config ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def preset(cls, name: str) -> Inner:
        return {"fast": cls(rate=2.0)}[name]


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    path: str | None = None
    folder: Path = Path(".")
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_build_config_converts_losslessly_and_builds_nested():
    cfg = build_config(Outer, {"steps": 3, "inner": {"rate": 1, "sizes": [4, 5], "pair": [1, 2]}, "folder": "a/b"})
    assert cfg.inner == Inner(rate=1.0, sizes=(4, 5), pair=(1.0, 2.0)) and isinstance(cfg.inner.rate, float)
    assert cfg.folder == Path("a/b") and cfg.path is None
    assert build_config(Outer, {"inner": "fast"}).inner.rate == 2.0
    assert build_config(Outer, {"inner": Inner(rate=3.0)}).inner.rate == 3.0


@pytest.mark.parametrize(
    "values, message",
    [
        ({"stepz": 1}, "unknown Outer keys: stepz"),
        ({"inner": {"rte": 1}}, r"unknown Inner keys: rte \(in inner\)"),
        ({"steps": 1.5}, "steps must be int"),
        ({"steps": True}, "steps must be int"),
        ({"flag": "yes"}, "flag must be bool"),
        ({"mode": "c"}, r"mode must be one of \['a', 'b'\]"),
        ({"inner": {"rate": "inf"}}, r"inner.rate must be float.*\.inf"),
        ({"inner": {"pair": [1, 2, 3]}}, "inner.pair must have 2 items"),
        ({"inner": {"sizes": [1, "2"]}}, r"inner.sizes\[1\] must be int"),
        ({"path": 3}, "path must be"),
        ({"inner": 5}, "inner must be Inner"),
    ],
)
def test_build_config_names_the_bad_key(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(Outer, values)


def test_yaml_extends_deep_merges_relative_to_the_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "root.yaml").write_text("name: root\nsteps: 5\ninner: {rate: 0.25, sizes: [7]}\n")
    (tmp_path / "child.yaml").write_text("extends: base/root.yaml\nsteps: 6\ninner: {rate: 0.75}\n")
    assert load_yaml(tmp_path / "child.yaml") == {"name": "root", "steps": 6, "inner": {"rate": 0.75, "sizes": [7]}}
    cfg = load_config(Outer, tmp_path / "child.yaml", ["inner.pair=[3, 4]", "mode=b", "path=null"])
    assert cfg == Outer(name="root", steps=6, mode="b", inner=Inner(rate=0.75, sizes=(7,), pair=(3.0, 4.0)))
    with pytest.raises(ConfigError, match="steps must be int"):
        load_config(Outer, tmp_path / "child.yaml", ["steps=many"])
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_yaml(tmp_path / "loop.yaml")


def test_overrides_and_merge_leave_their_inputs_alone():
    values = {"inner": {"rate": 1.0}, "name": "a"}
    out = apply_overrides(values, ["inner.rate=2", "inner.new.deep=x"])
    assert out == {"inner": {"rate": 2, "new": {"deep": "x"}}, "name": "a"}
    assert values == {"inner": {"rate": 1.0}, "name": "a"}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}, "d": 4}) == {"a": {"b": 3, "c": 2}, "d": 4}
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["no-equals-sign"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"name": "a"}, ["name.x=1"])


def test_resize_to_keeps_leading_dims_and_matches_one_antialiased_step():
    x = torch.rand(2, 3, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    assert resize_to(x, 40) is x  # already there: untouched
    out = resize_to(x, 16)
    assert out.shape == (2, 3, 3, 16, 16)
    per_photo = F.interpolate(x[1], size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(out[1], per_photo)
    assert torch.allclose(resize_to(x[0], 64), F.interpolate(x[0], size=(64, 64), mode="bilinear", antialias=True))
