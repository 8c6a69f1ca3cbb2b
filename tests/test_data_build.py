"""Dataset builder on a small real sample of the shared face corpus: shards, splits, references, card, resume."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image

from psp_hub.data import FEATURES, BuildConfig, build_dataset, push_to_hub
from psp_hub.data.build.sample_corpus import make_sample_corpus
from train.build_dataset import main as build_cli

FRACTIONS = ["--train", "0.7", "--validation", "0.15", "--test", "0.15"]


def _add_bad_files(folder: Path, template: Path) -> None:
    """Two bad images listed in the metadata: garbage bytes and a truncated WebP; plus one unlisted file."""
    (folder / "bad_garbage.webp").write_bytes(b"this is not an image" * 10)
    (folder / "bad_truncated.webp").write_bytes(template.read_bytes()[:600])
    (folder / "unlisted.webp").write_bytes(template.read_bytes())
    with (folder / "metadata.csv").open("a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bad_garbage.webp", "bad_00000", "lfw", "lfw:Bad_Garbage", "", "", "0.99", "200", "1", "none"])
        w.writerow(["bad_truncated.webp", "bad_00001", "lfw", "lfw:Bad_Truncated", "", "", "0.99", "200", "1", "none"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, faces) -> Path:
    folder = make_sample_corpus(faces, tmp_path_factory.mktemp("input"))
    _add_bad_files(folder, faces / "lfw_00010.webp")
    return folder


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dataset")
    assert (
        build_cli(
            [
                "--input",
                str(corpus),
                "--output",
                str(out),
                "--seed",
                "3",
                "--rows-per-shard",
                "64",
                "--workers",
                "1",
                "--quiet",
                *FRACTIONS,
            ]
        )
        == 0
    )
    return out, json.loads((out / "build_report.json").read_text())


def _like_built(corpus: Path, output: Path, seed: int = 3, workers: int = 1) -> BuildConfig:
    """The `built` fixture's settings (64 rows per shard, 70/15/15 split) for another output, seed or worker count."""
    return BuildConfig(
        input=corpus, output=output, seed=seed, rows_per_shard=64, workers=workers, split_fractions=(0.7, 0.15, 0.15)
    )


def _shard_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("data/*/*.parquet"))
    }


def _rows(out: Path, tmp_path: Path) -> dict[str, datasets.Dataset]:
    return datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))


def test_shards_load_offline_with_every_field(built, corpus, tmp_path):
    out, report = built
    ds = _rows(out, tmp_path)
    assert set(ds) == {"train", "validation", "test"}
    listed = sum(1 for _ in csv.DictReader((corpus / "metadata.csv").open()))
    assert sum(len(ds[s]) for s in ds) == report["kept"] == listed - 2
    for split in ds:
        assert ds[split].features == FEATURES
        assert len(ds[split]) == sum(report["rows"][split].values())
    row = ds["train"][0]
    assert set(row) == set(FEATURES)
    assert row["image"].size == (128, 128)
    # landmarks are the FFHQ template at 128 px (shared README)
    assert row["landmarks"][0] == pytest.approx([48.25, 59.99], abs=0.02)
    assert row["landmarks"][4] == pytest.approx([78.27, 92.79], abs=0.02)
    train = ds["train"].remove_columns("image")
    assert all(r["native_resolution"] >= 64 and r["size"] == 128 for r in train)
    ids = [r["id"] for s in ds for r in ds[s].remove_columns("image")]
    assert len(ids) == len(set(ids))


def test_configs_split_general_and_older(built):
    out, report = built
    older = datasets.load_dataset(str(out), "older", split="train", streaming=True)
    general = datasets.load_dataset(str(out), "general", split="train", streaming=True)
    older_rows = [r for r in older.decode(False)]
    general_rows = [r for r in general.decode(False)]
    assert len(older_rows) == report["rows"]["train"]["older"] > 0
    assert len(general_rows) == report["rows"]["train"]["general"] > 0
    assert all(r["is_older"] and r["age"] >= 50 and r["age_group"] in ("older", "senior") for r in older_rows)
    assert not any(r["is_older"] for r in general_rows)
    assert all(r["age"] is None or r["age"] < 50 for r in general_rows)


def test_no_identity_crosses_splits(built, tmp_path):
    out, report = built
    ds = _rows(out, tmp_path)
    people = {s: set(ds[s]["identity"]) for s in ds}
    assert people["train"] and people["validation"] and people["test"]
    assert not people["train"] & people["validation"]
    assert not people["train"] & people["test"]
    assert not people["validation"] & people["test"]
    assert {s: len(p) for s, p in people.items()} == {s: report["people"][s]["people"] for s in people}


def test_references_are_the_same_persons_other_photos(built, tmp_path):
    out, _ = built
    ds = _rows(out, tmp_path)
    checked = 0
    for split in ds:
        table = ds[split].remove_columns("image")
        identity_of = dict(zip(table["id"], table["identity"]))
        photos: dict[str, set[str]] = {}
        for rid, person in identity_of.items():
            photos.setdefault(person, set()).add(rid)
        for r in table:
            refs = set(r["reference_ids"])
            assert r["id"] not in refs
            assert refs <= photos[r["identity"]]  # same person, same split
            assert r["num_photos"] == len(photos[r["identity"]])
            checked += bool(refs)
    assert checked > 50  # CelebA and LFW people with several photos


def test_bad_files_are_skipped_and_reported(built):
    out, report = built
    assert report["skipped"] == {"corrupt": 2}
    assert report["unlisted_files"] == 1
    card = (out / "README.md").read_text()
    assert '"corrupt": 2' in card


def test_card_metadata(built):
    out, report = built
    text = (out / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert {c["config_name"] for c in meta["configs"]} == {"default", "general", "older"}
    assert set(meta["source_licenses"]) == {"celeba", "lfw", "utkface"}
    assert "non-commercial" in meta["source_licenses"]["celeba"]
    assert meta["psp_gan"]["older_age"] == 50
    info = {c["config_name"]: c for c in meta["dataset_info"]}
    train_n = {s["name"]: s["num_examples"] for s in info["default"]["splits"]}["train"]
    assert train_n == sum(report["rows"]["train"].values())
    assert datasets.Features._from_yaml_list(info["default"]["features"]) == FEATURES


def test_rebuild_is_idempotent_and_interrupted_build_resumes(built, corpus, tmp_path):
    out, _ = built
    reference = _shard_hashes(out)
    assert len(reference) > 6

    # rerun on a finished build: nothing rewritten, same bytes
    again = build_dataset(_like_built(corpus, out))
    assert again["shards_written"] == 0 and again["shards_reused"] == len(reference)
    assert _shard_hashes(out) == reference

    # a fresh build interrupted after two shards, then resumed: same bytes, finished shards not redone
    fresh = tmp_path / "fresh"
    cfg = _like_built(corpus, fresh)
    written: list[str] = []

    def stop_after_two(rel: str) -> None:
        written.append(rel)
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(cfg, on_shard=stop_after_two)
    first_two = {rel: (fresh / rel).stat().st_mtime_ns for rel in written}
    resumed = build_dataset(cfg)
    assert resumed["shards_reused"] == 2 and resumed["shards_written"] == len(reference) - 2
    assert {rel: (fresh / rel).stat().st_mtime_ns for rel in written} == first_two
    assert _shard_hashes(fresh) == reference

    # another seed gives another split
    other = build_dataset(_like_built(corpus, tmp_path / "other", seed=4))
    assert _shard_hashes(tmp_path / "other") != reference
    assert other["kept"] == again["kept"]


def test_images_are_the_input_bytes(built, corpus, tmp_path):
    out, _ = built
    ds = datasets.load_dataset(str(out), split="validation", cache_dir=str(tmp_path / "hf-cache")).cast_column(
        "image", datasets.Image(decode=False)
    )
    names = {r["file_name"]: r for r in csv.DictReader((corpus / "metadata.csv").open())}
    for r in ds.select(range(5)):
        src = corpus / r["image"]["path"]
        assert r["image"]["bytes"] == src.read_bytes()
        assert names[r["image"]["path"]]["id"] == r["id"]
        assert Image.open(io.BytesIO(r["image"]["bytes"])).size == (128, 128)


def test_push_to_hub_uploads_a_dataset_repo_without_build_cache(built):
    out, _ = built
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload", kw))
            return "https://huggingface.co/datasets/me/faces/commit/1"

    url = push_to_hub(out, "me/faces", private=True, api=FakeApi())
    assert url.endswith("/commit/1")
    assert calls[0] == ("create", "me/faces", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls[1][1]
    assert upload["repo_type"] == "dataset" and upload["folder_path"] == str(out)
    assert ".build/*" in upload["ignore_patterns"]
    assert (out / ".build").is_dir()  # the resumable-build state exists locally and is excluded above


def test_parallel_scan_gives_the_same_shards(built, corpus, tmp_path):
    out, _ = built
    report = build_dataset(_like_built(corpus, tmp_path / "par", workers=2))
    assert report["skipped"] == {"corrupt": 2}
    assert _shard_hashes(tmp_path / "par") == _shard_hashes(out)


def test_corpus_split_map_predicts_the_built_splits(faces, tmp_path):
    from psp_hub.data.build.corpus_splits import corpus_split_map
    from psp_hub.data.build.sample_corpus import make_sample_corpus

    src = make_sample_corpus(faces, tmp_path / "input", lfw_single=10, utk_older=10, utk_younger=10)
    out = tmp_path / "dataset"
    build_dataset(BuildConfig(input=src, output=out, seed=5, split_fractions=(0.6, 0.2, 0.2), workers=1))
    ds = _rows(out, tmp_path)
    built = {r["identity"]: split for split in ds for r in ds[split]}
    assert corpus_split_map(src, seed=5, split_fractions=(0.6, 0.2, 0.2)) == built
    assert len(set(built.values())) == 3
    sharp = [r["sharp_px"] for split in ds for r in ds[split]]
    assert all(32 <= s <= 128 for s in sharp) and sorted(sharp)[len(sharp) // 2] >= 100  # corpus faces are sharp at 128


def test_photo_skip_rules_for_ambiguous_and_soft_faces():
    from psp_hub.data.build.builder import _skip_reason
    from psp_hub.data.build.metadata import InputRecord
    from psp_hub.data.build.scan import ScanResult

    cfg = BuildConfig(input=Path("."), min_native_px=160)
    rec = InputRecord("a.jpg", "s:a", "s", extra={"min_sharp_px": 128, "min_native_px": None})

    def res(**kw):
        return ScanResult(
            "a.jpg",
            True,
            **{"size": 256, "native_px": 300, "sharp_px": 200, "det_score": 0.99, "faces_in_photo": 1, **kw},
        )

    assert _skip_reason(rec, res(), cfg, "photos") is None
    assert _skip_reason(rec, res(det_score=0.91, faces_in_photo=2), cfg, "photos") == "ambiguous_face"
    assert _skip_reason(rec, res(det_score=0.91), cfg, "photos") is None  # alone in its photo: kept
    assert _skip_reason(rec, res(sharp_px=120), cfg, "photos") == "soft_face"
    assert _skip_reason(rec, res(native_px=150), cfg, "photos") == "tiny_face"
    own_limit = InputRecord("a.jpg", "s:a", "s", extra={"min_native_px": 256})
    assert _skip_reason(own_limit, res(native_px=250), cfg, "photos") == "tiny_face"  # a source's own limit wins
