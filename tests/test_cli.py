"""`psp-restore` on folders: outputs written, bad files reported and skipped, exit codes, no silent overwrite."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from psp_hub import PSPGAN, tiny_config
from psp_hub.cli import main
from psp_hub.common.imageio import load_image
from tests.model_helpers import make_live


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    PSPGAN(tiny_config(64)).save_pretrained(path)
    return path


@pytest.fixture
def photo_dir(tmp_path, samples):
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(samples / "photos" / "whole" / "Blake_Lively.jpg", d / "blake.jpg")
    shutil.copy(samples / "references" / "celeba_7222" / "010582.jpg", d / "person.jpg")
    (d / "broken.png").write_bytes((samples / "photos" / "whole" / "10045.png").read_bytes()[:5000])  # truncated
    (d / "readme.txt").write_text("not a photo, and not an image suffix: ignored")
    return d


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.err


def test_folder_run_writes_outputs_and_reports_the_bad_file(
    photo_dir, tmp_path, samples, tiny_model, capsys, monkeypatch
):
    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    refs = samples / "references" / "celeba_7222"
    out = tmp_path / "out"
    code, err = run(
        [photo_dir, "--ref", *sorted(refs.glob("*.jpg"))[:3], "--out", out, "--report", "--save-faces", "--quiet"],
        capsys,
    )
    assert code == 1  # one input failed
    assert "broken.png" in err and "corrupt or truncated" in err and "skipped" in err
    assert "Traceback" not in err
    assert "UNTRAINED" in err  # the model card of the test model says untrained: the CLI says so
    assert "done: 2 restored, 1 failed" in err
    for stem, size in [("blake", (464, 700)), ("person", (800, 601))]:
        img = load_image(out / f"{stem}.png")
        assert img.shape[:2] == (size[0] * 2, size[1] * 2)
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["faces_restored"] >= 1
        assert min(p.name for p in (out / f"{stem}_faces").iterdir()) == "face_00.png"
    person = json.loads((out / "person.json").read_text())
    assert person["faces"][0]["references_used"] == ["000131.jpg", "006383.jpg", "008575.jpg"]
    assert not (out / "broken.png").exists() and not (out / "readme.png").exists()


def test_existing_outputs_are_not_overwritten_without_the_flag(photo_dir, tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    (photo_dir / "broken.png").unlink()
    out = tmp_path / "out"
    assert run([photo_dir, "--out", out, "--quiet", "--upscale", "1"], capsys)[0] == 0
    before = (out / "blake.png").stat().st_mtime_ns
    code, err = run([photo_dir, "--out", out, "--quiet", "--upscale", "1"], capsys)
    assert code == 1 and "exists (use --overwrite" in err
    assert (out / "blake.png").stat().st_mtime_ns == before
    code, err = run([photo_dir, "--out", out, "--quiet", "--upscale", "1", "--overwrite"], capsys)
    assert code == 0 and "done: 2 restored, 0 failed" in err and "blind restoration" in err


def test_no_face_only_faces_and_usage_errors(tmp_path, tiny_model, capsys, monkeypatch, samples):
    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(wall)
    code, err = run([wall, "--out", tmp_path / "o1", "--quiet"], capsys)
    assert code == 1 and "No face was found" in err
    code, _ = run([wall, "--out", tmp_path / "o2", "--quiet", "--no-face", "upscale"], capsys)
    assert code == 0 and load_image(tmp_path / "o2" / "wall.png").shape == (240, 320, 3)
    crop = samples / "photos" / "cropped" / "Adele_crop.png"
    code, _ = run([crop, "--out", tmp_path / "o3", "--quiet", "--only-faces"], capsys)
    assert code == 0 and not (tmp_path / "o3" / "Adele_crop.png").exists()
    assert load_image(tmp_path / "o3" / "Adele_crop_faces" / "face_00.png").shape == (64, 64, 3)
    code, err = run([tmp_path / "missing.jpg", "--out", tmp_path / "o4"], capsys)
    assert code == 2 and "no such file" in err
    code, err = run([crop, "--out", tmp_path / "o5", "--model", tmp_path / "nowhere"], capsys)
    assert code == 2 and "cannot load the model" in err
    code, err = run([crop, "--out", tmp_path / "o6", "--upscale", "50"], capsys)
    assert code == 2 and "upscale" in err


def test_console_script_runs(tmp_path, tiny_model, samples):
    exe = Path(sys.executable).with_name("psp-restore")
    crop = samples / "photos" / "cropped" / "Julia_Roberts_crop.png"
    env = {"PSP_MODEL": str(tiny_model), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    proc = subprocess.run(
        [str(exe), str(crop), "--out", str(tmp_path / "o"), "--quiet", "--upscale", "1"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert load_image(tmp_path / "o" / "Julia_Roberts_crop.png").shape == (512, 512, 3)


@pytest.mark.parametrize("form", ["repeated", "list", "mixed"])
def test_every_reference_is_kept_whichever_way_they_are_given(form):
    from psp_hub.cli import build_parser

    refs = ["a.jpg", "b.jpg", "c.jpg"]
    args = {
        "repeated": ["--ref", "a.jpg", "--ref", "b.jpg", "--ref", "c.jpg"],
        "list": ["--ref", *refs],
        "mixed": ["--ref", "a.jpg", "b.jpg", "--ref", "c.jpg"],
    }[form]
    parsed = build_parser().parse_args(["photo.jpg", *args, "--out", "o"])
    assert parsed.ref == refs and parsed.inputs == ["photo.jpg"]


def test_repeated_ref_restores_with_all_three(tmp_path, samples, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    args = [photo, "--out", tmp_path / "o", "--report", "--quiet", "--upscale", "1"]
    for r in refs:
        args += ["--ref", r]
    code, err = run(args, capsys)
    assert code == 0 and "references: 3 usable of 3" in err
    report = json.loads((tmp_path / "o" / "010582.json").read_text())
    assert report["faces"][0]["references_used"] == [r.name for r in refs]


def test_fidelity_large_faces_and_identity_margin_options(tmp_path, samples, tiny_model, capsys, monkeypatch):
    from psp_hub.cli import _config, build_parser

    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    args = build_parser().parse_args(
        ["p.jpg", "--out", "o", "--fidelity", "0.3", "--large-faces", "keep", "--identity-margin", "0.1"]
    )
    cfg = _config(args)
    assert (cfg.fidelity, cfg.large_faces, cfg.identity_margin) == (0.3, "keep", 0.1)
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    code, _ = run([photo, "--out", tmp_path / "o", "--quiet", "--upscale", "1", "--fidelity", "1"], capsys)
    assert code == 0  # fidelity 1 keeps the photo's own face
    assert abs(load_image(tmp_path / "o" / "010582.png").astype(float) - load_image(photo).astype(float)).mean() < 0.5
    code, err = run([photo, "--out", tmp_path / "o2", "--fidelity", "2"], capsys)
    assert code == 2 and "fidelity" in err


# -- person profiles, video, ONNX backend ----------------------------------------------------------


def test_save_a_profile_then_restore_a_folder_with_it(photo_dir, tmp_path, samples, tiny_model, capsys, monkeypatch):
    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    profile = tmp_path / "alice.psp"
    code, err = run(["--save-profile", profile, "--ref", *refs, "--quiet"], capsys)
    assert code == 0 and profile.is_file() and f"profile: saved {profile}" in err
    assert "references: 3 from the profile (000131.jpg, 006383.jpg, 008575.jpg)" in err
    (photo_dir / "broken.png").unlink()
    out = tmp_path / "album"
    code, err = run([photo_dir, "--profile", profile, "--out", out, "--report", "--quiet", "--upscale", "1"], capsys)
    assert code == 0 and "done: 2 restored, 0 failed" in err and "s/photo" in err
    assert "re-encoded" not in err  # same model: the stored cache is used as it is
    person = json.loads((out / "person.json").read_text())
    assert person["faces"][0]["references_used"] == [r.name for r in refs]
    assert person["reference_encodings_computed"] == 0  # the profile paid for the references once
    code, err = run([photo_dir, "--profile", profile, "--ref", refs[0], "--out", out], capsys)
    assert code == 2 and "--profile replaces --ref" in err
    code, err = run(["--save-profile", tmp_path / "x.psp"], capsys)
    assert code == 2 and "--save-profile needs the reference photos" in err
    (tmp_path / "junk.psp").write_bytes(b"not a profile")
    for bad, message in [(tmp_path / "junk.psp", "is not a PSP-GAN person profile"), (tmp_path / "no.psp", "no such")]:
        code, err = run([photo_dir, "--profile", bad, "--out", tmp_path / "o", "--quiet"], capsys)
        assert code == 2 and message in err and "Traceback" not in err


def test_a_profile_from_another_model_is_re_encoded(tmp_path, samples, tiny_model, capsys, monkeypatch):
    other = tmp_path / "other"
    torch.manual_seed(1)
    make_live(PSPGAN(tiny_config(64)), seed=5).save_pretrained(other)
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:2]
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    assert run(["--save-profile", tmp_path / "p.psp", "--ref", *refs, "--quiet"], capsys)[0] == 0
    args = [photo, "--profile", tmp_path / "p.psp", "--model", other, "--out", tmp_path / "o", "--quiet"]
    code, err = run(args + ["--upscale", "1"], capsys)
    assert code == 0 and "re-encoded from its crops" in err


def test_a_video_is_restored_with_a_profile(tmp_path, tiny_model, capsys, monkeypatch):
    from psp_hub.pipeline import RestorationPipeline
    from psp_hub.profiles import PersonProfile
    from psp_hub.video import probe
    from tests.test_video import FIXTURES, FRAMES, make_clip

    monkeypatch.setenv("PSP_MODEL", str(tiny_model))
    person = json.loads((FIXTURES / "index.json").read_text())[0]
    clip = make_clip(
        tmp_path / "clip.mp4", np.asarray(Image.open(FIXTURES / f"{person['target']}.webp").convert("RGB"))
    )
    # the fixtures are aligned crops: built with aligned=True as tests/test_video.py does (the CLI detects and
    # re-aligns --ref photos, which measured identity 0.57 to this clip's track, under the gate: restored blind)
    pipe = RestorationPipeline.from_pretrained(str(tiny_model), device="cpu")
    refs = [FIXTURES / f"{r}.webp" for r in person["references"]]
    PersonProfile.build(pipe, refs, name="p", aligned=True).save(tmp_path / "p.psp")
    out = tmp_path / "restored.mp4"
    # --keep-mismatched: this test is about the CLI's wiring, not the identity gate (which scores this clip's
    # 96-136 px face against these references at 0.58, near the calibrated threshold)
    code, err = run([clip, "--profile", tmp_path / "p.psp", "--out", out, "--keep-mismatched", "--quiet"], capsys)
    assert code == 0, err
    assert f"done: {FRAMES} frames, {FRAMES} faces in 1 tracks (1 with the references), audio copied" in err
    assert "frames/s" in err and "re-encoded" not in err
    src, dst = probe(clip), probe(out)
    assert (dst.frames, dst.width, dst.height, dst.has_audio) == (src.frames, src.width, src.height, True)
    code, err = run([clip, "--profile", tmp_path / "p.psp", "--out", out, "--quiet"], capsys)
    assert code == 2 and "exists (use --overwrite" in err
    code, err = run([clip, "--out", tmp_path / "short.mp4", "--max-frames", "10", "--quiet"], capsys)
    assert code == 1 and f"{FRAMES} frames" in err and "limit is 10 frames" in err
    assert not (tmp_path / "short.mp4").exists()
    code, err = run([clip, "--out", tmp_path / "folder"], capsys)
    assert code == 2 and "--out must be a video file" in err


def test_the_onnxruntime_backend_restores_like_pytorch(tmp_path, samples, capsys):
    from psp_hub.onnx.export import export_model

    torch.manual_seed(0)
    model = make_live(PSPGAN(tiny_config(64)), seed=1).eval()
    model.save_pretrained(tmp_path / "m")
    onnx_path = export_model(model, tmp_path / "m.onnx", 3, cached=True).restore
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:2]
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    common = ["--ref", *refs, "--only-faces", "--quiet", "--upscale", "1"]
    code, err = run([photo, "--model", tmp_path / "m", "--out", tmp_path / "pt", *common], capsys)
    assert code == 0, err
    args = [photo, "--backend", "onnxruntime", "--model", onnx_path, "--threads", "1", "--out", tmp_path / "ort"]
    code, err = run(args + common, capsys)
    assert code == 0 and "in onnxruntime (1 threads)" in err and "references: 2 usable of 2" in err
    a, b = (load_image(tmp_path / d / "010582_faces" / "face_00.png").astype(int) for d in ("pt", "ort"))
    assert np.abs(a - b).max() <= 1  # fp32 graphs agree to ~1e-6 (tests/test_export_onnx.py): one level of rounding
    code, err = run([photo, "--backend", "onnxruntime", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "needs --model X.onnx" in err
