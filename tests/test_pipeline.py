"""The photo pipeline on real photos with a tiny untrained 64 px model: faces, paste-back, references, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from psp_hub import PSPGAN, tiny_config
from psp_hub.common.imageio import ImageLoadError, load_image
from psp_hub.face.paste import face_region
from psp_hub.pipeline import (
    ModelLoadError,
    NoFaceError,
    PipelineConfig,
    ResizeUpscaler,
    RestorationPipeline,
    load_restoration_model,
)
from psp_hub.pipeline.background import output_size
from psp_hub.pipeline.model_loading import bundled_model_dir


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return RestorationPipeline(PSPGAN(tiny_config(64)).eval())


@pytest.fixture(scope="module")
def people(samples):
    refs = samples / "references"
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(refs.iterdir())}


@pytest.fixture(scope="module")
def group(samples):
    return samples / "photos" / "whole" / "10045.png"


@pytest.mark.parametrize("upscale", [1.0, 2.0, 2.5])
def test_group_photo_faces_pasted_rest_only_resampled(pipe, group, upscale):
    image = load_image(group)
    result = pipe.restore(group, upscale=upscale)
    h, w = output_size(image.shape, upscale)
    assert result.image.shape == (h, w, 3) and result.image.dtype == np.uint8
    assert result.report["faces_found"] == 3 and len(result.faces) == 3
    background = ResizeUpscaler("lanczos")(image, (h, w))
    touched = np.zeros((h, w), bool)
    for face in result.faces:
        assert face.restored.shape == (64, 64, 3) and face.aligned_input.shape == (64, 64, 3)
        x0, y0, x1, y1 = face_region(face.affine, 64, result.image.shape, (w / image.shape[1], h / image.shape[0]))
        touched[y0:y1, x0:x1] = True
        # the detected box sits inside the pasted region
        bx = face.box * np.array([w / image.shape[1], h / image.shape[0]] * 2)
        assert x0 <= bx[0] and y0 <= bx[1] and bx[2] <= x1 and bx[3] <= y1
        # pasted: the untrained model's detail differs from the photo's (its coarse structure is the photo's own)
        assert np.abs(result.image[y0:y1, x0:x1].astype(int) - background[y0:y1, x0:x1]).mean() > 0.2
    assert touched.mean() < 0.2
    np.testing.assert_array_equal(result.image[~touched], background[~touched])


def test_report_is_complete_and_json_ready(pipe, group):
    import json

    r = pipe.restore(group).report
    json.dumps(r)
    assert r["input_size"] == [783, 1146] and r["output_size"] == [1566, 2292]
    assert {"detect_align", "restore", "paste", "total"} <= set(r["timings_s"])
    assert all(f["mode"] == "blind" and len(f["box"]) == 4 for f in r["faces"])
    assert any("blind restoration" in w for w in r["warnings"])  # no references: said so


def test_face_selection_options(pipe, group):
    image = load_image(group)
    largest = pipe.restore(group, faces="largest", upscale=1)
    assert len(largest.faces) == 1
    only = pipe.restore(group, only_faces=True)
    all_faces = only.faces
    assert largest.faces[0].box.tolist() == max(
        (f.box.tolist() for f in all_faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1])
    )
    centre = pipe.restore(group, faces="center", only_faces=True).faces[0]
    mid = np.array([image.shape[1] / 2, image.shape[0] / 2])
    dists = [np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - mid) for f in all_faces]
    assert np.linalg.norm((centre.box[:2] + centre.box[2:]) / 2 - mid) == pytest.approx(min(dists))
    assert only.image is None and len(only.restored_faces) == 3


def test_references_of_the_person_are_used_and_a_stranger_is_dropped(pipe, people):
    a, b = people["celeba_7222"], people["celeba_7256"]
    refs = pipe.prepare_references(a[:3] + b[:1])
    assert len(refs.usable) == 4
    result = pipe.restore(a[4], refs)
    face = result.faces[0]
    assert face.references_used == [p.name for p in a[:3]]
    shares = result.report["faces"][0]["reference_shares"]  # each used photo's share of the fusion
    assert list(shares) == face.references_used and len(face.reference_shares) == 3
    assert all(v > 0 for v in shares.values()) and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    stranger = next(n for n in face.reference_notes if n["reference"] == b[0].name)
    assert stranger["status"] == "dropped" and "other references" in stranger["reason"]
    assert any(b[0].name in w and "dropped" in w for w in result.warnings)
    assert face.identity_input_vs_references is not None and face.identity_input_vs_references > 0.3
    kept = pipe.restore(a[4], refs, mismatched_references="keep").faces[0]
    assert b[0].name in kept.references_used
    unasked = pipe.restore(a[4], refs, reference_shares=False)  # not measured: the model does no extra work
    assert unasked.faces[0].reference_shares is None and unasked.report["faces"][0]["reference_shares"] is None
    assert np.array_equal(unasked.faces[0].restored, face.restored)


def test_references_of_someone_else_only_give_blind_restoration(pipe, people):
    result = pipe.restore(people["celeba_7256"][3], people["celeba_7222"][:3])
    assert result.faces[0].references_used == [] and result.faces[0].reference_shares is None
    assert result.report["faces"][0]["reference_shares"] is None
    assert any("do not look like face 0" in w for w in result.warnings)


def test_more_references_than_k_picks_the_best_k_and_says_why(pipe, people):
    a = people["celeba_7222"]
    refs = pipe.prepare_references(a[:4] + people["celeba_7399"][:1] + a[:1])  # 6 given, K = 4
    face = pipe.restore(a[4], refs).faces[0]
    assert len(face.references_used) == 4
    statuses = [n["status"] for n in face.reference_notes]
    assert statuses.count("used") == 4 and ("not selected" in statuses or "dropped" in statuses)
    for n in face.reference_notes:
        if n["status"] == "used":
            assert "ranked" in n["reason"]


def test_references_are_encoded_once_for_many_photos(pipe, people):
    a = people["celeba_7222"]
    refs = pipe.prepare_references(a[:3])
    first = pipe.restore(a[3], refs)
    second = pipe.restore(a[4], refs)
    assert first.faces[0].references_used == second.faces[0].references_used == [p.name for p in a[:3]]
    assert first.report["reference_encodings_computed"] == 1 and second.report["reference_encodings_computed"] == 0
    assert refs.encode_count == 1


def test_unusable_references_are_reported_not_fatal(pipe, people, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (90, 120, 90)).save(blank)
    refs = pipe.prepare_references([text, blank, people["celeba_7222"][0]])
    assert [r.usable for r in refs.references] == [False, False, True]
    assert "not an image" in refs.references[0].error and refs.references[1].error == "no face found"
    assert len(refs.warnings) == 2


def test_no_face_is_a_clear_error_or_a_plain_upscale(pipe, tmp_path):
    wall = np.full((240, 320, 3), 140, np.uint8)
    with pytest.raises(NoFaceError, match="No face was found"):
        pipe.restore(wall)
    result = pipe.restore(wall, no_face="upscale", upscale=2)
    assert result.image.shape == (480, 640, 3) and result.faces == []
    assert any("only upscaled" in w for w in result.warnings)


def test_grey_rgba_and_16_bit_photos(pipe, samples):
    rgb = load_image(samples / "photos" / "cropped" / "Adele_crop.png")
    grey = Image.fromarray(rgb).convert("L")
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")
    sixteen = rgb.astype(np.uint16) * 257
    for photo in (grey, rgba, sixteen):
        result = pipe.restore(photo, upscale=1)
        assert result.image.shape == (512, 512, 3) and len(result.faces) == 1


def test_bad_photo_and_huge_photo_are_load_errors(pipe, tmp_path):
    with pytest.raises(ImageLoadError, match="not an image"):
        pipe.restore(b"hello, I am a text file")
    small_cap = RestorationPipeline(pipe.model, detector=pipe.detector, identity=pipe.identity, max_input_pixels=10_000)
    with pytest.raises(ImageLoadError, match="megapixels"):
        small_cap.restore(np.zeros((200, 200, 3), np.uint8))


def test_output_pixel_cap_lowers_the_upscale(pipe, group):
    result = pipe.restore(group, upscale=4, max_output_pixels=2_000_000)
    h, w = result.image.shape[:2]
    assert h * w <= 2_000_000 * 1.01 and result.report["upscale"] < 4
    assert any("upscale lowered" in w for w in result.warnings)


def test_aligned_input_mode(pipe, faces):
    crop = next(iter(sorted(faces.glob("*.webp"))))
    result = pipe.restore(crop, input_is_aligned=True, upscale=1)
    assert len(result.faces) == 1 and result.image.shape == (128, 128, 3)
    with pytest.raises(Exception, match="square"):
        pipe.restore(np.zeros((100, 60, 3), np.uint8), input_is_aligned=True)


def test_config_is_validated():
    with pytest.raises(ValueError, match="faces"):
        PipelineConfig(faces="everyone")
    with pytest.raises(ValueError, match="upscale"):
        PipelineConfig(upscale=100)


def test_model_loading_flags_untrained_and_bad_paths(tmp_path, monkeypatch):
    model = PSPGAN(tiny_config(64))
    model.save_pretrained(tmp_path / "tiny")
    monkeypatch.setenv("PSP_MODEL", str(tmp_path / "tiny"))
    loaded, info = load_restoration_model()
    assert info.out_size == 64 and info.source == str(tmp_path / "tiny")
    assert info.trained is False and "UNTRAINED" in info.message  # its model card says so
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(ModelLoadError, match="config.json"):
        load_restoration_model(tmp_path)
    monkeypatch.delenv("PSP_MODEL")
    _, bundled = load_restoration_model()
    assert bundled.trained is True and bundled.source == str(bundled_model_dir())
    monkeypatch.setattr("psp_hub.pipeline.model_loading.bundled_model_dir", lambda: tmp_path / "missing")
    _, fallback = load_restoration_model()
    assert fallback.trained is False and "UNTRAINED" in fallback.message


def _warped_mask(face, size, shape, scale):
    """Where the pasted face mask is non-zero in the output photo."""
    import cv2

    from psp_hub.face.paste import crop_to_photo, face_mask
    from psp_hub.pipeline.compose import aligned_landmarks

    mask = face_mask(size, aligned_landmarks(face))
    return cv2.warpAffine(mask, crop_to_photo(face.affine, scale), (shape[1], shape[0]), flags=cv2.INTER_LINEAR) > 0


def test_only_the_face_mask_changes_not_the_square_around_it(pipe, group):
    image = load_image(group)
    result = pipe.restore(group, upscale=2)
    background = ResizeUpscaler("lanczos")(image, result.image.shape[:2])
    inside = np.zeros(result.image.shape[:2], bool)
    for face in result.faces:
        inside |= _warped_mask(face, 64, result.image.shape, 2.0)
        x0, y0, x1, y1 = face.region
        corner = (slice(y0, y0 + (y1 - y0) // 6), slice(x0, x0 + (x1 - x0) // 6))
        np.testing.assert_array_equal(result.image[corner], background[corner])  # the square's corner is untouched
        assert face.output.shape == (y1 - y0, x1 - x0, 3)  # the face at full output size
        np.testing.assert_array_equal(face.output, result.image[y0:y1, x0:x1])
    np.testing.assert_array_equal(result.image[~inside], background[~inside])
    assert (result.image[inside] != background[inside]).any()


def test_a_grey_photo_stays_grey(pipe, samples):
    from psp_hub.pipeline.colour import chroma

    rgb = load_image(samples / "photos" / "whole" / "Blake_Lively.jpg")
    grey = Image.fromarray(rgb).convert("L")
    result = pipe.restore(grey, upscale=1)
    assert len(result.faces) == 2
    assert chroma(result.image).max() <= 2.0  # rounding only; the untrained model's faces are colourful noise
    for face in result.faces:
        assert chroma(face.restored).max() <= 2.0


def test_fidelity_blends_toward_the_input_face(pipe, group):
    image = load_image(group)
    background = ResizeUpscaler("lanczos")(image, output_size(image.shape, 2))
    kept = pipe.restore(group, fidelity=1.0).image
    np.testing.assert_array_equal(kept, background)
    full, half = pipe.restore(group, fidelity=0.0).image, pipe.restore(group, fidelity=0.5).image
    d_full = np.abs(full.astype(int) - background).sum()
    d_half = np.abs(half.astype(int) - background).sum()
    assert 0.4 * d_full < d_half < 0.6 * d_full
    with pytest.raises(ValueError, match="fidelity"):
        PipelineConfig(fidelity=1.5)


def test_strength_zero_is_the_blind_restoration(pipe, people):
    a = people["celeba_7222"]
    blind = pipe.restore(a[4])
    zero = pipe.restore(a[4], a[:3], strength=0.0)
    np.testing.assert_array_equal(zero.image, blind.image)
    assert zero.faces[0].references_used == [] and any("strength is 0" in w.lower() for w in zero.warnings)


def test_references_are_optional_and_one_file_is_enough(pipe, people):
    a = people["celeba_7222"]
    for none in (None, [], ()):
        assert pipe.restore(a[4], none).faces[0].references_used == []
    single = pipe.restore(a[4], a[0])
    assert single.report["references_given"] == single.report["references_usable"] == 1
