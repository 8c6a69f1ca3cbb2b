"""Photo-folder mode: real photos are detected (RetinaFace), aligned to the FFHQ template and packed; bad ones counted."""

from __future__ import annotations

import io
import json
import os

import cv2
import datasets
import numpy as np
import pytest
from PIL import Image

from psp_hub.data import BuildConfig, build_dataset
from psp_hub.face.alignment import ffhq_template


@pytest.fixture(scope="module")
def photo_build(tmp_path_factory, samples):
    folder = tmp_path_factory.mktemp("photos")
    people = sorted((samples / "references").iterdir())
    for person in people:  # one sub-folder per person: the folder name is the identity
        os.symlink(person, folder / person.name)
    photo = cv2.imread(str(next(iter(sorted(people[0].iterdir())))))
    cv2.imwrite(str(folder / "tiny.jpg"), cv2.resize(photo, (photo.shape[1] // 6, photo.shape[0] // 6), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path_factory.mktemp("photo-dataset")
    cfg = BuildConfig(input=folder, output=out, size=128, workers=1, source_name="celeba", license="CelebA: non-commercial research only", split_fractions=(0.34, 0.33, 0.33))
    report = build_dataset(cfg)
    return folder, out, report, [p.name for p in people]


def test_bad_photos_are_skipped_and_counted(photo_build):
    _, out, report, people = photo_build
    assert report["mode"] == "photos"
    assert report["skipped"] == {"corrupt": 1, "no_face": 1, "tiny_face": 1}
    assert report["kept"] == 5 * len(people)
    assert json.loads((out / "build_report.json").read_text())["skipped"] == report["skipped"]


def test_photos_become_aligned_faces_with_landmarks(photo_build, tmp_path):
    _, out, report, people = photo_build
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    rows = [r for split in ds for r in ds[split]]
    assert {r["identity"] for r in rows} == {f"celeba:{p}" for p in people}
    template = ffhq_template(128)
    for r in rows:
        assert r["image"].size == (128, 128) and r["size"] == 128
        lm = np.array(r["landmarks"])
        assert np.abs(lm - template).max() < 12  # the detected points sit near the template after alignment
        assert r["det_score"] >= 0.9 and r["native_resolution"] >= 64
        assert len(r["reference_ids"]) == 4  # the other four photos of this person
    # the same person never crosses splits
    per_split = {s: {r["identity"] for r in ds[s]} for s in ds}
    assert sum(len(v) for v in per_split.values()) == len(people)
    meta = (out / "README.md").read_text()
    assert "CelebA: non-commercial research only" in meta


def test_rerun_reuses_the_detection_cache(photo_build):
    folder, out, report, _ = photo_build
    cfg = BuildConfig(input=folder, output=out, size=128, workers=1, source_name="celeba", license="CelebA: non-commercial research only", split_fractions=(0.34, 0.33, 0.33))
    again = build_dataset(cfg)
    assert again["shards_written"] == 0 and again["kept"] == report["kept"]
    png = next((out / ".build").glob("aligned-*/*.png"))
    assert Image.open(io.BytesIO(png.read_bytes())).size == (128, 128)
