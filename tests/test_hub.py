"""Hub packaging: save/load round trip, strict loading, model card, and `from_pretrained("org/name")`
through huggingface_hub's real download path against a loopback endpoint, then from the local HF cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from psp_hub import PSPGAN, StateDictMismatchError, StyleGAN2Generator, load_stylegan2_weights, tiny_config
from tests.fake_hub import FakeHub
from tests.model_helpers import make_live, random_batch


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = make_live(PSPGAN(tiny_config(fusion_direction="input_query"))).eval()
    folder = tmp_path_factory.mktemp("psp-tiny")
    model.save_pretrained(folder)
    return model, folder


def _restore(model):
    lq, refs = random_batch(64, batch=2, k=3, seed=11)
    with torch.no_grad():
        return model(lq, refs).image


def test_save_writes_hub_layout_with_a_rendered_card(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["out_size"] == 64 and config["fusion_direction"] == "input_query"
    card = (folder / "README.md").read_text()
    for needle in [
        "pipeline_tag: image-to-image",
        "library_name: psp-gan",
        "license: other",
        "- lfw",
        "- lpips",
        "Status: untrained",
        "input_query cross-attention",
    ]:
        assert needle in card, needle
    assert set(load_file(folder / "model.safetensors")) == set(model.state_dict())


def test_round_trip_from_a_local_folder_gives_identical_outputs(saved):
    model, folder = saved
    loaded = PSPGAN.from_pretrained(folder)
    assert not loaded.training and loaded.config == model.config
    torch.testing.assert_close(_restore(model), _restore(loaded), rtol=0, atol=0)


def test_strict_loading_names_missing_unexpected_and_misshaped_keys(saved, tmp_path):
    _, folder = saved
    for name in ("config.json", "README.md"):
        (tmp_path / name).write_text((folder / name).read_text())
    sd = load_file(folder / "model.safetensors")
    sd.pop("generator.to_rgb1.bias")
    sd["stray.weight"] = torch.zeros(2)
    sd["latent_head.bias"] = torch.zeros(7)
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(StateDictMismatchError) as err:
        PSPGAN.from_pretrained(tmp_path)
    text = str(err.value)
    assert "missing keys (1):\n    generator.to_rgb1.bias" in text
    assert "unexpected keys (1):\n    stray.weight" in text
    assert "latent_head.bias: checkpoint (7,) vs model" in text


def test_loading_into_a_different_config_fails_readably(saved, tmp_path):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    cfg["max_channels"] = 16
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(StateDictMismatchError, match="shape mismatches"):
        PSPGAN.from_pretrained(tmp_path)


def test_external_stylegan2_prior_loads_with_a_key_check(tmp_path):
    torch.manual_seed(1)
    cfg = tiny_config()
    prior = StyleGAN2Generator(
        cfg.out_size, cfg.style_dim, cfg.n_mlp, cfg.channel_multiplier, cfg.narrow, cfg.max_channels
    )
    path = tmp_path / "prior.pth"
    torch.save({"params_ema": {"stylegan_decoder." + k: v for k, v in prior.state_dict().items()}}, path)
    model = PSPGAN(cfg).load_prior(path)
    for k, v in prior.state_dict().items():
        torch.testing.assert_close(model.generator.state_dict()[k], v)
    bad = {k: v for k, v in prior.state_dict().items() if not k.startswith("to_rgb1")}
    bad["conv1.conv.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError, match="rosinality"):
        load_stylegan2_weights(PSPGAN(cfg).generator, bad)


def test_from_pretrained_hub_id_through_loopback_endpoint_then_offline_cache(saved, tmp_path):
    model, folder = saved
    expected = _restore(model)
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import torch
        from psp_hub import PSPGAN
        from tests.model_helpers import random_batch
        model = PSPGAN.from_pretrained("psp-gan/psp-gan-tiny", cache_dir=r"{tmp_path / "hf-cache"}")
        lq, refs = random_batch(64, batch=2, k=3, seed=11)
        with torch.no_grad():
            out = model(lq, refs).image
        torch.testing.assert_close(out, torch.load(r"{tmp_path / "expected.pt"}"), rtol=0, atol=0)
        print("LOADED", model.config.out_size)
    """)
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "PYTHONPATH": os.getcwd()}
    with FakeHub({"psp-gan/psp-gan-tiny": folder}) as hub:
        env_online = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0"}
        run = subprocess.run(
            [sys.executable, "-c", script], env=env_online, capture_output=True, text=True, timeout=300, check=False
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "LOADED 64" in run.stdout
        fetched = {path for method, path in hub.requests if method == "GET"}
        assert any(p.endswith("/resolve/main/model.safetensors") for p in fetched), hub.requests
        assert any(p.endswith("/resolve/main/config.json") for p in fetched), hub.requests
    # The server is gone: the same id now resolves from the HF cache it filled, offline.
    snapshots = list((tmp_path / "hf-cache").glob("models--psp-gan--psp-gan-tiny/snapshots/*/model.safetensors"))
    assert len(snapshots) == 1
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "LOADED 64" in run.stdout
