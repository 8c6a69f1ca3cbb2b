"""Metrics: PSNR/SSIM vs scikit-image, LPIPS vs the `lpips` package, ArcFace and dlib identity on real faces."""

from __future__ import annotations

import warnings

import cv2
import lpips
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from psp_hub.common import image_to_tensor
from psp_hub.identity import IdentityEncoder
from psp_hub.metrics import (
    LPIPS,
    SAME_PERSON_THRESHOLD,
    DlibIdentity,
    DlibIdentityConfig,
    identity_similarity,
    psnr,
    ssim,
)
from tests.face_data import celeba_pairs


@pytest.fixture(scope="module")
def people(faces):
    """Two photos each of ten CelebA people as RGB uint8 (20, 128, 128, 3); person i at rows 2i, 2i+1."""
    return celeba_pairs(faces, 10)


@pytest.fixture(scope="module")
def noisy_pair(people):
    gen = torch.Generator().manual_seed(0)
    x = image_to_tensor(people[:4])
    return x, (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


# ---------------------------------------------------------------- PSNR / SSIM


def test_psnr_ssim_match_scikit_image_per_image(noisy_pair):
    x, y = noisy_pair
    ours_p, ours_s = psnr(y, x), ssim(y, x)
    assert ours_p.shape == ours_s.shape == (4,)
    for i in range(4):
        a = ((x[i] + 1) / 2).permute(1, 2, 0).double().numpy()
        b = ((y[i] + 1) / 2).permute(1, 2, 0).double().numpy()
        assert ours_p[i].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-3)
        ref = structural_similarity(
            a, b, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ours_s[i].item() == pytest.approx(ref, abs=1e-4)


def test_psnr_ssim_value_ranges_and_ordering(noisy_pair):
    x, y = noisy_pair
    torch.testing.assert_close(psnr((y + 1) / 2, (x + 1) / 2, value_range=(0.0, 1.0)), psnr(y, x))
    torch.testing.assert_close(ssim((y + 1) / 2, (x + 1) / 2, value_range=(0.0, 1.0)), ssim(y, x))
    assert (psnr(x, x) >= 99).all() and torch.allclose(ssim(x, x), torch.ones(4), atol=1e-5)
    worse = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert (psnr(worse, x) < psnr(y, x)).all() and (ssim(worse, x) < ssim(y, x)).all()
    assert psnr(y, x, crop_border=4).shape == (4,)
    with pytest.raises(ValueError):
        psnr(x, x[:, :, :64])


# ---------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def ours_lpips():
    return LPIPS.from_shared()


@pytest.fixture(scope="module")
def package_lpips(weights):
    """The `lpips` package (test-only dependency) with its bundled v0.1 heads and our VGG-16 features loaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=True, net="vgg", pnet_rand=True, verbose=False).eval()
    vgg = {k: v.float() for k, v in load_file(weights / "vgg16_imagenet_features_fp16.safetensors").items()}
    slices = [(1, 0, 4), (2, 4, 9), (3, 9, 16), (4, 16, 23), (5, 23, 30)]
    state = {f"net.slice{s}.{k}": v for s, lo, hi in slices for k, v in vgg.items() if lo <= int(k.split(".")[0]) < hi}
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if k.startswith("net.")]
    return model


def test_lpips_heads_equal_package_weights(package_lpips, weights):
    ours = load_file(weights / "lpips_vgg16_v0.1_lin.safetensors")
    theirs = package_lpips.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_lpips_matches_package(ours_lpips, package_lpips, people, noisy_pair):
    x = image_to_tensor(people[:6])
    y = torch.roll(x, 1, 0)
    nx, ny = noisy_pair
    with torch.no_grad():
        for a, b in ((x, y), (nx, ny)):
            ours = ours_lpips(a, b)
            ref = package_lpips(a, b).flatten()
            assert ours.shape == ref.shape
            assert (ours - ref).abs().max().item() < 1e-5
        torch.testing.assert_close(ours_lpips((x + 1) / 2, (y + 1) / 2, normalize=True), ours_lpips(x, y))
        assert ours_lpips(x, x).abs().max().item() < 1e-6


def test_lpips_orders_distortions_and_is_frozen_but_differentiable(ours_lpips, noisy_pair):
    x, y = noisy_pair
    ours_lpips.train()
    assert not any(m.training for m in ours_lpips.modules())
    worse = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    d_worse = ours_lpips(worse, x)
    with torch.no_grad():
        assert (d_worse > ours_lpips(y, x)).all()
    d_worse.sum().backward()
    assert worse.grad is not None and worse.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in ours_lpips.parameters())


# ---------------------------------------------------------------- identity


def test_arcface_identity_similarity_same_vs_different(people, weights):
    encoder = IdentityEncoder.from_onnx(weights / "mobilefacenet_arcface_112.onnx")
    x = image_to_tensor(people)
    same = identity_similarity(encoder, x[0::2], x[1::2])
    diff = identity_similarity(encoder, x[0::2], torch.roll(x[1::2], 1, 0))
    assert same.shape == diff.shape == (10,)
    assert same.mean() > diff.mean() + 0.3
    assert (same > diff).float().mean() >= 0.8
    torch.testing.assert_close(identity_similarity(encoder, x[:3], x[:3]), torch.ones(3), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def dlib_metric(weights):
    return DlibIdentity(weights)


def test_dlib_distance_same_vs_different_on_real_faces(dlib_metric, people):
    pred, target = list(people[0::2]), list(people[1::2])
    same = dlib_metric.distance(pred, target)
    diff = dlib_metric.distance(pred, target[1:] + target[:1])
    assert same.shape == diff.shape == (10,)
    assert same.mean() < diff.mean() - 0.2
    assert (same < SAME_PERSON_THRESHOLD).mean() >= 0.7
    assert (diff > SAME_PERSON_THRESHOLD).mean() >= 0.9


def test_dlib_distance_resolution_consistent_and_validates(dlib_metric, people):
    small = list(people[:4])
    big = [cv2.resize(im, (512, 512), interpolation=cv2.INTER_CUBIC) for im in small]
    d = dlib_metric.distance(small, big)
    assert (d < 0.15).all(), d  # same image at 128 and 512 px
    assert dlib_metric.descriptors(small).shape == (4, 128)
    with pytest.raises(ValueError):
        dlib_metric.distance(small, big[:3])
    with pytest.raises(ValueError):
        dlib_metric.descriptor(small[0].astype(np.float32))


def test_dlib_detector_mode_agrees_with_fixed_box(dlib_metric, people, weights):
    detecting = DlibIdentity(weights, DlibIdentityConfig(use_detector=True))
    crops = list(people[:4])
    gap = np.linalg.norm(detecting.descriptors(crops) - dlib_metric.descriptors(crops), axis=1)
    assert (gap < 0.15).all(), gap
