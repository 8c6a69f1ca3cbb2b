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

from psp_hub.common.geometry import ffhq_template
from psp_hub.data import BuildConfig, build_dataset


@pytest.fixture(scope="module")
def photo_build(tmp_path_factory, samples):
    folder = tmp_path_factory.mktemp("photos")
    people = sorted((samples / "references").iterdir())
    for person in people:  # one sub-folder per person: the folder name is the identity
        os.symlink(person, folder / person.name)
    photo = cv2.imread(str(next(iter(sorted(people[0].iterdir())))))
    cv2.imwrite(
        str(folder / "tiny.jpg"),
        cv2.resize(photo, (photo.shape[1] // 6, photo.shape[0] // 6), interpolation=cv2.INTER_AREA),
    )
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path_factory.mktemp("photo-dataset")
    cfg = BuildConfig(
        input=folder,
        output=out,
        size=128,
        workers=1,
        source_name="celeba",
        license="CelebA: non-commercial research only",
        split_fractions=(0.34, 0.33, 0.33),
    )
    report = build_dataset(cfg)
    return cfg, out, report, [p.name for p in people]


def test_bad_photos_are_skipped_and_counted(photo_build):
    _, out, report, people = photo_build
    assert report["mode"] == "photos"
    assert report["skipped"] == {"corrupt": 1, "no_face": 1, "tiny_face": 1}
    assert report["kept"] == 5 * len(people)
    assert json.loads((out / "build_report.json").read_text())["skipped"] == report["skipped"]


def test_photos_become_aligned_faces_with_landmarks(photo_build, tmp_path):
    _, out, _report, people = photo_build
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
    cfg, out, report, _ = photo_build
    again = build_dataset(cfg)  # the fixture's own config: the same input, output and settings
    assert again["shards_written"] == 0 and again["kept"] == report["kept"]
    png = next((out / ".build").glob("aligned-*/*.png"))
    assert Image.open(io.BytesIO(png.read_bytes())).size == (128, 128)


def _manifest_folder(root, samples) -> dict:
    """Four small sources as downloaded: CelebA photos + an identity table, a pair set named by file, loose photos,
    and a soft (shrunk and re-enlarged) photo; returns the manifest."""
    people = sorted((samples / "references").iterdir())
    (root / "celeba").mkdir()
    rows = ["image identity"]
    for person in people:
        for photo in sorted(person.iterdir()):
            os.symlink(photo, root / "celeba" / photo.name)
            rows.append(f"{photo.name} {person.name.split('_')[1]}")
    (root / "celeba" / "identity.txt").write_text("\n".join(rows) + "\n")
    (root / "pairs").mkdir()
    for n, person in enumerate(people[:2], start=1):
        for k, photo in enumerate(sorted(person.iterdir())[:2]):
            os.symlink(photo, root / "pairs" / f"{n:03d}_{k:02d}.jpg")
    (root / "pairs" / "info.csv").write_text("face_id,face_age,face_gender\n001,61,male\n002,30,female\n")
    (root / "loose").mkdir()
    for photo in sorted((samples / "photos" / "whole").iterdir())[:2]:
        os.symlink(photo, root / "loose" / photo.name)
    (root / "soft").mkdir()
    photo = cv2.imread(str(min(people[0].iterdir())))
    h, w = photo.shape[:2]
    small = cv2.resize(photo, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "soft" / "soft.png"), cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    return {
        "root": ".",
        "sources": [
            {
                "name": "pairs",
                "path": "pairs",
                "license": "CC BY 4.0 (pairs)",
                "identity": "regex:^(\\d{3})_",
                "attributes": {"table": "pairs/info.csv", "key": "face_id", "age": "face_age", "gender": "face_gender"},
                "split": "test",
            },
            {
                "name": "celeba",
                "path": "celeba",
                "license": "CelebA: non-commercial research only",
                "identity": "table",
                "identity_table": "celeba/identity.txt",
                "split": "like:@shared/data/faces128",
            },
            {"name": "loose", "path": "loose", "license": "loose terms", "identity": "photo", "split": "train"},
            {
                "name": "soft",
                "path": "soft",
                "license": "soft terms",
                "identity": "photo",
                "split": "train",
                "min_sharp_px": 100,
            },
        ],
    }


@pytest.fixture(scope="module")
def manifest_build(tmp_path_factory, samples):
    import yaml

    from train.build_dataset import main as build_cli

    root = tmp_path_factory.mktemp("raw")
    (root / "sources.yaml").write_text(yaml.safe_dump(_manifest_folder(root, samples)))
    out = tmp_path_factory.mktemp("manifest-dataset")
    assert (
        build_cli(
            [
                "--sources",
                str(root / "sources.yaml"),
                "--output",
                str(out),
                "--size",
                "128",
                "--image-format",
                "webp",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    return out, json.loads((out / "build_report.json").read_text())


def test_manifest_sources_keep_their_identities_splits_and_attributes(manifest_build, faces, tmp_path):
    from psp_hub.data.build.corpus_splits import corpus_split_map

    out, report = manifest_build
    per = report["per_source"]
    assert per["celeba"]["kept"] == 15 and per["celeba"]["people"] == 3 and per["celeba"]["multi_photo"] == 3
    assert per["pairs"]["kept"] == 4 and per["pairs"]["splits"] == {"train": 0, "validation": 0, "test": 4}
    assert per["soft"]["kept"] == 0 and per["soft"]["skipped"] == {"soft_face": 1}
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    rows = {r["id"]: {**r, "split": s} for s in ds for r in ds[s]}
    corpus = corpus_split_map(faces)
    for r in rows.values():
        if r["source"] == "celeba":  # the same split as the person has in the 128 px dataset
            assert r["split"] == corpus[r["identity"]], r["identity"]
        if r["source"] == "loose":
            assert r["split"] == "train" and r["num_photos"] == 1
    older = [r for r in rows.values() if r["identity"] == "pairs:001"]
    assert len(older) == 2 and all(r["age"] == 61 and r["is_older"] and r["gender"] == "male" for r in older)
    assert sorted(older[0]["reference_ids"] + [older[0]["id"]]) == sorted(r["id"] for r in older)


def test_manifest_build_measures_sharpness_and_carries_licences(manifest_build, tmp_path):
    out, report = manifest_build
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    for split in ds:
        for r in ds[split]:
            assert 32 <= r["sharp_px"] <= min(512, r["native_resolution"])
    assert report["sharpness"]["celeba"]["measured"] == 15
    card = (out / "README.md").read_text()
    for licence in ("CC BY 4.0 (pairs)", "CelebA: non-commercial research only", "loose terms"):
        assert licence in card
    assert "soft terms" not in card  # a source none of whose photos were kept ships no images, so no licence
    assert "## Sharpness" in card and "soft_face: 1" in card
