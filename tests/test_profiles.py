"""Person profiles: built from photos with the pipeline, saved as safetensors + JSON, reused without re-encoding."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from psp_hub import PSPGAN, default_model_dir, tiny_config
from psp_hub.common import image_to_tensor
from psp_hub.pipeline import RestorationPipeline
from psp_hub.profiles import PersonProfile, model_fingerprint


def _count_encodes(model):
    """Wrap the model's encode_references so a test can count its calls."""
    calls = []
    original = model.encode_references

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.encode_references = counted
    return calls


@pytest.fixture(scope="module")
def people(samples):
    refs = samples / "references"
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(refs.iterdir())}


@pytest.fixture(scope="module")
def tiny_pipe():
    torch.manual_seed(0)
    return RestorationPipeline(PSPGAN(tiny_config(64)).eval())


@pytest.fixture(scope="module")
def profile(tiny_pipe, people, tmp_path_factory):
    bad = tmp_path_factory.mktemp("refs") / "notes.jpg"
    bad.write_text("not an image")
    a, b = people["celeba_7222"], people["celeba_7256"]
    return PersonProfile.build(tiny_pipe, a[:3] + b[:1] + [bad], name="celeba 7222")


def test_build_keeps_the_agreeing_references_and_says_why_others_were_dropped(profile, people):
    a, b = people["celeba_7222"], people["celeba_7256"]
    assert profile.sources == [p.name for p in a[:3]]
    reasons = {d["reference"]: d["reason"] for d in profile.dropped}
    assert set(reasons) == {b[0].name, "notes.jpg"}
    assert "other references" in reasons[b[0].name] and "not usable" in reasons["notes.jpg"]
    assert profile.crops.shape == (3, 64, 64, 3) and profile.crops.dtype == np.uint8
    assert profile.embeddings.shape[0] == 3 and profile.poses.shape == (3, 2)
    assert profile.cache is not None and profile.cache.mask.shape == (1, 3)


def test_save_load_round_trip_is_exact_and_not_pickle(profile, tiny_pipe, tmp_path):
    path = profile.save(tmp_path / "alice.psp")
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header (8-byte length, then JSON), not a pickle
    calls = _count_encodes(tiny_pipe.model)
    try:
        back = PersonProfile.load(path, tiny_pipe.model)
    finally:
        del tiny_pipe.model.encode_references
    assert calls == [] and back.reencoded is None  # same model: the stored cache is used as is
    assert back.summary() == profile.summary()
    assert np.array_equal(back.crops, profile.crops) and np.array_equal(back.embeddings, profile.embeddings)
    assert np.array_equal(back.poses, profile.poses)
    assert torch.equal(back.cache.mask, profile.cache.mask)
    for r, d in profile.cache.features.items():
        for key, t in d.items():
            assert torch.equal(back.cache.features[r][key], t)
    with pytest.raises(ValueError, match="not a PSP-GAN person profile"):
        from safetensors.numpy import save_file

        save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "other.safetensors"))
        PersonProfile.load(tmp_path / "other.safetensors")


@torch.no_grad()
def test_another_model_re_encodes_from_the_crops(profile, tmp_path):
    path = profile.save(tmp_path / "alice.psp")
    torch.manual_seed(1)
    other = PSPGAN(tiny_config(64)).eval()
    assert model_fingerprint(other) != profile.model_hash
    calls = _count_encodes(other)
    back = PersonProfile.load(path, other)
    assert len(calls) == 1 and "re-encoded" in back.reencoded
    assert back.model_hash == model_fingerprint(other)
    expected = other.encode_references(image_to_tensor(profile.crops)[None])
    for r, d in expected.features.items():
        for key, t in d.items():
            assert torch.allclose(back.cache.features[r][key], t)
    with torch.no_grad():
        other.fusion[str(min(other.config.fusion_resolutions))].q.weight.add_(0.01)  # any weight change
    assert model_fingerprint(other) != back.model_hash


def test_an_album_with_a_profile_encodes_the_references_once(people, tmp_path):
    """The bundled model restores N photos of one person: with a profile the references are prepared and encoded
    once (at build); without, every photo pays for them. Seconds per photo are printed, not asserted."""
    pipe = RestorationPipeline.from_pretrained(str(default_model_dir()), device="cpu")
    a = people["celeba_7222"]
    album = a[1:5]
    calls = _count_encodes(pipe.model)
    t0 = time.perf_counter()
    profile = PersonProfile.build(pipe, a[:3], name="celeba 7222")
    profile.save(tmp_path / "p.psp")
    refs = PersonProfile.load(tmp_path / "p.psp", pipe.model).reference_set(pipe)
    with_profile = [pipe.restore(photo, refs) for photo in album]
    t_profile = (time.perf_counter() - t0) / len(album)
    assert len(calls) == 1
    for result in with_profile:
        assert result.faces[0].references_used == profile.sources
        assert result.report["reference_encodings_computed"] == 0
    calls.clear()
    t0 = time.perf_counter()
    without = [pipe.restore(photo, a[:3]) for photo in album]
    t_plain = (time.perf_counter() - t0) / len(album)
    assert len(calls) == len(album)
    diff = max(
        np.abs(x.faces[0].restored.astype(int) - y.faces[0].restored.astype(int)).max()
        for x, y in zip(with_profile, without)
    )
    assert diff == 0  # the same references, the same model: the same faces
    print(
        f"album of {len(album)} photos, bundled model on CPU: {t_profile:.2f} s/photo with a profile "
        f"(build + save + load included), {t_plain:.2f} s/photo re-preparing the references for each photo"
    )
