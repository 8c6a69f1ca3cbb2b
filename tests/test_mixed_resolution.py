"""The mixed-resolution rule: each face's native size, reconstruction losses at that size, GAN reals only from native
faces, a second (lower-resolution) set held resident beside the first, and a tiny PSP-GAN run on both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from accelerate import Accelerator
from torch.nn import functional as F

from psp_hub.common.images import downsample
from psp_hub.data import DataConfig
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.data.images import decode_rgb, resize_square
from psp_hub.data.mixing import native_levels, native_sizes
from psp_hub.data.resident import resident_faces
from psp_hub.data.resident_batches import ResidentBatches
from psp_hub.identity import IdentityEncoder
from psp_hub.losses import IdentityLoss, PerceptualLoss
from psp_hub.training import TrainConfig, train
from psp_hub.training.mixed_resolution import at_native
from psp_hub.training.objectives import Discriminators, DiscView, PSPGANObjective
from psp_hub.training.stages import make_stage
from tests.face_data import celeba_people

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny-cpu.yaml"
THRESHOLD = 118  # the tiny set's median sharp_px (its faces measure 88-128 at 128 px): both levels occur
EXTRA_PX = 32  # the second set's stored side: half the tiny 64 px output, as the 128 px corpus is for 256


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("mixed-data"))


@pytest.fixture(scope="module")
def extra(dataset, tmp_path_factory):
    """The same faces stored at 32 px and without `sharp_px`: a stand-in for the 128 px corpus beside a 64 px set."""
    out = tmp_path_factory.mktemp("extra-data") / "dataset"
    shutil.copytree(dataset, out, ignore=shutil.ignore_patterns("*.parquet"))
    for shard in sorted(Path(dataset, "data").rglob("*.parquet")):
        table = pq.read_table(shard).drop_columns(["sharp_px"]).replace_schema_metadata(None)
        rows = table.to_pydict()
        for i, (image, points, size) in enumerate(zip(rows["image"], rows["landmarks"], rows["size"])):
            small = resize_square(decode_rgb(image["bytes"]), EXTRA_PX)
            png = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))[1].tobytes()
            rows["image"][i] = {"bytes": png, "path": image["path"]}
            rows["landmarks"][i] = ((np.asarray(points) + 0.5) * EXTRA_PX / size - 0.5).tolist()
            rows["size"][i] = EXTRA_PX
        pq.write_table(table.from_pydict(rows, schema=table.schema), out / shard.relative_to(dataset))
    return out


def mixed_data(dataset, extra, **changes) -> DataConfig:
    values = {
        "path": str(dataset),
        "extra_path": str(extra),
        "extra_fraction": 0.5,
        "sharp_threshold": THRESHOLD,
        "out_size": 64,
        "max_references": 2,
        "loader": "resident",
    }
    return DataConfig(**{**values, **changes})


def test_native_sizes_follow_the_rule():
    sharp = np.array([300.0, 224.0, 223.0, 130.0, np.nan])
    stored = np.array([256, 256, 256, 256, 128])
    assert native_sizes(sharp, stored, 256, 224).tolist() == [256, 256, 128, 128, 128]
    assert native_sizes(np.array([np.nan]), np.array([512]), 256, 224).tolist() == [256]  # unmeasured: its side
    assert native_sizes(sharp, stored, 256, 0).tolist() == [256] * 5  # rule off
    assert native_levels(256, 224) == (256, 128) and native_levels(256, 0) == ()
    with pytest.raises(ValueError, match="extra_path needs loader"):
        DataConfig(extra_path="x", sharp_threshold=224)
    with pytest.raises(ValueError, match="extra_fraction needs extra_path"):
        DataConfig(extra_fraction=0.5, loader="resident", sharp_threshold=224)


@pytest.fixture(scope="module")
def face_pairs(faces):
    """Four real 128 px faces (targets) and a blurred, noisy version of each (outputs), in [-1, 1]."""
    images, _ = celeba_people(faces, 2, 2)
    target = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    blurred = F.avg_pool2d(F.pad(target, [1, 1, 1, 1], mode="replicate"), 3, stride=1)
    return (blurred + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))), target


@pytest.fixture(scope="module")
def loss_nets():
    return {"perceptual": PerceptualLoss(), "identity": IdentityLoss(IdentityEncoder.from_onnx(), "cosine")}


def test_losses_at_native_size_are_each_samples_loss_at_its_size(face_pairs, loss_nets):
    pred, target = face_pairs
    pred = pred.clone().requires_grad_(True)
    half = torch.full((4,), 64)
    for name, loss_fn in [("l1", F.l1_loss), *loss_nets.items()]:
        direct = loss_fn(downsample(pred, 64), downsample(target, 64))
        assert torch.allclose(at_native(loss_fn, pred, target, half, (128, 64)), direct, rtol=1e-5, atol=1e-6), name
        native = torch.tensor([128, 64, 128, 64])
        each = [loss_fn(downsample(pred[i : i + 1], s), downsample(target[i : i + 1], s)) for i, s in enumerate(native)]
        mixed = at_native(loss_fn, pred, target, native, (128, 64))
        assert torch.allclose(mixed, torch.stack(each).mean(), rtol=1e-4, atol=1e-6), name
        if name == "l1":  # the gradient too: each sample pulled only at its own size
            (got,) = torch.autograd.grad(mixed, pred)
            (want,) = torch.autograd.grad(torch.stack(each).mean(), pred)
            assert torch.allclose(got, want, atol=1e-9)
    assert at_native(F.l1_loss, pred, target, None, (128, 64)) == F.l1_loss(pred, target)  # no rule: as before


def _objective(levels, **weights):
    cfg = TrainConfig.from_yaml(TINY, [f"losses.{k}={v}" for k, v in weights.items()])
    torch.manual_seed(0)
    discs = Discriminators(64, narrow=cfg.d_narrow, component_channels=cfg.component_d_channels)
    return PSPGANObjective(cfg.losses, 64, levels=levels), DiscView(discs.global_d, dict(discs.components.items()))


def _out(image):
    return type("Out", (), {"image": image, "unet_images": []})()


def _boxes(b: int) -> torch.Tensor:
    boxes = torch.tensor([[20.0, 24.0, 32.0, 36.0], [32.0, 24.0, 44.0, 36.0], [24.0, 40.0, 40.0, 52.0]])
    return boxes.expand(b, 3, 4)


def test_a_batch_native_at_half_size_gets_the_losses_of_half_size_tensors(face_pairs):
    """At 64 px output, faces native at 32: l1, perceptual and identity equal the plain objective on 32 px tensors."""
    pred, target = (downsample(x, 64) for x in face_pairs)
    terms = {"component_gan": 0, "component_style": 0, "gan": 0, "identity_criterion": "cosine"}
    mixed, discs = _objective((64, 32), **terms)
    plain, _ = _objective((), **terms)
    batch = {"target": target, "boxes": _boxes(4), "native_px": torch.full((4,), 32)}
    got = mixed.generator_losses(_out(pred), batch, discs, use_unet=False)
    small = {"target": downsample(target, 32), "boxes": _boxes(4)}
    want = plain.generator_losses(_out(downsample(pred, 32)), small, discs, use_unet=False)
    assert got.keys() == want.keys() == {"l1", "perceptual", "identity"}
    for k in got:
        assert torch.allclose(got[k], want[k], rtol=1e-5, atol=1e-6), k
    full = mixed.generator_losses(_out(pred), {**batch, "native_px": torch.full((4,), 64)}, discs, use_unet=False)
    assert all(full[k] > got[k] for k in ("l1", "perceptual"))  # the 64 px detail the blur lost counts only there


def test_half_native_targets_are_no_gan_reals_and_get_no_component_terms(face_pairs):
    pred, target = (downsample(x, 64) for x in face_pairs)
    objective, discs = _objective((64, 32), perceptual=0, identity=0, diffaug="''")
    reals = torch.flip(target, dims=[0])  # the separate draw of native faces
    batch = {"target": target, "boxes": _boxes(4), "native_px": torch.full((4,), 32)}
    batch |= {"gan_real": reals, "gan_real_boxes": _boxes(4)}
    d = objective.discriminator_losses(pred, batch, discs, with_r1=True)
    noise = objective.discriminator_losses(pred, {**batch, "target": torch.rand_like(target)}, discs, with_r1=True)
    assert all(torch.equal(d[k], noise[k]) for k in d)  # the targets play no part in any discriminator term
    plain = objective.discriminator_losses(pred, {"target": reals, "boxes": _boxes(4)}, discs, with_r1=True)
    assert all(torch.allclose(d[k], plain[k]) for k in d)  # exactly the terms with those faces as targets
    g = objective.generator_losses(_out(pred), batch, discs, use_unet=False)
    assert g["component_style"] == 0 and g["component_gan"] == 0 and g["gan"] > 0
    sharp = objective.generator_losses(_out(pred), {**batch, "native_px": torch.full((4,), 64)}, discs, False)
    assert sharp["component_style"] > 0 and sharp["component_gan"] > 0


def test_component_gan_pulls_only_the_outputs_native_at_full_size(face_pairs):
    """A mixed batch: the component GAN term's gradient reaches the two sharp samples and not the two native at
    half size (whose eyes the downsampled losses cannot check), and equals the term on the sharp pair alone."""
    pred, target = (downsample(x, 64) for x in face_pairs)
    objective, discs = _objective((64, 32), perceptual=0, identity=0, l1=0, gan=0, component_style=0)
    native = torch.tensor([64, 32, 64, 32])
    pred = pred.clone().requires_grad_(True)
    g = objective.generator_losses(
        _out(pred), {"target": target, "boxes": _boxes(4), "native_px": native}, discs, use_unet=False
    )
    (grad,) = torch.autograd.grad(g["component_gan"], pred)
    per_sample = grad.abs().flatten(1).sum(1)
    assert per_sample[0] > 0 and per_sample[2] > 0 and per_sample[1] == 0 and per_sample[3] == 0
    pair = {"target": target[[0, 2]], "boxes": _boxes(2), "native_px": native[[0, 2]]}
    alone = objective.generator_losses(_out(pred[[0, 2]]), pair, discs, use_unet=False)
    assert torch.allclose(g["component_gan"], alone["component_gan"], rtol=1e-5)


def test_both_sets_resident_with_native_sizes_references_and_the_mix(dataset, extra):
    cfg = mixed_data(dataset, extra)
    faces = resident_faces(cfg, "cpu")
    main = resident_faces(cfg.replace(extra_path=None, extra_fraction=0.0), "cpu")
    n = len(main.images)
    assert len(faces.images) == 2 * n and faces.from_extra.tolist() == [False] * n + [True] * n
    shards = sorted(Path(dataset, "data", "train").glob("*.parquet"))
    sharp = np.concatenate([pq.read_table(f, columns=["sharp_px"]).column(0).to_numpy() for f in shards])
    assert torch.equal(main.native, torch.from_numpy(np.where(sharp >= THRESHOLD, 64, 32)))
    assert 0 < (main.native == 64).sum() < n and torch.equal(faces.native[:n], main.native)
    assert (faces.native[n:] == 32).all()  # stored at 32 px, whatever the column it lacks would say
    refs = faces.refs
    assert ((refs[:n] < n) | (refs[:n] == -1)).all() and ((refs[n:] >= n) | (refs[n:] == -1)).all()
    assert torch.equal(torch.where(refs[n:] >= 0, refs[n:] - n, -1)[:, : main.refs.shape[1]], main.refs)
    first = pq.read_table(min(Path(extra, "data", "train").glob("*.parquet")), columns=["image"])
    small = decode_rgb(first.column("image")[0].as_py()["bytes"])
    assert small.shape[0] == EXTRA_PX and np.array_equal(
        faces.images[n].permute(1, 2, 0).numpy(), resize_square(small, 64)
    )

    batches = ResidentBatches(cfg, batch_size=64, start_sample=0)
    drawn = [batches.batch() for _ in range(6)]
    rows = torch.cat([b["row"] for b in drawn])
    older, from_extra = faces.is_older[rows], faces.from_extra[rows]
    assert 0.15 < older.float().mean() < 0.45  # the 30 % older mix, from both sets
    assert 0.35 < from_extra[~older].float().mean() < 0.65  # extra_fraction 0.5 of the general samples
    for b in drawn:
        assert torch.equal(b["native_px"], faces.native[b["row"]])
        assert (faces.native[b["gan_real_row"]] == 64).all()  # reals: native faces only
        img = (b["gan_real"] + 1) * 127.5
        stored = faces.images[b["gan_real_row"]].float()
        same = torch.isclose(img, stored, atol=0.01) | torch.isclose(img, stored.flip(-1), atol=0.01)
        assert same.flatten(1).all(1).float().mean() > 0.9  # (grey at the targets' 1 % rate)
        assert b["gan_real_boxes"].shape == b["boxes"].shape
    prior = ResidentBatches(cfg, batch_size=64, targets_only=True)
    assert (faces.native[prior.batch()["row"]] == 64).all()  # a prior's faces are all reals: native only
    off = ResidentBatches(cfg.replace(extra_path=None, extra_fraction=0.0, sharp_threshold=0), batch_size=4)
    assert not {"native_px", "gan_real"} & set(off.batch())


def _flat(batch: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def test_one_draw_of_three_batches_is_handed_out_in_turn(dataset, extra):
    cfg = mixed_data(dataset, extra)
    whole = _flat(ResidentBatches(cfg, batch_size=12, start_sample=0).batch())  # the same seed: the same draw
    batches = ResidentBatches(cfg.replace(batches_per_draw=3), batch_size=4, start_sample=0)
    for i in range(3):
        handed = _flat(next(batches))
        assert handed.keys() == whole.keys()
        for key, value in handed.items():
            assert torch.equal(value, whole[key][4 * i : 4 * i + 4]), key
    assert batches.pending == [] and next(batches)["index"].tolist() == [12, 13, 14, 15]  # the next draw
    with pytest.raises(ValueError, match="batches_per_draw"):
        DataConfig(path=str(dataset), batches_per_draw=2)  # the streaming loader has no draws


@pytest.mark.slow
def test_tiny_psp_gan_trains_on_both_sets_with_the_rule_and_diffaug(dataset, extra, tmp_path):
    cfg = TrainConfig.from_yaml(
        TINY,
        [
            f"data.path={dataset}",
            f"data.extra_path={extra}",
            "data.extra_fraction=0.5",
            f"data.sharp_threshold={THRESHOLD}",
            "data.loader=resident",
            "losses.diffaug='color,translation,cutout'",
            f"output_dir={tmp_path / 'run'}",
            "batch_size=4",
            "max_steps=3",
            "validate_every=0",
            "images_every=0",
            "tracker=none",
            "checkpoint_every=3",
        ],
    )
    assert make_stage(cfg, Accelerator(cpu=True)).objective.levels == (64, 32)
    result = train(cfg)
    assert result.step == 3 and result.reason == "finished" and result.export is not None
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    terms = {"l1", "perceptual", "identity", "unet", "gan", "component_gan", "d_global", "d_components", "r1"}
    assert len(records) == 3 and terms <= set(records[-1])
    assert all(np.isfinite(v) for r in records for k, v in r.items() if k in terms)
