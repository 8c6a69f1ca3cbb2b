"""The Fréchet distance (FD-VGG16) that judges a prior by its samples: the moments, the formula against closed forms,
the feature network's ranking of real, blurred and other faces on real files, and the benchmark script end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch.nn import functional as F

from psp_hub.common.imageio import load_image
from psp_hub.common.images import image_to_tensor
from psp_hub.metrics import FeatureMoments, GaussianFit, VGGPoolFeatures, frechet_distance
from psp_hub.models.prior_loading import load_prior_export
from psp_hub.training import TrainConfig
from psp_hub.training.stages import make_stage

ROOT = Path(__file__).resolve().parents[1]


def test_moments_added_in_batches_are_numpys_mean_and_covariance():
    x = np.random.default_rng(0).normal(size=(50, 6)) * [1, 2, 3, 4, 5, 6] + 7
    moments = FeatureMoments()
    for chunk in (x[:7], x[7:30], x[30:]):
        moments.update(torch.from_numpy(chunk).float())
    fit = moments.fit()
    assert fit.count == 50
    np.testing.assert_allclose(fit.mean, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(fit.cov, np.cov(x, rowvar=False), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        FeatureMoments().fit()


def test_distance_matches_the_closed_form_and_ignores_a_common_rotation():
    """Diagonal covariances: ||mu_a - mu_b||^2 + sum(s_a + s_b - 2 sqrt(s_a s_b)); rotating both sets alike
    changes nothing; a set against itself is 0; rank-deficient covariances (fewer images than features) stay
    finite."""
    rng = np.random.default_rng(1)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    s_a, s_b = rng.uniform(0.5, 3, size=5), rng.uniform(0.5, 3, size=5)
    a, b = GaussianFit(mu_a, np.diag(s_a), 100), GaussianFit(mu_b, np.diag(s_b), 100)
    closed = float(((mu_a - mu_b) ** 2).sum() + (s_a + s_b - 2 * np.sqrt(s_a * s_b)).sum())
    assert frechet_distance(a, b) == pytest.approx(closed, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(closed, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    turned = [GaussianFit(q @ f.mean, q @ f.cov @ q.T, 100) for f in (a, b)]
    assert frechet_distance(*turned) == pytest.approx(closed, rel=1e-5)
    few = rng.normal(size=(3, 5))
    low_rank = GaussianFit(few.mean(axis=0), np.cov(few, rowvar=False), 3)
    assert np.isfinite(frechet_distance(low_rank, b)) and frechet_distance(low_rank, b) > 0


def test_fit_round_trips_through_a_file(tmp_path):
    fit = GaussianFit(np.arange(3.0), np.eye(3) * 2, 12)
    fit.save(tmp_path / "real.npz")
    back = GaussianFit.load(tmp_path / "real.npz")
    assert back.count == 12
    np.testing.assert_array_equal(back.mean, fit.mean)
    np.testing.assert_array_equal(back.cov, fit.cov)


def _faces(folder: Path, start: int, count: int) -> torch.Tensor:
    files = sorted(folder.glob("*.webp"))[start : start + count]
    return image_to_tensor([load_image(f) for f in files])


def _down_up(images: torch.Tensor, factor: int) -> torch.Tensor:
    small = F.interpolate(images, scale_factor=1 / factor, mode="area")
    return F.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)


def test_real_faces_are_closer_to_real_faces_than_blurred_ones(faces, weights):
    """48 corpus faces against 48 others: as they are, then shrunk 4x and 8x and upsampled back; the distance grows
    as detail goes (FD-VGG16 of the sharp set at 64 faces: other faces 3.4, x4 6.0, x8 13.4)."""
    net = VGGPoolFeatures()
    reference, others = _faces(faces, 0, 48), _faces(faces, 48, 48)
    fit_of = {}
    for name, images in {"real": others, "x4": _down_up(others, 4), "x8": _down_up(others, 8)}.items():
        moments = FeatureMoments()
        moments.update(net(images))
        fit_of[name] = moments.fit()
    ref = FeatureMoments()
    ref.update(net(reference))
    fd = {name: frechet_distance(ref.fit(), fit) for name, fit in fit_of.items()}
    assert net(reference[:2]).shape == (2, 512)
    assert fd["real"] < fd["x4"] < fd["x8"], fd


def test_benchmark_scores_a_prior_export_against_the_reference_rows(dataset_for_fd, tmp_path):
    """A prior stage's export loads back as the generator it saved, and benchmarks/prior_fd.py prints and writes
    the reference rows and the prior's row, with a sample grid."""
    cfg = TrainConfig.from_yaml(
        ROOT / "train" / "configs" / "tiny-cpu.yaml",
        [f"data.path={dataset_for_fd}", f"output_dir={tmp_path / 'run'}", "stage=prior", "tracker=none"],
    )
    stage = make_stage(cfg, Accelerator(cpu=True))
    export = tmp_path / "prior-export"
    stage.export(export)
    loaded = load_prior_export(export)
    saved = stage.ema.shadow_params
    assert len(saved) == len(list(loaded.parameters()))
    for ema, p in zip(saved, loaded.parameters()):
        torch.testing.assert_close(p, ema.float().cpu())
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "prior_fd.py"), "--data", str(dataset_for_fd), "--samples", "8"]
    cmd += ["--size", "64", "--prior", str(export), "--cache", str(tmp_path / "cache"), "--json", str(out)]
    cmd += ["--grid", str(tmp_path / "grid")]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {r["set"]: r["fd_vgg16"] for r in json.loads(out.read_text())}
    assert set(rows) == {"real, other faces", "real, x4 down-up", "real, x8 down-up", f"prior {export}"}
    assert all(np.isfinite(v) and v >= 0 for v in rows.values()), rows
    assert f"prior {export}: FD-VGG16" in run.stdout
    assert list((tmp_path / "cache").glob("*.npz")) and list(tmp_path.glob("grid-*.png"))


def test_a_face_alone_is_the_samples_target(dataset_for_fd):
    """EvalDataset.face (what the reference sets read: decode and resize only) gives the pixels a sample's target
    has (the 'moderate' preset never turns a face grey)."""
    from psp_hub.data import DataConfig, build_eval_dataset

    faces = build_eval_dataset(DataConfig(path=str(dataset_for_fd), out_size=96), "train", degradation="moderate")
    for i in (0, 5):
        torch.testing.assert_close(faces.face(i), faces[i]["target"], rtol=0, atol=0)
    batches = list(faces.face_batches(np.array([3, 1, 4]), batch_size=2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 96, 96), (1, 3, 96, 96)]
    torch.testing.assert_close(batches[1][0], faces.face(4), rtol=0, atol=0)


def test_a_prior_run_validates_by_frechet_distance(dataset_for_fd, tmp_path):
    """The prior stage with validate_every logs val/fd_vgg16 (its EMA samples against a fixed draw of training
    faces) to metrics.jsonl, and fixed codes give the same distance twice for the same weights."""
    from psp_hub.training import train
    from psp_hub.training.prior_validation import PriorValidator

    overrides = [f"data.path={dataset_for_fd}", f"output_dir={tmp_path / 'run'}", "stage=prior", "tracker=none"]
    overrides += ["max_steps=2", "validate_every=1", "val_samples=12", "images_every=0"]
    cfg = TrainConfig.from_yaml(ROOT / "train" / "configs" / "tiny-cpu.yaml", overrides)
    assert train(cfg).step == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fds = [r["val/fd_vgg16"] for r in records if "val/fd_vgg16" in r]
    assert len(fds) == 2 and all(np.isfinite(v) and v > 0 for v in fds), records
    validator = PriorValidator(cfg.data, 12, "cpu", seed=cfg.seed)
    generator = make_stage(cfg, Accelerator(cpu=True)).raw_generator
    torch.manual_seed(0)
    first = validator(generator)["val/fd_vgg16"]
    torch.manual_seed(0)  # the noise inputs
    assert validator(generator)["val/fd_vgg16"] == pytest.approx(first, rel=1e-9)


@pytest.fixture(scope="module")
def dataset_for_fd(tmp_path_factory, faces):
    from psp_hub.data.build.sample_corpus import build_sample_dataset

    return build_sample_dataset(faces, tmp_path_factory.mktemp("fd-data"))
