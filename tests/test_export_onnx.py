"""ONNX export: a tiny seeded PSP-GAN exported with the dynamo exporter runs in onnxruntime like PyTorch.

Every test runs on two models: references encoded at the output size, and at half of it (`reference_size`, as the
256 px release recipe's 128 px E_p), exported through the CLI from a `save_pretrained` folder.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from psp_hub import PSPGAN, tiny_config
from psp_hub.models import ReferenceCache
from psp_hub.onnx.backend import OnnxBackend, RawReferences
from psp_hub.onnx.export import OPSET, ExportedFiles, main, sibling_paths
from psp_hub.pipeline import RestorationPipeline
from psp_hub.profiles import model_fingerprint
from tests.model_helpers import make_live, random_batch

# fp32 graphs, same weights: onnxruntime's kernels differ from PyTorch's only in summation order
# (measured at most 1.5e-6 on the tiny 64 px model, 2.2e-6 with its references at 32 px); the bound leaves room
# for other CPUs' SIMD paths.
MAX_ABS_DIFF = 1e-4
K = 3


@pytest.fixture(scope="module", params=[None, 32], ids=["refs_at_out_size", "reference_size_32"])
def model(request):
    torch.manual_seed(0)
    return make_live(PSPGAN(tiny_config(64, reference_size=request.param)), seed=1).eval()


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
    ref = model(lq, refs, mask, strength=0.6).image
    assert _diff(backend(lq, refs, mask, strength=0.6).image, ref, "full graph, batch 3") < MAX_ABS_DIFF
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
    ref = model.restore(lq, torch_cache).image
    assert _diff(backend.restore(lq, cache).image, ref, "cached restore, cache broadcast to batch 4") < MAX_ABS_DIFF
    blind = model.restore(lq, None).image
    assert _diff(backend.restore(lq, None).image, blind, "blind (all slots masked)") < MAX_ABS_DIFF


def test_no_reference_export_and_cli(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert main(["--model", str(tmp_path / "m"), "--out", str(tmp_path / "blind.onnx"), "--refs", "0"]) == 0
    assert not any(p.is_file() for p in sibling_paths(tmp_path / "blind.onnx")), "no --cached: one graph"
    backend = OnnxBackend(tmp_path / "blind.onnx")
    assert backend.config.max_references == 0
    lq, _ = random_batch(64, 2, 0, seed=4, lq_size=64)
    with torch.no_grad():
        assert _diff(backend.restore(lq).image, model.restore(lq).image, "K=0 graph") < MAX_ABS_DIFF
    with pytest.raises(ValueError, match="no references"):
        backend.encode_references(torch.zeros(1, 1, 3, 64, 64))


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
    diff = np.abs(a.faces[0].restored.astype(int) - b.faces[0].restored.astype(int)).max()
    print(f"pipeline restored face, uint8 max abs difference = {diff}")
    assert diff <= 1  # rounding of a 1e-6 difference can flip one level
    assert b.report["reference_encodings_computed"] == 1


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
    assert np.abs(a.restored.astype(int) - b.faces[0].restored.astype(int)).max() <= 1
