"""Losses: perceptual (VGG), identity (ArcFace), StyleGAN2 GAN losses and R1, facial-component boxes and crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file

from psp_hub.common import component_boxes, ffhq_template, image_to_tensor
from psp_hub.identity import IdentityEncoder
from psp_hub.losses import (
    COMPONENTS,
    IdentityLoss,
    PerceptualConfig,
    PerceptualLoss,
    crop_components,
    d_logistic_loss,
    default_component_sizes,
    g_nonsaturating_loss,
    gram_matrix,
    gram_style_loss,
    r1_penalty,
    r1_penalty_traced,
)
from tests.face_data import celeba_pairs


@pytest.fixture(scope="module")
def people(faces):
    """Two photos each of four CelebA people: tensor (8, 3, 128, 128) in [-1, 1], person i at rows 2i, 2i+1."""
    return image_to_tensor(celeba_pairs(faces, 4))


@pytest.fixture(scope="module")
def perceptual():
    return PerceptualLoss(PerceptualConfig())


# ---------------------------------------------------------------- perceptual


def test_perceptual_defaults_are_gfpgan_weights_on_vgg16():
    cfg = PerceptualConfig()
    assert cfg.network == "vgg16" and cfg.criterion == "l1" and cfg.range_norm and cfg.use_input_norm
    assert cfg.layer_weights == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0}


def test_perceptual_matches_manual_torchvision_vgg16(perceptual, people, weights):
    """Independent recomputation: torchvision vgg16 features, layer indices 2/7/14/21/28 (pre-ReLU convs)."""
    pred, target = people[:2], people[2:4]
    vgg = torchvision.models.vgg16().features.eval()
    state = load_file(weights / "vgg16_imagenet_features_fp16.safetensors")
    vgg.load_state_dict({k: v.float() for k, v in state.items()})
    for m in vgg:
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(x):
        x, out = ((x + 1) / 2 - mean) / std, {}
        for i, layer in enumerate(vgg[:29]):
            x = layer(x)
            out[i] = x
        return out

    with torch.no_grad():
        fp, ft = feats(pred), feats(target)
        expected = sum(w * (fp[i] - ft[i]).abs().mean() for i, w in zip((2, 7, 14, 21, 28), (0.1, 0.1, 1, 1, 1)))
        got = perceptual(pred, target)
    assert got.ndim == 0 and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_perceptual_zero_for_identical_and_grows_with_degradation(perceptual, people):
    x = people[:4]
    with torch.no_grad():
        assert perceptual(x, x).item() == 0.0
        small = perceptual((x + 0.05 * torch.randn_like(x)).clamp(-1, 1), x).item()
        large = perceptual((x + 0.3 * torch.randn_like(x)).clamp(-1, 1), x).item()
        blurred = F.interpolate(F.interpolate(x, scale_factor=0.25, mode="bilinear"), size=128, mode="bilinear")
        blur = perceptual(blurred, x).item()
    assert 0 < small < large
    assert blur > small


def test_perceptual_backprops_to_pred_only_and_stays_frozen(perceptual, people):
    pred = people[:2].clone().requires_grad_(True)
    target = people[2:4].clone().requires_grad_(True)
    perceptual.train()
    assert not perceptual.vgg.training and not any(m.training for m in perceptual.modules() if m is not perceptual)
    perceptual(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(not p.requires_grad and p.grad is None for p in perceptual.parameters())


def test_perceptual_style_term_adds_gram_loss(people):
    x, y = people[:2], people[2:4]
    plain = PerceptualLoss(PerceptualConfig(layer_weights={"conv2_2": 1.0}))
    styled = PerceptualLoss(PerceptualConfig(layer_weights={"conv2_2": 1.0}, style_weight=50.0))
    with torch.no_grad():
        assert styled(x, y).item() > plain(x, y).item() > 0


def test_perceptual_vgg19_needs_user_weights_and_loads_them(tmp_path):
    with pytest.raises(ValueError, match="weights_path"):
        PerceptualLoss(PerceptualConfig(network="vgg19"))
    features = torchvision.models.vgg19().features
    path = tmp_path / "vgg19_features.pth"
    torch.save(features.state_dict(), path)
    loss = PerceptualLoss(
        PerceptualConfig(network="vgg19", weights_path=str(path), layer_weights={"conv1_2": 0.1, "conv3_4": 1.0})
    )
    torch.testing.assert_close(loss.vgg.features[2].weight, features[2].weight)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x.flip(-1)).item() > 0
    with pytest.raises(ValueError, match="unknown"):
        PerceptualLoss(PerceptualConfig(layer_weights={"conv3_4": 1.0}))  # VGG-16 has no conv3_4


# ---------------------------------------------------------------- identity


@pytest.fixture(scope="module")
def identity_loss(weights):
    return IdentityLoss(IdentityEncoder.from_onnx(weights / "mobilefacenet_arcface_112.onnx"))


def test_identity_loss_lower_for_same_person(identity_loss, people):
    with torch.no_grad():
        same = [identity_loss(people[2 * i : 2 * i + 1], people[2 * i + 1 : 2 * i + 2]).item() for i in range(4)]
        diff = [
            identity_loss(people[2 * i : 2 * i + 1], people[(2 * i + 2) % 8 : (2 * i + 2) % 8 + 1]).item()
            for i in range(4)
        ]
        assert identity_loss(people[:2], people[:2]).item() == 0.0
    assert np.mean(same) < np.mean(diff)


def test_identity_loss_backprops_to_pred_only(identity_loss, people):
    pred = people[:2].clone().requires_grad_(True)
    target = people[2:4].clone().requires_grad_(True)
    loss = identity_loss(pred, target)
    loss.backward()
    assert loss.ndim == 0 and loss.item() > 0
    assert pred.grad is not None and pred.grad.abs().sum() > 0 and target.grad is None
    assert all(p.grad is None and not p.requires_grad for p in identity_loss.parameters())


def test_identity_loss_cosine_criterion(identity_loss, people):
    cos_loss = IdentityLoss(identity_loss.encoder, criterion="cosine")
    with torch.no_grad():
        e = identity_loss.encoder(people[:2]), identity_loss.encoder(people[2:4])
        expected = (1 - (e[0] * e[1]).sum(1)).mean()
        torch.testing.assert_close(cos_loss(people[:2], people[2:4]), expected)
    with pytest.raises(ValueError):
        IdentityLoss(identity_loss.encoder, criterion="huber")


# ---------------------------------------------------------------- GAN losses


def test_gan_losses_closed_form():
    zeros = torch.zeros(4, 1)
    assert g_nonsaturating_loss(zeros).item() == pytest.approx(math.log(2))
    assert d_logistic_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    real, fake = torch.tensor([[3.0], [1.0]]), torch.tensor([[-2.0], [0.5]])
    expected = np.mean(np.log1p(np.exp([-3.0, -1.0]))) + np.mean(np.log1p(np.exp([-2.0, 0.5])))
    assert d_logistic_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert g_nonsaturating_loss(torch.tensor([[2.0]])).item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    # patch logits (component discriminators) are averaged over all positions
    assert g_nonsaturating_loss(torch.zeros(2, 1, 5, 5)).item() == pytest.approx(math.log(2))


def test_r1_penalty_equals_squared_gradient_norm_of_linear_critic():
    w = torch.randn(3, 8, 8)
    images = torch.randn(5, 3, 8, 8, requires_grad=True)
    logits = (images * w).flatten(1).sum(1, keepdim=True)
    assert r1_penalty(logits, images).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    with pytest.raises(ValueError):
        r1_penalty(logits, torch.randn(5, 3, 8, 8))


def test_r1_penalty_under_bf16_autocast_is_fp32_and_trains_discriminator():
    torch.manual_seed(0)
    d = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.LeakyReLU(0.2), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 1)
    )
    images = torch.randn(4, 3, 16, 16, requires_grad=True)
    ref = r1_penalty(d(images), images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = d(images)
        assert logits.dtype == torch.bfloat16
        pen = r1_penalty(logits, images)
    assert pen.dtype == torch.float32 and torch.isfinite(pen)
    assert pen.item() == pytest.approx(ref.item(), rel=0.05)
    pen.backward()  # create_graph: the penalty reaches D's weights
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters() if p.ndim > 1)


def _r1_and_weight_grads(d: torch.nn.Module, penalty) -> tuple[torch.Tensor, list[torch.Tensor]]:
    d.zero_grad()
    value = penalty()
    value.backward()
    return value.detach(), [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in d.parameters()]


@pytest.mark.parametrize("bf16", [False, True])
def test_traced_r1_is_the_eager_penalty_and_compiles_as_one_graph(bf16):
    """`r1_penalty_traced` (the input gradient by torch.func.grad inside the function) gives `r1_penalty`'s value and
    discriminator gradients, eager and compiled in one graph (fullgraph) whose backward is the second derivative."""
    from psp_hub.discriminators import StyleGAN2Discriminator

    torch.manual_seed(0)
    d = StyleGAN2Discriminator(16, channel_multiplier=1, narrow=0.0625)
    real = torch.randn(3, 3, 16, 16)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def eager():
        images = real.clone().requires_grad_(True)
        with autocast:
            return r1_penalty(d(images), images)

    def traced(fn=r1_penalty_traced):
        with autocast:
            return fn(d, real)

    compiled = torch.compile(lambda disc, images: r1_penalty_traced(disc, images), backend="aot_eager", fullgraph=True)
    want, want_grads = _r1_and_weight_grads(d, eager)
    assert want > 0 and any(g.abs().sum() > 0 for g in want_grads)
    tol = {"rtol": 2e-2, "atol": 1e-4} if bf16 else {"rtol": 1e-5, "atol": 1e-7}
    for penalty in (traced, lambda: traced(compiled)):
        got, got_grads = _r1_and_weight_grads(d, penalty)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, **tol)
        for g, w in zip(got_grads, want_grads, strict=True):
            if bf16:
                # compiled, the blur runs as shifted taps, eager as box means: in bf16 each form is 3-8 % (norm) off
                # the fp32 penalty's gradients by rounding, so the two are compared at that scale (a misplaced
                # gradient, like torch 2.11's CUDA pool backward, is off by O(1))
                assert (g - w).norm() <= 0.15 * w.norm() + 1e-6, ((g - w).norm(), w.norm())
            else:
                torch.testing.assert_close(g, w, **tol)


# ---------------------------------------------------------------- components


def test_component_boxes_on_template():
    for size in (128, 512):
        lm = torch.tensor(ffhq_template(size), dtype=torch.float32)[None]
        boxes = torch.from_numpy(component_boxes(lm.numpy(), size))
        assert boxes.shape == (1, 3, 4)
        sides = boxes[0, :, 2:] - boxes[0, :, :2]
        iod, mouth = (lm[0, 1] - lm[0, 0]).norm(), (lm[0, 4] - lm[0, 3]).norm()
        torch.testing.assert_close(sides[:2], torch.full((2, 2), 0.6 * float(iod)))
        torch.testing.assert_close(sides[2], torch.full((2,), 1.1 * float(mouth)))
        centres = (boxes[0, :, :2] + boxes[0, :, 2:]) / 2
        torch.testing.assert_close(centres[0], lm[0, 0])
        torch.testing.assert_close(centres[1], lm[0, 1])
        torch.testing.assert_close(centres[2], (lm[0, 3] + lm[0, 4]) / 2)
    assert default_component_sizes(512) == {"left_eye": 80, "right_eye": 80, "mouth": 120}


def test_component_boxes_follow_scale_and_shift():
    lm = torch.tensor(ffhq_template(256), dtype=torch.float32)[None]
    moved = lm * 0.5 + torch.tensor([10.0, 20.0])
    b0, b1 = (torch.from_numpy(component_boxes(x.numpy(), 256)) for x in (lm, moved))
    torch.testing.assert_close(b1, b0 * 0.5 + torch.tensor([10.0, 20.0, 10.0, 20.0]), atol=1e-4, rtol=0)


def test_crop_components_exact_on_integer_boxes_and_sizes():
    images = torch.randn(2, 3, 64, 64)
    boxes = torch.tensor([[[8, 16, 24, 32], [30, 16, 46, 32], [20, 40, 44, 64]]] * 2, dtype=torch.float32)
    crops = crop_components(images, boxes, {"left_eye": 16, "right_eye": 16, "mouth": 24})
    assert list(crops) == list(COMPONENTS)
    torch.testing.assert_close(crops["left_eye"], images[:, :, 16:32, 8:24])
    torch.testing.assert_close(crops["right_eye"], images[:, :, 16:32, 30:46])
    torch.testing.assert_close(crops["mouth"], images[:, :, 40:64, 20:44])
    assert {k: tuple(v.shape) for k, v in crop_components(images, boxes, 8).items()} == {
        k: (2, 3, 8, 8) for k in COMPONENTS
    }


def test_crop_components_keep_bf16_boxes_where_fp32_puts_them():
    """bf16 images (the training's autocast output) are cropped at the fp32 boxes: a box edge at 200.3 px would round
    to 200 in bf16, a shift the crops of a smooth ramp show at once."""
    ramp = torch.arange(256, dtype=torch.float32).expand(1, 3, 256, 256).contiguous()  # value = x coordinate
    boxes = torch.tensor([[[200.3, 20.0, 232.3, 52.0], [100.6, 20.0, 132.6, 52.0], [60.2, 150.0, 124.2, 214.0]]])
    fp32 = crop_components(ramp, boxes, 8)
    bf16 = crop_components(ramp.bfloat16(), boxes, 8)
    assert all(bf16[k].dtype == torch.bfloat16 for k in COMPONENTS)
    for k in COMPONENTS:  # the bf16 crop is the fp32 crop rounded to bf16, not a crop at a rounded box
        torch.testing.assert_close(bf16[k].float(), fp32[k].bfloat16().float(), atol=0, rtol=0)


def test_crop_components_real_face_flip_consistency_and_grad(people):
    """Flipping the face and swapping eye landmarks gives the mirrored left/right crops."""
    size = 128
    images = people[:2].clone().requires_grad_(True)
    lm = torch.tensor(ffhq_template(size), dtype=torch.float32).expand(2, 5, 2)
    crops = crop_components(images, torch.from_numpy(component_boxes(lm.numpy(), size)))
    assert crops["left_eye"].shape == (2, 3, 20, 20) and crops["mouth"].shape == (2, 3, 30, 30)
    flipped_lm = lm.clone()
    flipped_lm[..., 0] = size - lm[..., 0]
    flipped_lm = flipped_lm[:, [1, 0, 2, 4, 3]]
    crops_f = crop_components(images.detach().flip(-1), torch.from_numpy(component_boxes(flipped_lm.numpy(), size)))
    torch.testing.assert_close(crops_f["left_eye"], crops["right_eye"].detach().flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(crops_f["mouth"], crops["mouth"].detach().flip(-1), atol=1e-5, rtol=0)
    sum(c.sum() for c in crops.values()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert images.grad[:, :, :40].abs().sum() == 0  # nothing above the eye boxes is sampled


# ---------------------------------------------------------------- gram / style


def test_gram_matrix_and_style_loss():
    f = torch.randn(2, 4, 5, 6)
    g = gram_matrix(f)
    torch.testing.assert_close(g, torch.einsum("bchw,bdhw->bcd", f, f) / (4 * 5 * 6))
    assert gram_style_loss([f], [f]).item() == 0.0
    fake = torch.randn(2, 4, 5, 6, requires_grad=True)
    real = torch.randn(2, 4, 5, 6, requires_grad=True)
    loss = gram_style_loss([fake, fake * 2], [real, real], weights=[0.5, 1.0])
    loss.backward()
    assert loss.item() > 0 and fake.grad.abs().sum() > 0 and real.grad is None
