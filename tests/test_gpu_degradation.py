"""The batched torch path of eq. (10), the augmented stand-in references and the resident loader, checked against
the per-sample OpenCV path on real faces: the same degradation for the same draws, the same statistics otherwise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from psp_hub.data import (
    DataConfig,
    DegradationConfig,
    build_train_batches,
    build_train_dataloader,
    degrade,
    sample_degradation,
)
from psp_hub.data.augment import augmented_view, augmented_views_batch
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.data.degradation import jpeg_roundtrip
from psp_hub.data.gpu_degradation import PARAM_KEYS, degrade_batch, sample_degradation_batch
from psp_hub.data.images import decode_rgb
from psp_hub.data.jpeg import jpeg_batch


@pytest.fixture(scope="module")
def face_batch(faces) -> np.ndarray:
    """(24, 128, 128, 3) uint8 real faces (the first files of the shared corpus)."""
    files = sorted(faces.glob("*.webp"))[:24]
    return np.stack([decode_rgb(f.read_bytes()) for f in files])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("resident"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(1e-12, np.mean((np.asarray(a, np.float64) - b) ** 2))))


def _as_batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test_torch_jpeg_matches_opencv_at_every_quality(face_batch):
    x = face_batch[:8].astype(np.float32) / 255
    for q in (60, 80, 95, 100):
        ours = jpeg_batch(_as_batch(face_batch[:8]), torch.full((8,), q)).permute(0, 2, 3, 1).numpy()
        cv = np.stack([jpeg_roundtrip(img, q) for img in x])
        assert _psnr(ours, cv) > 42, q  # measured 46-50 dB; the JPEG loss itself is 32-47 dB
        assert abs(_psnr(ours, x) - _psnr(cv, x)) < 0.5, q


def test_same_draws_give_the_same_degradation(face_batch):
    """Noise off (its realisation is the only per-path draw): every image within 35 dB of the OpenCV result."""
    cfg = DegradationConfig()
    rng = np.random.default_rng(0)
    params = [dataclasses.replace(sample_degradation(cfg, rng, 128), noise=0.0) for _ in face_batch]
    cpu = np.stack([degrade(img, p, np.random.default_rng(1)) for img, p in zip(face_batch, params)])
    p = {k: torch.tensor([q.as_floats()[k] for q in params]) for k in PARAM_KEYS}
    ours = degrade_batch(_as_batch(face_batch), p, cfg, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    per_image = [_psnr(a, b) for a, b in zip(ours, cpu)]
    assert min(per_image) > 35, per_image  # measured 37.5-52 dB
    assert np.abs(ours - cpu).mean() < 0.01


def test_with_noise_the_loss_of_quality_has_the_same_distribution(face_batch):
    cfg = DegradationConfig()
    rng = np.random.default_rng(3)
    params = [sample_degradation(cfg, rng, 128) for _ in face_batch]
    cpu = np.stack([degrade(img, p, np.random.default_rng(i)) for i, (img, p) in enumerate(zip(face_batch, params))])
    p = {k: torch.tensor([q.as_floats()[k] for q in params]) for k in PARAM_KEYS}
    ours = degrade_batch(_as_batch(face_batch), p, cfg, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    x = face_batch / 255.0
    a, b = np.array([_psnr(c, t) for c, t in zip(cpu, x)]), np.array([_psnr(c, t) for c, t in zip(ours, x)])
    assert abs(a.mean() - b.mean()) < 0.5 and np.corrcoef(a, b)[0, 1] > 0.99, (a.mean(), b.mean())
    assert ours.min() >= 0 and ours.max() <= 1 and ours.shape == cpu.shape


def test_batched_draws_follow_the_per_sample_distribution():
    cfg = DegradationConfig()
    n = 4000
    ours = sample_degradation_batch(cfg, n, 256, torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    ref = [sample_degradation(cfg, rng, 256).as_floats() for _ in range(n)]
    assert set(ours) == set(ref[0])
    for key in PARAM_KEYS:
        theirs = np.array([r[key] for r in ref])
        mine = ours[key].numpy()
        span = theirs.max() - theirs.min()
        assert theirs.min() - 0.01 * span - 1e-6 <= mine.min() and mine.max() <= theirs.max() + 0.01 * span + 1e-6, key
        spread = max(theirs.std(), 1e-3)
        assert abs(mine.mean() - theirs.mean()) < 0.1 * spread + 0.01, key  # 4000 draws: ~0.016 std errors
        assert abs(mine.std() - theirs.std()) < 0.1 * spread + 0.01, key
    assert set(np.unique(ours["jpeg_quality"].numpy())) == set(range(60, 101))


def test_augmented_views_batch_like_the_opencv_ones(face_batch):
    imgs = _as_batch(face_batch[:8])
    views = augmented_views_batch(imgs, torch.Generator().manual_seed(0))
    assert views.shape == imgs.shape and views.min() >= 0 and views.max() <= 1
    ours = [_psnr(v, i) for v, i in zip(views.numpy(), imgs.numpy())]
    rng = np.random.default_rng(0)
    cv = [_psnr(augmented_view(f, rng) / 255.0, f / 255.0) for f in face_batch[:8]]
    assert max(ours) < 30  # a different-looking view, never the image itself
    assert abs(np.mean(ours) - np.mean(cv)) < 3, (np.mean(ours), np.mean(cv))


def test_resident_batches_have_the_streaming_layout(dataset):
    cfg = DataConfig(path=str(dataset), num_workers=0, out_size=64, max_references=2, shuffle_buffer=64)
    streamed = next(iter(build_train_dataloader(cfg, batch_size=4)))
    resident = next(build_train_batches(cfg.replace(loader="resident"), batch_size=4))
    for key, value in streamed.items():
        if isinstance(value, torch.Tensor):
            assert resident[key].shape == value.shape and resident[key].dtype == value.dtype, key
    assert set(resident["degradation"]) == set(streamed["degradation"])
    for key in ("target", "lq", "refs"):
        assert -1 <= resident[key].min() and resident[key].max() <= 1


def test_resident_batches_mix_references_flips_and_older_faces(dataset):
    cfg = DataConfig(path=str(dataset), num_workers=0, out_size=64, max_references=2, loader="resident")
    batches = build_train_batches(cfg, batch_size=64)
    b = next(batches)
    faces = batches.faces
    assert 0.15 < b["is_older"].float().mean() < 0.45  # older_fraction 0.3
    assert 0.3 < b["flipped"].float().mean() < 0.7
    mask, aug = b["ref_mask"], b["ref_is_augmented"]
    assert mask.any() and aug.any() and (mask & ~aug).any()  # real references and augmented stand-ins
    assert not (aug & ~mask).any()
    assert (b["refs"][~mask] == 0).all()
    rows, flipped = b["row"], b["flipped"].long()
    torch.testing.assert_close(b["boxes"], faces.boxes[rows, flipped])
    torch.testing.assert_close(b["landmarks"], faces.landmarks[rows, flipped])
    assert not (aug & faces.lists_refs[rows][:, None]).any()  # stand-ins only for people with one photo
    again = next(build_train_batches(cfg, batch_size=64))
    torch.testing.assert_close(again["lq"], b["lq"])  # deterministic for (seed, phase, process, start)
    other = next(build_train_batches(cfg, batch_size=64, start_sample=64))
    assert not torch.equal(other["lq"], b["lq"])


def test_resident_references_are_other_photos_of_the_same_person(dataset):
    cfg = DataConfig(
        path=str(dataset), num_workers=0, out_size=64, max_references=2, min_references=2, loader="resident"
    )
    batches = build_train_batches(cfg, batch_size=32)
    faces = batches.faces
    b = next(batches)
    images = faces.images.float() / 255 * 2 - 1  # (N, 3, S, S)
    checked = 0
    for i in range(32):
        for j in range(2):
            if b["ref_mask"][i, j] and not b["ref_is_augmented"][i, j]:
                ref = b["refs"][i, j]
                dist = torch.minimum(
                    (images - ref).abs().amax(dim=(1, 2, 3)), (images - ref.flip(-1)).abs().amax(dim=(1, 2, 3))
                )
                row = int(dist.argmin())
                assert dist[row] < 1e-5  # a stored face, as it is or mirrored
                target = int(b["row"][i])
                assert row != target and row in faces.refs[target].tolist()
                checked += 1
    assert checked > 10
