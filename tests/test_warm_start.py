"""Growing a PSP-GAN to a larger output from a trained smaller one (training.warm_start.init_pspgan)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from psp_hub.models import PSPGAN, tiny_config
from psp_hub.training.warm_start import init_pspgan


def _saved(tmp_path, out_size: int, seed: int = 0, **config):
    torch.manual_seed(seed)
    model = PSPGAN(tiny_config(out_size, **config))
    for p in model.parameters():  # non-zero everywhere, so a tensor that was not copied shows
        p.data.normal_(0, 0.05)
    model.save_pretrained(tmp_path / f"m{out_size}")
    return model, str(tmp_path / f"m{out_size}")


def test_grown_model_keeps_every_shared_layer_and_starts_as_the_upsampled_smaller_one(tmp_path):
    small, path = _saved(tmp_path, 64)
    big = PSPGAN(tiny_config(128))
    report = init_pspgan(big, path)
    sd_small, sd_big = small.state_dict(), big.state_dict()
    assert not report.shape_mismatch
    assert sd_big["lr_unet.down.1.conv1.weight"].equal(sd_small["lr_unet.down.0.conv1.weight"])
    assert sd_big["generator.style_convs.0.modulated_conv.weight"].equal(
        sd_small["generator.style_convs.0.modulated_conv.weight"]
    )
    head_small, head_big = sd_small["latent_head.weight"], sd_big["latent_head.weight"]
    assert head_big[: head_small.shape[0]].equal(head_small)
    assert head_big[-32:].equal(head_small[-32:])  # the new finest W+ entry copies the old finest
    assert {k for k in report.missing if "stem" in k} == {
        f"{u}.stem.{t}" for u in ("lr_unet", "ref_unet") for t in ("weight", "bias")
    }
    new_rgb = [k for k in report.missing if k.startswith("generator.to_rgbs.") and k.endswith("conv.weight")]
    assert new_rgb and all(not sd_big[k].any() for k in new_rgb)


def test_same_size_loads_whole_and_other_architectures_are_refused(tmp_path):
    small, path = _saved(tmp_path, 64)
    same = PSPGAN(tiny_config(64))
    init_pspgan(same, path)
    assert all(same.state_dict()[k].equal(v) for k, v in small.state_dict().items())
    with pytest.raises(ValueError, match="style_dim"):
        init_pspgan(PSPGAN(tiny_config(64, style_dim=64)), path)
    _, path128 = _saved(tmp_path, 128)
    with pytest.raises(ValueError, match="out_size"):
        init_pspgan(PSPGAN(tiny_config(64)), path128)


def test_grown_decoder_output_equals_the_upsampled_smaller_decoder(tmp_path):
    small, path = _saved(tmp_path, 64)
    big = PSPGAN(tiny_config(128))
    init_pspgan(big, path)
    torch.manual_seed(1)
    z = torch.randn(2, 32)
    with torch.no_grad():
        out_small = small.generator(z, randomize_noise=False, mixing_index=0)
        out_big = big.generator(z, randomize_noise=False, mixing_index=0)
    up = F.interpolate(out_small, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(out_big, up, atol=1e-5)


def test_grown_model_with_the_smaller_reference_size_keeps_the_whole_reference_encoder(tmp_path):
    """reference_size = the source's size: E_p loads whole (no new layer) and encodes references exactly as the
    smaller model did, while E_LR still grows."""
    small, path = _saved(tmp_path, 64)
    big = PSPGAN(tiny_config(128, reference_size=64))
    report = init_pspgan(big, path)
    assert not [k for k in report.missing if k.startswith("ref_unet.")]
    assert {k for k in report.missing if "stem" in k} == {"lr_unet.stem.weight", "lr_unet.stem.bias"}
    refs = torch.rand(2, 2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        cache_big = big.encode_references(refs)
        cache_small = small.encode_references(
            F.interpolate(refs.flatten(0, 1), size=64, mode="bilinear", antialias=True).unflatten(0, (2, 2))
        )
    for r in big.config.fusion_resolutions:
        for key, value in cache_big.features[r].items():
            assert torch.allclose(value, cache_small.features[r][key], atol=1e-6)


def test_reference_size_may_grow_but_never_shrink(tmp_path):
    _, path = _saved(tmp_path, 64)
    grown_refs = PSPGAN(tiny_config(128, reference_size=128))
    assert [k for k in init_pspgan(grown_refs, path).missing if k.startswith("ref_unet.stem")]
    _, path_refs64 = _saved(tmp_path / "r", 128, reference_size=64)
    same = PSPGAN(tiny_config(128, reference_size=64))
    init_pspgan(same, path_refs64)  # the same architecture loads whole
    with pytest.raises(ValueError, match="reference_size"):
        init_pspgan(PSPGAN(tiny_config(128, reference_size=32)), path_refs64)


def test_the_psp256_config_grows_from_the_bundled_model_keeping_its_reference_encoder():
    """The release recipe as the device runs it: train/configs/psp-256.yaml's model from checkpoints/psp-gan-128
    loads every E_p tensor (reference_size 128), and the reference features are the bundled model's."""
    from pathlib import Path

    from psp_hub.training import TrainConfig

    root = Path(__file__).resolve().parents[1]
    cfg = TrainConfig.from_yaml(root / "train" / "configs" / "psp-256.yaml")
    assert cfg.frozen_modules == ("ref_unet",) and cfg.model.reference_size == 128
    big = PSPGAN(cfg.model)
    report = init_pspgan(big, str(root / "checkpoints" / "psp-gan-128"))
    assert not report.shape_mismatch and not [k for k in report.missing if k.startswith("ref_unet.")]
    bundled = PSPGAN.from_pretrained(str(root / "checkpoints" / "psp-gan-128"))
    refs = torch.rand(1, 2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        grown, small = big.encode_references(refs), bundled.encode_references(refs)
    assert torch.equal(grown.features[128]["q"], small.features[128]["q"])
