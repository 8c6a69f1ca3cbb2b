"""Streaming loader on a small real dataset: the 70/30 mix, references, degradation ranges, flips, exact resume."""

from __future__ import annotations

import itertools

import datasets
import numpy as np
import pytest
import torch

from psp_hub.common import flip_landmarks, image_to_tensor
from psp_hub.data import (
    DataConfig,
    TrainStream,
    build_eval_dataset,
    build_train_dataloader,
    collate_samples,
    interleaved_stream,
    phase_position,
)
from psp_hub.data.build.sample_corpus import build_sample_dataset
from psp_hub.data.images import decode_rgb, resize_square
from psp_hub.data.references import ReferenceStore
from psp_hub.data.sources import data_files

TEMPLATE_128 = np.array(
    [[48.25, 59.99], [79.73, 60.05], [64.16, 78.50], [50.32, 92.85], [78.27, 92.79]], dtype=np.float32
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces):
    return build_sample_dataset(faces, tmp_path_factory.mktemp("stream"))


@pytest.fixture(scope="module")
def meta(dataset) -> dict[str, dict[str, dict]]:
    """split -> id -> row (no image)."""
    out = {}
    for split in ("train", "validation"):
        ds = datasets.load_dataset(str(dataset), split=split, streaming=True).decode(False).remove_columns("image")
        out[split] = {r["id"]: r for r in ds}
    return out


def _cfg(dataset, **kw) -> DataConfig:
    return DataConfig(path=str(dataset), num_workers=0, shuffle_buffer=256, **kw)


def _samples(stream: TrainStream, n: int) -> list[dict]:
    return list(itertools.islice(iter(stream), n))


def test_mix_ratio_follows_the_schedule(dataset, meta):
    train = meta["train"]
    older_ids = {i for i, r in train.items() if r["is_older"]}
    for phase, target in (("main", 0.3), ("boost", 0.6)):
        rows = [row for _, row in itertools.islice(TrainStream(_cfg(dataset), 8, phase=phase).rows(), 4000)]
        share = np.mean([r["is_older"] for r in rows])
        assert abs(share - target) < 0.03, (phase, share)
        assert all(train[r["id"]]["is_older"] == r["is_older"] for r in rows)
        assert {r["id"] for r in rows if r["is_older"]} == older_ids  # the small older stream keeps cycling
    custom = [row for _, row in itertools.islice(TrainStream(_cfg(dataset, older_fraction=0.5), 8).rows(), 3000)]
    assert abs(np.mean([r["is_older"] for r in custom]) - 0.5) < 0.04


def test_library_interleave_gives_the_same_mix(dataset):
    rows = list(itertools.islice(iter(interleaved_stream(_cfg(dataset), "main")), 1200))
    assert abs(np.mean([r["is_older"] for r in rows]) - 0.3) < 0.05


def test_batch_layout(dataset):
    loader = build_train_dataloader(_cfg(dataset, max_references=3), batch_size=6)
    batch = next(iter(loader))
    b, s = 6, 128
    assert batch["target"].shape == batch["lq"].shape == (b, 3, s, s)
    assert batch["refs"].shape == (b, 3, 3, s, s)
    assert batch["ref_mask"].shape == batch["ref_is_augmented"].shape == (b, 3)
    assert batch["ref_mask"].dtype == batch["ref_is_augmented"].dtype == batch["is_older"].dtype == torch.bool
    assert batch["boxes"].shape == (b, 3, 4) and batch["landmarks"].shape == (b, 5, 2)
    for key in ("target", "lq", "refs"):
        assert batch[key].dtype == torch.float32
        assert batch[key].min() >= -1.0 and batch[key].max() <= 1.0
    assert batch["target"].std() > 0.1 and batch["lq"].std() > 0.05
    assert torch.all(batch["refs"][~batch["ref_mask"]] == 0)  # zero padding
    assert torch.all(batch["ref_is_augmented"] <= batch["ref_mask"])
    boxes = batch["boxes"]
    assert torch.all(boxes[..., 0] < boxes[..., 2]) and torch.all(boxes[..., 1] < boxes[..., 3])
    assert boxes.min() >= 0 and boxes.max() <= s - 1
    assert set(batch["degradation"]) >= {"sigma", "scale", "noise", "jpeg_quality"}
    assert all(v.shape == (b,) for v in batch["degradation"].values())
    assert batch["index"].tolist() == list(range(6))


def test_references_come_from_the_same_person_and_never_the_target(dataset, meta):
    train = meta["train"]
    photos: dict[str, set[str]] = {}
    for rid, r in train.items():
        photos.setdefault(r["identity"], set()).add(rid)
    store = ReferenceStore(data_files(str(dataset), "default", "train"))
    cfg = _cfg(dataset, min_references=1, max_references=3, ref_hflip_prob=0.0)
    real = augmented = 0
    for s in _samples(TrainStream(cfg, 4), 120):
        others = photos[s["identity"]] - {s["id"]}
        k = int(s["ref_mask"].sum())
        assert 1 <= k <= 3
        ids = [i for i in s["ref_ids"] if i]
        if others:
            assert not s["ref_is_augmented"].any()
            assert len(ids) == k == min(k, len(others)) and len(set(ids)) == k
            assert set(ids) <= others  # same identity, other photos
            for j, rid in enumerate(ids):  # the pixels are that photo's
                assert torch.equal(s["refs"][j], image_to_tensor(resize_square(decode_rgb(store.get(rid)), 128)))
            real += 1
        else:
            assert ids == [] and torch.equal(s["ref_is_augmented"], s["ref_mask"])
            for j in range(k):  # augmented views of the one photo, not copies of the target
                assert (s["refs"][j] - s["target"]).abs().mean() > 0.02
            augmented += 1
    assert real > 15 and augmented > 15

    none_cfg = _cfg(dataset, min_references=1, max_references=3, single_photo_refs="none")
    for s in _samples(TrainStream(none_cfg, 4), 40):
        if not photos[s["identity"]] - {s["id"]}:
            assert not s["ref_mask"].any()


def test_degradation_parameters_stay_in_range(dataset):
    cfg = _cfg(dataset, max_references=0)
    deg = [s["degradation"] for s in _samples(TrainStream(cfg, 8), 200)]
    d = {k: np.array([float(x[k]) for x in deg]) for k in deg[0]}
    assert d["sigma_nominal"].min() >= 0.1 and d["sigma_nominal"].max() <= 10.0
    assert np.allclose(d["sigma"], d["sigma_nominal"] * 128 / 512)
    assert d["scale"].min() >= 0.8 and d["scale"].max() <= 8.0
    assert d["noise"].min() >= 0.0 and d["noise"].max() <= 20.0
    assert d["jpeg_quality"].min() >= 60 and d["jpeg_quality"].max() <= 100
    assert np.all(d["jpeg_quality"] == np.round(d["jpeg_quality"]))
    assert d["scale"].max() - d["scale"].min() > 5  # really drawn over the range
    assert 0.15 < d["jitter"].mean() < 0.45  # colour jitter probability 0.3


def test_flip_moves_target_landmarks_and_boxes_together(dataset, meta):
    store = ReferenceStore(data_files(str(dataset), "default", "train"))
    for prob in (0.0, 1.0):
        for s in _samples(TrainStream(_cfg(dataset, hflip_prob=prob, max_references=0), 4), 6):
            lm = s["landmarks"].numpy()
            expected = flip_landmarks(TEMPLATE_128, 128) if prob else TEMPLATE_128
            assert np.allclose(lm, expected, atol=0.05)
            assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # index 0 stays the image-left eye
            boxes = s["boxes"].numpy()
            assert (boxes[0, 0] + boxes[0, 2]) / 2 < (boxes[1, 0] + boxes[1, 2]) / 2
            assert np.allclose((boxes[:2, 0] + boxes[:2, 2]) / 2, lm[:2, 0], atol=0.5)
            hr = decode_rgb(store.get(s["id"]))
            if prob:
                hr = hr[:, ::-1]
            if not s["degradation"]["gray"]:
                assert torch.equal(s["target"], image_to_tensor(hr))
            assert bool(s["flipped"]) == bool(prob)


def test_exact_resume_with_workers(dataset):
    cfg = _cfg(dataset, max_references=2)
    it = iter(build_train_dataloader(cfg, batch_size=4))
    full = [next(it) for _ in range(5)]
    resumed_loader = build_train_dataloader(cfg.replace(num_workers=2), batch_size=4, start_sample=8)
    it = iter(resumed_loader)
    resumed = [next(it) for _ in range(3)]
    for a, b in zip(full[2:], resumed):
        assert a["id"] == b["id"] and a["ref_ids"] == b["ref_ids"]
        assert a["index"].tolist() == b["index"].tolist()
        for key in ("target", "lq", "refs", "ref_mask", "boxes", "landmarks"):
            assert torch.equal(a[key], b[key]), key
        for key in a["degradation"]:
            assert torch.equal(a["degradation"][key], b["degradation"][key])
    del it, resumed_loader


def test_processes_get_their_own_parts(dataset):
    cfg = _cfg(dataset, node_split="examples", max_references=0).replace(shuffle_buffer=32)  # no wrap-around early on
    parts = []
    for p in range(2):
        rows = [r for _, r in itertools.islice(TrainStream(cfg, 4, process_index=p, num_processes=2).rows(), 200)]
        parts.append([r["id"] for r in rows if not r["is_older"]][:60])
    assert len(set(parts[0])) == len(set(parts[1])) == 60
    assert not set(parts[0]) & set(parts[1])
    one = [r["id"] for _, r in itertools.islice(TrainStream(cfg, 4).rows(), 5)]
    two = [s["id"] for s in _samples(TrainStream(cfg, 4, process_index=1, num_processes=2), 5)]
    assert one != two


def test_eval_dataset_is_deterministic_at_fixed_levels(dataset, meta):
    val = meta["validation"]
    cfg = _cfg(dataset, max_references=3)
    moderate = build_eval_dataset(cfg, "validation", degradation="moderate", num_references=2)
    assert len(moderate) == len(val)
    a, b = moderate[0], moderate[0]
    assert a["id"] == b["id"] and torch.equal(a["lq"], b["lq"]) and torch.equal(a["refs"], b["refs"])
    batch = collate_samples([moderate[i] for i in range(len(moderate))])
    d = batch["degradation"]
    assert (
        torch.all(d["scale"] == 4)
        and torch.all(d["sigma_nominal"] == 2)
        and torch.all(d["noise"] == 5)
        and torch.all(d["jpeg_quality"] == 85)
    )
    assert not batch["flipped"].any()
    assert batch["refs"].shape[1] == 3
    for i, rid in enumerate(batch["id"]):
        n_other = len(val[rid]["reference_ids"])
        assert int(batch["ref_mask"][i].sum()) == min(2, n_other)
        assert {x for x in batch["ref_ids"][i] if x} <= set(val[rid]["reference_ids"])
    severe = build_eval_dataset(cfg, "validation", degradation="severe", only_with_references=True)
    assert 0 < len(severe) < len(val)
    assert all(float(severe[i]["degradation"]["scale"]) == 8 for i in range(len(severe)))
    assert not torch.equal(
        severe[0]["lq"],
        build_eval_dataset(cfg, "validation", degradation="moderate", only_with_references=True)[0]["lq"],
    )


def test_phase_position_for_resume():
    cfg = DataConfig(boost_start=0.875)
    assert phase_position(cfg, 0, 800_000, 3) == ("main", 0)
    assert phase_position(cfg, 699_999, 800_000, 3) == ("main", 2_099_997)
    assert phase_position(cfg, 700_000, 800_000, 3) == ("boost", 0)
    assert phase_position(cfg, 700_010, 800_000, 3) == ("boost", 30)
