"""PSPGAN on CPU at tiny sizes: shapes, reference handling, gradients, cache equivalence, config checks."""

from __future__ import annotations

import pytest
import torch

from psp_hub import PSPGAN, ConfigError, PSPGANConfig, tiny_config
from psp_hub.models.fusion import CrossAttentionFusion
from tests.model_helpers import make_live, random_batch

DIRECTIONS = ["reference_query", "input_query"]


@pytest.fixture(scope="module", params=DIRECTIONS)
def live_model(request):
    torch.manual_seed(0)
    return make_live(PSPGAN(tiny_config(fusion_direction=request.param))).eval()


@pytest.mark.parametrize("out_size", [64, 128])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_output_shapes_for_sizes_and_reference_counts(out_size, direction):
    torch.manual_seed(0)
    model = PSPGAN(tiny_config(out_size, fusion_direction=direction)).eval()
    cfg = model.config
    for k in (0, 1, 4):  # with the mixed counts below, every count 0..4 occurs
        lq, refs = random_batch(out_size, batch=3, k=k)
        mask = torch.zeros(3, k, dtype=torch.bool)
        for b in range(3):
            mask[b, : max(0, k - b)] = True  # mixed counts in one batch: k, k-1, k-2
        with torch.no_grad():
            out = model(lq, refs, mask, return_unet_images=True)
            plain = model(lq, refs, mask)
        assert out.image.shape == (3, 3, out_size, out_size)
        assert [u.shape for u in out.unet_images] == [(3, 3, r, r) for r in cfg.resolutions[1:]]
        assert out.latents.shape == (3, cfg.num_latent, cfg.style_dim)
        assert torch.isfinite(out.image).all()
        # the RGB heads (the U-Net loss's inputs) are skipped unless asked for, and do not change the image
        assert plain.unet_images == ()
        torch.testing.assert_close(plain.image, out.image)


def test_reference_order_does_not_matter(live_model):
    lq, refs = random_batch(64, batch=2, k=4, seed=1)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a = live_model(lq, refs, mask).image
        b = live_model(lq, refs[:, perm], mask[:, perm]).image
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_references_change_the_result_and_masked_slots_are_ignored(live_model):
    lq, refs = random_batch(64, batch=1, k=3, seed=2)
    other = torch.rand_like(refs) * 2 - 1
    mask = torch.tensor([[True, True, False]])
    with torch.no_grad():
        base = live_model(lq, refs, mask).image
        changed_used = live_model(lq, torch.cat([other[:, :1], refs[:, 1:]], 1), mask).image
        changed_masked = live_model(lq, torch.cat([refs[:, :2], other[:, 2:]], 1), mask).image
    assert (base - changed_used).abs().max() > 1e-3
    torch.testing.assert_close(base, changed_masked)


def test_zero_references_is_blind_restoration(live_model):
    lq, refs = random_batch(64, batch=2, k=2, seed=3)
    with torch.no_grad():
        blind = live_model(lq).image
        empty = live_model(lq, refs[:, :0]).image
        all_masked = live_model(lq, refs, torch.zeros(2, 2, dtype=torch.bool)).image
        zero_strength = live_model(lq, refs, strength=0.0).image
    torch.testing.assert_close(blind, empty)
    torch.testing.assert_close(blind, all_masked)
    torch.testing.assert_close(blind, zero_strength)


def test_cache_path_equals_direct_path_and_broadcasts(live_model):
    lq, refs = random_batch(64, batch=3, k=2, seed=4)
    shared_refs = refs[:1]
    with torch.no_grad():
        direct = live_model(lq, shared_refs.expand(3, -1, -1, -1, -1)).image
        cache = live_model.encode_references(shared_refs)
        cached = live_model.restore(lq, cache).image
        again = live_model.restore(lq, cache).image
    torch.testing.assert_close(direct, cached, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached, again)
    assert cache.batch_size == 1 and int(cache.num_references[0]) == 2


def test_fusion_is_identity_at_init_so_the_prior_starts_intact():
    torch.manual_seed(0)
    model = PSPGAN(tiny_config()).eval()
    lq, refs = random_batch(64, batch=1, k=2, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(model(lq).image, model(lq, refs).image)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_windowed_fusion_matches_a_loop_reference(direction):
    """The windowed attention equals a per-pixel loop over neighbourhoods written the slow, obvious way."""
    torch.manual_seed(0)
    block = CrossAttentionFusion(channels=8, dim=8, heads=2, direction=direction, window=3)
    with torch.no_grad():
        block.out.weight.normal_()
        block.rel_bias.normal_()
    x = torch.randn(1, 8, 5, 5)
    refs = torch.randn(1, 2, 8, 5, 5)
    mask = torch.tensor([[True, True]])
    with torch.no_grad():
        fast = block(x, block.prepare(refs), mask)
        slow = _slow_window_fusion(block, x, refs)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)


def _slow_window_fusion(block, x, refs):
    h, d = block.heads, block.dim // block.heads
    size = x.shape[-1]
    t = block.norm_input(x[0].flatten(1).T)  # (N, C)
    r = block.norm_ref(refs[0].flatten(2).transpose(1, 2))  # (K, N, C)
    out = torch.zeros(size * size, block.dim)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for y in range(size):
        for xx in range(size):
            n = y * size + xx
            neigh = [
                (j, (y + dy) * size + xx + dx)
                for j, (dy, dx) in enumerate(offsets)
                if 0 <= y + dy < size and 0 <= xx + dx < size
            ]
            for head in range(h):
                sl = slice(head * d, (head + 1) * d)
                if block.direction == "input_query":
                    q = block.q(t[n])[sl]
                    keys, vals, bias = [], [], []
                    for kk in range(r.shape[0]):
                        for j, m in neigh:
                            keys.append(block.k(r[kk, m])[sl])
                            vals.append(block.v(r[kk, m])[sl])
                            bias.append(block.rel_bias[head, j])
                    logits = torch.stack(keys) @ q / d**0.5 + torch.stack(bias)
                    out[n, sl] = logits.softmax(0) @ torch.stack(vals)
                else:
                    acc = torch.zeros(d)
                    for kk in range(r.shape[0]):
                        q = block.q(r[kk, n])[sl]
                        keys = torch.stack([block.k(t[m])[sl] for _, m in neigh])
                        vals = torch.stack([block.v(t[m])[sl] for _, m in neigh])
                        bias = torch.stack([block.rel_bias[head, j] for j, _ in neigh])
                        att = (keys @ q / d**0.5 + bias).softmax(0) @ vals
                        acc += att + block.ref_residual(r[kk, n])[sl]
                    out[n, sl] = acc / r.shape[0]
    delta = block.out(out)  # (N, C)
    return x + delta.T.reshape(1, -1, size, size)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"out_size": 100}, "power of two"),
        ({"out_size": 32}, "between 64 and 1024"),
        ({"out_size": 2048}, "between 64 and 1024"),
        ({"out_size": 64, "unet_depth": 9}, "unet_depth"),
        ({"fusion_direction": "sideways"}, "fusion_direction"),
        ({"max_references": 0}, "max_references"),
        ({"fusion_window": 4}, "fusion_window"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(bad, message):
    with pytest.raises(ConfigError, match=message):
        PSPGANConfig(**bad)


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown PSPGANConfig keys: colour"):
        PSPGANConfig.from_dict({"out_size": 64, "colour": "blue"})


def test_too_many_references_and_bad_shapes_are_clear_errors(live_model):
    lq, refs = random_batch(64, batch=1, k=5)
    with pytest.raises(ValueError, match="at most 4"):
        live_model(lq, refs)
    with pytest.raises(ValueError, match=r"lq must be \(B, 3, H, W\)"):
        live_model(lq[0])
    with pytest.raises(ValueError, match="reference cache holds 2 samples"):
        live_model.restore(
            torch.zeros(3, 3, 32, 32), live_model.encode_references(refs[:, :2].expand(2, -1, -1, -1, -1))
        )


def test_full_size_default_config_builds_with_the_papers_depth():
    cfg = PSPGANConfig()
    assert cfg.out_size == 512 and cfg.depth == 7 and cfg.channel_multiplier == 1
    assert cfg.resolutions == [4, 8, 16, 32, 64, 128, 256, 512]
