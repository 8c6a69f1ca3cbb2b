"""ONNX export: a tiny seeded PSP-GAN exported with the dynamo exporter runs in onnxruntime like PyTorch.

Every test runs on three models, exported through the CLI from a `save_pretrained` folder: references encoded at the
output size, at half of it (`reference_size`, as the 256 px release recipe's 128 px E_p), and with
`reference_selection` (its shares are the selection's weights; the others' the fusion's attention mass).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from psp_hub import PSPGAN, tiny_config
from psp_hub.models import ReferenceCache
from psp_hub.onnx.backend import OnnxBackend, RawReferences
from psp_hub.onnx.export import OPSET, SHARES_FLAG, SHARES_OUTPUT, ExportedFiles, main, sibling_paths
from psp_hub.pipeline import RestorationPipeline
from psp_hub.profiles import model_fingerprint
from tests.model_helpers import make_live, random_batch, sharpened

# fp32 graphs, same weights: onnxruntime's kernels differ from PyTorch's only in summation order. Measured on the
# tiny 64 px model: images at most 1.6e-6 (2.3e-6 with its references at 32 px, 3.3e-6 with selection); shares 6e-7
# from the attention measure, 1.75e-5 from the selection's weights (its query x 8 makes the softmax steep); the
# bound leaves room for other CPUs' SIMD paths.
MAX_ABS_DIFF = 1e-4
K = 3


VARIANTS = {
    "refs_at_out_size": {},
    "reference_size_32": {"reference_size": 32},
    "selection": {"reference_selection": True},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def model(request):
    torch.manual_seed(0)
    return sharpened(make_live(PSPGAN(tiny_config(64, **VARIANTS[request.param])), seed=1).eval())


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """`python -m psp_hub.export_onnx --refs K --cached` on the model's save_pretrained folder (config.json +
    model.safetensors, the layout training exports)."""
    tmp = tmp_path_factory.mktemp("onnx")
    model.save_pretrained(tmp / "model")
    out = tmp / "tiny.onnx"
    assert main(["--model", str(tmp / "model"), "--out", str(out), "--refs", str(K), "--cached"]) == 0
    return ExportedFiles(out, *sibling_paths(out))


def _diff(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    d = float((a - b).abs().max())
    print(f"{what}: max abs difference onnxruntime vs PyTorch = {d:.2e}")
    return d


def test_files_opset_and_dynamic_batch(model, exported):
    for path in (exported.restore, exported.encoder, exported.cached):
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
        assert not list(path.parent.glob(path.name + ".data")), "weights must be inside the .onnx file"
        first = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.dim_value, f"{path.name}: batch dimension is not dynamic"
        if path != exported.encoder:  # the restore graphs output the shares; their extra work, if any, is gated
            assert [o.name for o in proto.graph.output] == ["image", SHARES_OUTPUT]
            gated = SHARES_FLAG in [i.name for i in proto.graph.input]
            assert gated == (model.selection is None), "selection weights are free; the attention measure is not"
    backend = OnnxBackend(exported.restore)
    assert backend.fingerprint == model_fingerprint(model)  # profiles' caches carry over
    rs = model.config.reference_input_size
    assert backend.config.reference_input_size == rs
    for session in (backend.full, backend.encoder):
        refs = {i.name: i.shape for i in session.get_inputs()}["refs"]
        assert refs[1:] == [K, 3, rs, rs], f"references enter at E_p's size, got {refs}"
    with torch.no_grad():
        cache = model.encode_references(torch.zeros(1, K, 3, rs, rs))
    cached_inputs = {i.name: i.shape[1:] for i in backend.cached.get_inputs()}
    for r, d in cache.features.items():
        for key, t in d.items():
            assert cached_inputs[f"cache_{r}_{key}"] == list(t.shape[1:])


@torch.no_grad()
def test_full_graph_matches_pytorch_at_another_batch_size(model, exported):
    backend = OnnxBackend(exported.restore)
    backend.encoder = backend.cached = None  # only the full graph
    # exported with batch 2: batch 3 checks the dynamic axis; references at 48 px are resized in one step to the
    # graph's reference size, as PyTorch does (resizing to 64 and then 32 differed by 0.0125 at reference_size 32)
    lq, refs = random_batch(48, 3, K, seed=2, lq_size=64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    ref = model(lq, refs, mask, strength=0.6, return_contributions=True)
    got = backend(lq, refs, mask, strength=0.6)
    assert got.contributions is None  # not asked
    assert _diff(got.image, ref.image, "full graph, batch 3") < MAX_ABS_DIFF
    asked = backend(lq, refs, mask, strength=0.6, return_contributions=True)
    assert torch.equal(asked.image, got.image)  # asking changes nothing else
    assert _diff(asked.contributions, ref.contributions, "full graph, shares") < MAX_ABS_DIFF
    assert (ref.contributions[0] - 1 / K).abs().max() > 1e-3  # the shares compared are not uniform
    assert torch.equal(asked.contributions[1:], torch.tensor([[1.0, 0, 0], [0, 0, 0]]))  # one reference, none
    cache = backend.encode_references(refs[:1, :2])  # fewer references than slots: padded and masked
    assert isinstance(cache, RawReferences)
    ref2 = model.restore(lq, model.encode_references(refs[:1, :2])).image
    assert _diff(backend.restore(lq, cache).image, ref2, "full graph, 2 of 3 slots") < MAX_ABS_DIFF
    assert (ref2 - model.restore(lq, None).image).abs().max() > 1e-3  # the references really change the output


@torch.no_grad()
def test_cached_graphs_match_pytorch_and_blind(model, exported):
    backend = OnnxBackend(exported.restore)
    assert backend.encoder is not None and backend.cached is not None
    lq, refs = random_batch(64, 4, K, seed=3, lq_size=32)  # lq at half size: resized like the model does
    cache = backend.encode_references(refs[:1])
    assert isinstance(cache, ReferenceCache) and cache.batch_size == 1
    torch_cache = model.encode_references(refs[:1])
    for r, d in torch_cache.features.items():
        for key, t in d.items():
            assert cache.features[r][key].shape == t.shape
            assert _diff(cache.features[r][key], t, f"cache {r}/{key}") < MAX_ABS_DIFF
    ref = model.restore(lq, torch_cache, return_contributions=True)
    got = backend.restore(lq, cache, return_contributions=True)
    assert _diff(got.image, ref.image, "cached restore, cache broadcast to batch 4") < MAX_ABS_DIFF
    assert _diff(got.contributions, ref.contributions, "cached restore, shares") < MAX_ABS_DIFF
    assert (ref.contributions - 1 / K).abs().max() > 1e-3
    two = backend.restore(lq, backend.encode_references(refs[:1, :2]), return_contributions=True).contributions
    ref_two = model.restore(lq, model.encode_references(refs[:1, :2]), return_contributions=True).contributions
    assert two.shape == (4, K) and ref_two.shape == (4, 2)  # the backend's extra slot is padding
    assert _diff(two[:, :2], ref_two, "cached restore, 2 of 3 slots, shares") < MAX_ABS_DIFF and (two[:, 2] == 0).all()
    blind = model.restore(lq, None, return_contributions=True)
    blind_onnx = backend.restore(lq, None, return_contributions=True)
    assert _diff(blind_onnx.image, blind.image, "blind (all slots masked)") < MAX_ABS_DIFF
    assert blind_onnx.contributions.shape == blind.contributions.shape == (4, 0)


def test_no_reference_export_and_cli(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert main(["--model", str(tmp_path / "m"), "--out", str(tmp_path / "blind.onnx"), "--refs", "0"]) == 0
    assert not any(p.is_file() for p in sibling_paths(tmp_path / "blind.onnx")), "no --cached: one graph"
    backend = OnnxBackend(tmp_path / "blind.onnx")
    assert backend.config.max_references == 0
    lq, _ = random_batch(64, 2, 0, seed=4, lq_size=64)
    with torch.no_grad():
        out = backend.restore(lq, return_contributions=True)
        assert _diff(out.image, model.restore(lq).image, "K=0 graph") < MAX_ABS_DIFF
    assert out.contributions.shape == (2, 0)
    with pytest.raises(ValueError, match="no references"):
        backend.encode_references(torch.zeros(1, 1, 3, 64, 64))


def _assert_same_up_to_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """Two backends' uint8 restored faces (after the pipeline's colour match) differ only where rounding flipped.

    A 1e-6 difference can flip one level of the model's uint8 output; the colour match then scales that pixel's
    chroma by up to MAX_CHROMA_GAIN (2) and rounds again, so one flip can become a few levels there (measured with
    the selection model: one value of 12,288 off by 1 before the colour match, by 2 after it).
    """
    diff = np.abs(a.astype(int) - b.astype(int))
    print(f"restored face: uint8 max abs difference {diff.max()}, {(diff > 0).sum()} of {diff.size} values differ")
    assert diff.max() <= 4 and (diff > 0).mean() < 1e-3


def test_pipeline_runs_on_the_onnx_backend(model, exported, samples):
    people = samples / "references" / "celeba_7222"
    photos = sorted(people.glob("*.jpg"))
    torch_pipe = RestorationPipeline(model)
    onnx_pipe = RestorationPipeline(
        OnnxBackend(exported.restore), detector=torch_pipe.detector, identity=torch_pipe.identity
    )
    refs_t = torch_pipe.prepare_references(photos[:2])
    refs_o = onnx_pipe.prepare_references(photos[:2])
    a = torch_pipe.restore(photos[3], refs_t, strength=0.8)
    b = onnx_pipe.restore(photos[3], refs_o, strength=0.8)
    assert a.faces[0].references_used == b.faces[0].references_used == [p.name for p in photos[:2]]
    _assert_same_up_to_rounding(a.faces[0].restored, b.faces[0].restored)
    assert b.report["reference_encodings_computed"] == 1
    shares = b.faces[0].reference_shares
    assert shares is not None and len(shares) == 2 and abs(sum(shares) - 1) < 1e-5
    assert np.abs(np.subtract(shares, a.faces[0].reference_shares)).max() < MAX_ABS_DIFF
    assert list(b.report["faces"][0]["reference_shares"]) == [p.name for p in photos[:2]]


def test_a_profile_built_with_pytorch_runs_on_onnx_without_re_encoding(model, exported, samples):
    from psp_hub.profiles import PersonProfile

    photos = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))
    torch_pipe = RestorationPipeline(model)
    onnx_pipe = RestorationPipeline(
        OnnxBackend(exported.restore), detector=torch_pipe.detector, identity=torch_pipe.identity
    )
    profile = PersonProfile.build(torch_pipe, photos[:2])
    refs = profile.reference_set(onnx_pipe)
    assert profile.reencoded is None  # the export carries the model's hash
    a = torch_pipe.restore(photos[3], profile.reference_set(torch_pipe)).faces[0]
    b = onnx_pipe.restore(photos[3], refs)
    assert b.report["reference_encodings_computed"] == 0 and b.faces[0].references_used == a.references_used
    _assert_same_up_to_rounding(a.restored, b.faces[0].restored)


def _without_shares(src, dst) -> None:
    """A copy of a restore graph as exported before it had the shares output (no output, no gate, no flag)."""
    proto = onnx.load(str(src))
    graph = proto.graph
    nodes = [n for n in graph.node if not (n.op_type == "If" and SHARES_OUTPUT in n.output)]
    del graph.node[:]
    graph.node.extend(nodes)
    for field, name in ((graph.output, SHARES_OUTPUT), (graph.input, SHARES_FLAG)):
        kept = [v for v in field if v.name != name]
        del field[:]
        field.extend(kept)
    read = {name for n in graph.node for name in n.input}  # the weights only the branch read go too
    weights = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))


@torch.no_grad()
def test_files_exported_before_the_shares_output_still_load(model, exported, tmp_path):
    old = tmp_path / "old.onnx"
    _without_shares(exported.restore, old)
    _without_shares(exported.cached, sibling_paths(old)[1])
    sibling_paths(old)[0].write_bytes(exported.encoder.read_bytes())
    backend, new = OnnxBackend(old), OnnxBackend(exported.restore)
    assert SHARES_OUTPUT not in [o.name for o in backend.full.get_outputs()]
    lq, refs = random_batch(64, 2, K, seed=6, lq_size=64)
    for raw in (False, True):  # the cached graph, then the full one
        if raw:
            backend.encoder = backend.cached = new.encoder = new.cached = None
        out = backend.restore(lq, backend.encode_references(refs[:1]), return_contributions=True)
        assert out.contributions is None  # no shares, no crash
        assert torch.equal(out.image, new.restore(lq, new.encode_references(refs[:1])).image)
