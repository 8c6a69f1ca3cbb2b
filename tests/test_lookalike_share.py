"""benchmarks/lookalike_share.py pairs each face with the most similar other person's reference and reads the
share the model's reference selection gives the face's own."""

from __future__ import annotations

import numpy as np
import torch

from psp_hub.models import PSPGAN, tiny_config
from tests.benchmark_scripts import load_benchmark

# a face's colour stands for who it shows: person i's target and own reference are COLOURS[i]
COLOURS = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [0.8, 0.3, 0.0], [0.0, 0.0, 0.9]])


class ColourScorer:
    """Embeds a face as its unit-length mean colour, so similarity is known in advance."""

    def embed(self, faces: list[np.ndarray]) -> np.ndarray:
        means = np.stack([f.reshape(-1, 3).mean(0) for f in faces]) + 1.0
        return means / np.linalg.norm(means, axis=1, keepdims=True)


def _batch(identities: list[str]) -> dict:
    faces = COLOURS[:, :, None, None].expand(-1, -1, 16, 16) * 2 - 1
    return {"target": faces, "refs": faces[:, None], "identity": identities}


def test_the_lookalike_is_the_closest_other_person_never_the_same_one():
    bench = load_benchmark("lookalike_share")
    refs = bench.lookalike_refs(_batch(["a", "b", "c", "d"]), ColourScorer())
    assert refs.shape == (4, 2, 3, 16, 16)
    assert torch.equal(refs[:, 0], _batch(["a"] * 4)["refs"][:, 0])  # own first
    picked = [int(np.argmin([(refs[i, 1] - f).abs().sum() for f in _batch(["a"] * 4)["target"]])) for i in range(4)]
    assert picked[0] == 2 and picked[2] == 0  # the two reds pick each other
    same_person = bench.lookalike_refs(_batch(["a", "b", "a", "d"]), ColourScorer())  # 0 and 2 one person
    assert not torch.equal(same_person[0, 1], same_person[2, 0])


def test_own_shares_are_the_selection_weights_of_the_first_reference():
    bench = load_benchmark("lookalike_share")
    torch.manual_seed(0)
    model = PSPGAN(tiny_config(64, reference_selection=True)).eval()
    lq, refs = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 2, 3, 64, 64) * 2 - 1
    shares = bench.own_shares(model, lq, refs)
    both = model(lq, refs, return_contributions=True).contributions
    assert shares.shape == (3,) and np.allclose(shares, both[:, 0].numpy())
    assert np.allclose(both.sum(1).numpy(), 1.0, atol=1e-5) and ((shares > 0) & (shares < 1)).all()
