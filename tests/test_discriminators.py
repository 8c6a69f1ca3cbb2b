"""Discriminators: shapes for all sizes and batches, minibatch stddev, blur, gradients, R1, and that D can learn."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from psp_hub.common import image_to_tensor, stylegan2_channel_table
from psp_hub.discriminators import (
    Blur,
    ComponentDiscriminator,
    EqualConv2d,
    StyleGAN2Discriminator,
    StyleGAN2DiscriminatorConfig,
    minibatch_stddev,
)
from psp_hub.discriminators.layers import blur_box_means, blur_taps
from psp_hub.losses import d_logistic_loss, gram_style_loss, r1_penalty


@pytest.fixture(scope="module")
def faces32(faces):
    """48 real corpus faces at 32 px, in [-1, 1]."""
    with open(faces / "metadata.csv", newline="") as fh:
        names = [r["file_name"] for r in csv.DictReader(fh) if r["source"] == "lfw"][:48]
    imgs = [
        cv2.resize(cv2.cvtColor(cv2.imread(str(faces / n)), cv2.COLOR_BGR2RGB), (32, 32), interpolation=cv2.INTER_AREA)
        for n in names
    ]
    return image_to_tensor(imgs)


@pytest.mark.parametrize("size", [32, 64, 128, 1024])
def test_stylegan2_discriminator_shapes_any_batch(size):
    torch.manual_seed(0)
    narrow = 1 / 16 if size == 1024 else 0.125
    d = StyleGAN2Discriminator(size, narrow=narrow)
    for batch in (1, 3, 4, 6):
        out = d(torch.randn(batch, 3, size, size))
        assert out.shape == (batch, 1) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        d(torch.randn(1, 3, size // 2, size // 2))


def test_channel_table_and_config():
    assert stylegan2_channel_table(512) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32}
    assert stylegan2_channel_table(512, channel_multiplier=2)[64] == 512
    assert stylegan2_channel_table(512, channel_multiplier=2, narrow=0.5, max_channels=128)[4] == 128
    d = StyleGAN2Discriminator.from_config(StyleGAN2DiscriminatorConfig(size=64, narrow=0.25))
    assert d.size == 64 and len(d.blocks) == 4  # 64 -> 32 -> 16 -> 8 -> 4
    with pytest.raises(ValueError):
        StyleGAN2Discriminator(100)


def test_minibatch_stddev_matches_definition():
    x = torch.randn(6, 8, 4, 4)
    out = minibatch_stddev(x, group_size=4)  # 6 is not divisible by 4: groups of 3 (samples i, i+2, i+4)
    assert out.shape == (6, 9, 4, 4)
    torch.testing.assert_close(out[:, :8], x)
    for i in range(6):
        group = x[i % 2 :: 2]
        expected = torch.sqrt(group.var(0, unbiased=False) + 1e-8).mean()
        torch.testing.assert_close(out[i, 8], expected.expand(4, 4))
    single = minibatch_stddev(torch.randn(1, 8, 4, 4), group_size=4)
    torch.testing.assert_close(single[0, 8], torch.full((4, 4), 1e-4))


def blur_taps_2d(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """StyleGAN's blur as a 4x4 filter: the outer product of [1, 3, 3, 1] with itself, normalised to sum 1."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=dtype)
    return torch.outer(k, k) / 64


def test_blur_is_normalised_low_pass():
    blur = Blur(2, (1, 2))
    const = torch.full((1, 2, 8, 8), 3.0)
    out = blur(const)
    assert out.shape == (1, 2, 8, 8)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full_like(out[..., 2:-2, 2:-2], 3.0))
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]).remainder(2).float().expand(1, 2, 8, 8)
    assert blur(checker)[..., 2:-2, 2:-2].std() < 0.05 * checker.std()  # Nyquist pattern removed
    impulse = torch.zeros(1, 2, 7, 7)
    impulse[..., 3, 3] = 1.0
    torch.testing.assert_close(Blur(2, (1, 2))(impulse)[0, 1, 1:5, 1:5], blur_taps_2d().flip(0, 1))


@pytest.mark.parametrize("pad,stride", [((2, 2), 1), ((1, 1), 2), ((1, 2), 1), ((2, 1), 2), ((4, 4), 1)])
def test_blur_equals_the_fir_filter_forward_and_backward(pad, stride):
    """The three box means are the [1,3,3,1] FIR filter (padded, then every stride-th output) in value and in input
    gradient, for both layouts."""
    kernel = blur_taps_2d(torch.float64).expand(3, 1, 4, 4)
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64, requires_grad=True)
    p0, p1 = pad
    expected = F.conv2d(F.pad(x, (p0, p1, p0, p1)), kernel, stride=stride, groups=3)
    upstream = torch.randn_like(expected)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    forms = {
        "module": lambda v: Blur(3, pad, stride)(v),
        "taps": lambda v: blur_taps(F.pad(v, (p0, p1, p0, p1)), stride),
    }
    for layout in (torch.contiguous_format, torch.channels_last):
        for name, form in forms.items():
            xl = x.detach().contiguous(memory_format=layout).requires_grad_(True)
            out = form(xl)
            label = lambda m, n=name: f"{n}: {m}"
            torch.testing.assert_close(out, expected, msg=label)
            torch.testing.assert_close(torch.autograd.grad(out, xl, upstream)[0], expected_grad, msg=label)


@pytest.mark.parametrize("stride", [1, 2])
def test_blur_taps_pass_gradgradcheck(stride):
    """The compiled form's second derivative (R1's double backward) is the box means' one."""
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: blur_taps(v, stride), (x,))
    assert torch.autograd.gradgradcheck(lambda v: blur_box_means(v, stride), (x,))


def test_compiled_blur_is_taps_without_pools():
    """Under torch.compile the blur traces as shifted taps (no avg_pool2d in the graph) with the box means' value."""
    seen: list[torch.fx.GraphModule] = []

    def record(gm, example_inputs):
        seen.append(gm)
        return gm.forward

    blur = Blur(3, (1, 1), stride=2)
    x = torch.randn(2, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    out = torch.compile(blur, backend=record, fullgraph=True)(x)
    targets = {str(n.target) for gm in seen for n in gm.graph.nodes if n.op == "call_function"}
    assert seen and not any("avg_pool" in t for t in targets), targets
    torch.testing.assert_close(out, blur(x))


class PoolPaddings(TorchDispatchMode):
    """Records the padding of every aten avg_pool2d call (forward and backward) run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.paddings: list[list[int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in (torch.ops.aten.avg_pool2d, torch.ops.aten.avg_pool2d_backward):
            names = [a.name for a in func._schema.arguments]
            given = dict(zip(names, args)) | kwargs
            self.paddings.append(list(given.get("padding", [0, 0])))
        return func(*args, **kwargs)


def test_discriminator_pools_never_pad_in_forward_backward_and_r1():
    """No avg_pool2d the discriminators run (forward, backward, R1's double backward, channels-last input) pads:
    torch 2.11's CUDA backward of a padded pool over channels-last input returns wrong gradients, and the GPU
    training image has that torch."""
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(32, narrow=0.125).to(memory_format=torch.channels_last)
    component = ComponentDiscriminator(32, base_channels=8)
    real = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with PoolPaddings() as pools:
        logits = d(real) + component(real).flatten(1).mean(1, keepdim=True)
        loss = d_logistic_loss(logits, -logits) + r1_penalty(logits, real)
        loss.backward()
    assert len(pools.paddings) > 20 and all(p in ([0, 0], [0]) for p in pools.paddings), pools.paddings


@pytest.mark.parametrize("stride,side", [(1, 9), (2, 9), (2, 10)])
def test_equal_conv_1x1_matmul_path_equals_conv(stride, side):
    conv = EqualConv2d(5, 7, 1, stride=stride)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 5, side, side)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, stride=stride))
    conv3 = EqualConv2d(5, 7, 3, stride=2, padding=1, bias=False)
    torch.testing.assert_close(conv3(x), F.conv2d(x, conv3.weight / (5 * 9) ** 0.5, stride=2, padding=1))


def test_discriminator_gradients_and_r1_double_backward():
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(32, narrow=0.125)
    real = torch.randn(4, 3, 32, 32, requires_grad=True)
    logits = d(real)
    loss = d_logistic_loss(logits, d(torch.randn(4, 3, 32, 32))) + 5.0 * r1_penalty(logits, real)
    loss.backward()
    missing = [n for n, p in d.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_discriminator_bf16_autocast():
    d = StyleGAN2Discriminator(32, narrow=0.125)
    x = torch.randn(3, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(x)
    assert out.shape == (3, 1) and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), d(x), atol=0.1, rtol=0.1)


def test_discriminator_learns_real_vs_blurred_faces(faces32):
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(32, narrow=1 / 16)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    blurred = F.interpolate(F.avg_pool2d(faces32, 4), scale_factor=4, mode="bilinear", align_corners=False)
    train_real, train_fake, test_real, test_fake = faces32[:40], blurred[:40], faces32[40:], blurred[40:]
    for step in range(60):
        idx = torch.randint(0, 40, (8,))
        loss = d_logistic_loss(d(train_real[idx]), d(train_fake[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held_out = d_logistic_loss(d(test_real), d(test_fake)).item()
        accuracy = ((d(test_real) > 0).float().mean() + (d(test_fake) < 0).float().mean()).item() / 2
    assert held_out < 2 * np.log(2) - 0.35 and accuracy >= 0.75  # chance: 2 log 2 = 1.386 and 0.5


@pytest.mark.parametrize("size,patch", [(80, 20), (120, 30), (20, 5)])
def test_component_discriminator_patch_logits_and_features(size, patch):
    d = ComponentDiscriminator(size, base_channels=16)
    assert d.out_size == patch
    x = torch.randn(2, 3, size, size, requires_grad=True)
    logits, feats = d(x, return_feats=True)
    assert logits.shape == (2, 1, patch, patch)
    assert [f.shape for f in feats] == [(2, 32, size // 2, size // 2), (2, 64, patch, patch)]
    torch.testing.assert_close(d(x), logits)
    style = gram_style_loss(feats, [f.detach() + 1 for f in feats], weights=[0.5, 1.0])
    (logits.mean() + style).backward()
    assert x.grad is not None and all(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError):
        d(torch.randn(1, 3, size + 4, size + 4))


def test_component_discriminator_defaults_match_gfpgan_widths():
    d = ComponentDiscriminator(80)
    _, feats = d(torch.randn(1, 3, 80, 80), return_feats=True)
    assert [f.shape[1] for f in feats] == [128, 256]
    with pytest.raises(ValueError):
        ComponentDiscriminator(82)
