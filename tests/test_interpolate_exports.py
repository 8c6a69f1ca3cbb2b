"""Network interpolation of two exports: the ends are the exports themselves, the middle is their mean, and two
different networks are refused with a one-line error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from psp_hub import PSPGAN, tiny_config
from psp_hub.training.interpolate_exports import main
from tests.model_helpers import make_live, random_batch


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory):
    """Two tiny 64 px models of one config with different weights, saved as model folders."""
    tmp = tmp_path_factory.mktemp("interp")
    models = [make_live(PSPGAN(tiny_config(64)), seed=s).eval() for s in (1, 2)]
    for name, m in zip("ab", models):
        m.save_pretrained(tmp / name)
    return tmp, models


@torch.no_grad()
def test_the_ends_are_the_exports_and_the_middle_is_their_mean(two_exports):
    tmp, (a, b) = two_exports
    for alpha in (0.0, 0.5, 1.0):
        assert main([str(tmp / "a"), str(tmp / "b"), "--alpha", str(alpha), "--out", str(tmp / f"m{alpha}")]) == 0
    sa, sb = (load_file(tmp / n / "model.safetensors") for n in "ab")
    mid = load_file(tmp / "m0.5" / "model.safetensors")
    differing = [k for k in sa if sa[k].is_floating_point() and not torch.equal(sa[k], sb[k])]
    assert len(differing) > 10  # the two models really differ
    for k in differing:
        torch.testing.assert_close(mid[k], (sa[k] + sb[k]) / 2)
    lq, _ = random_batch(64, 2, 0, seed=5, lq_size=64)
    for alpha, model in ((0.0, a), (1.0, b)):
        loaded = PSPGAN.from_pretrained(tmp / f"m{alpha}").eval()
        assert torch.equal(loaded.restore(lq).image, model.restore(lq).image)
    assert "0.5 x" in (tmp / "m0.5" / "README.md").read_text()


def test_different_networks_are_refused_with_one_line(two_exports, tmp_path, capsys):
    tmp, _ = two_exports
    PSPGAN(tiny_config(64, reference_size=32)).save_pretrained(tmp_path / "other")
    with pytest.raises(SystemExit) as e:
        main([str(tmp / "a"), str(tmp_path / "other"), "--alpha", "0.5", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "configs differ in reference_size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp / "a"), str(tmp / "b"), "--alpha", "1.5", "--out", str(tmp_path / "y")])
    assert "alpha must lie in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
