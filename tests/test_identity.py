"""IdentityEncoder: torch conversion matches onnxruntime, embeddings separate real identities, gradients and modes."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from psp_hub.common import image_to_tensor
from psp_hub.identity import IdentityEncoder, ffhq_to_arcface_matrix, warp_ffhq_to_arcface
from tests.face_data import celeba_people


@pytest.fixture(scope="module")
def encoder(weights):
    return IdentityEncoder.from_onnx(weights / "mobilefacenet_arcface_112.onnx")


@pytest.fixture(scope="module")
def corpus(faces):
    return celeba_people(faces, people=12, per_person=3)


@pytest.fixture(scope="module")
def embeddings(encoder, corpus):
    with torch.no_grad():
        return encoder(image_to_tensor(corpus[0]))


def _arcface_inputs(images: np.ndarray) -> np.ndarray:
    """The reference preprocessing: cv2 warp to the ArcFace template, (x - 127.5) / 128, NCHW float32."""
    m = ffhq_to_arcface_matrix(images.shape[1])
    warped = np.stack(
        [
            cv2.warpAffine(
                im.astype(np.float32), m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            for im in images
        ]
    )
    return ((warped - 127.5) / 128.0).transpose(0, 3, 1, 2).astype(np.float32)


def test_torch_module_matches_onnxruntime_on_real_faces(encoder, corpus, weights):
    inputs = _arcface_inputs(corpus[0][:8])
    session = ort.InferenceSession(str(weights / "mobilefacenet_arcface_112.onnx"), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"input": inputs})[0]
    with torch.no_grad():
        raw = encoder.embed_arcface112(torch.from_numpy(inputs) * (128.0 / 127.5), normalize=False).numpy()
    assert ref.shape == raw.shape == (8, 192)
    assert np.abs(raw - ref).max() < 1e-3 * np.abs(ref).max()


def test_net_compiles_as_one_graph_with_the_same_embeddings(encoder, corpus):
    """The constant-shape Reshapes are static after loading, so the whole net compiles (no graph breaks) and the
    identity loss can be compiled in training; before, dynamo failed on onnx2torch's tensor-built torch.Size."""
    from onnx2torch.node_converters.reshape import OnnxReshape

    assert not any(isinstance(m, OnnxReshape) for m in encoder.net.modules())
    assert sum(node.target is torch.reshape for node in encoder.net.graph.nodes) == 34  # every Reshape of the file
    x = torch.from_numpy(_arcface_inputs(corpus[0][:4])).requires_grad_(True)
    # aot_eager: dynamo's one-graph trace and AOTAutograd's backward, without inductor's code generation, which on a
    # fresh cache and a busy 2-core machine can take minutes; what breaks compile in training is the trace.
    compiled = torch.compile(encoder.net, fullgraph=True, backend="aot_eager")
    eager_out = encoder.net(x)
    compiled_out = compiled(x)
    torch.testing.assert_close(compiled_out, eager_out, atol=1e-4, rtol=1e-4)
    (grad_eager,) = torch.autograd.grad(eager_out.square().sum(), x)
    (grad_compiled,) = torch.autograd.grad(compiled(x).square().sum(), x)
    torch.testing.assert_close(grad_compiled, grad_eager, atol=1e-4, rtol=1e-3)


def test_forward_warp_matches_cv2_plus_onnxruntime(encoder, corpus, embeddings, weights):
    session = ort.InferenceSession(str(weights / "mobilefacenet_arcface_112.onnx"), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"input": _arcface_inputs(corpus[0])})[0]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(embeddings.numpy() - ref).max() < 1e-3


def test_kornia_warp_matches_cv2(corpus):
    image = corpus[0][0]
    ref = cv2.warpAffine(
        image.astype(np.float32),
        ffhq_to_arcface_matrix(128),
        (112, 112),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    ours = warp_ffhq_to_arcface(torch.from_numpy(image).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() < 0.05  # pixel units 0..255


@pytest.mark.parametrize("size", [64, 128, 150, 256])
def test_cached_grid_warp_is_kornias_warp_affine_in_one_operator(size):
    """The warp samples the grid kornia's warp_affine builds from the same matrix (float64 once here, float32 on
    each call there), and dispatches a handful of operators instead of rebuilding it."""
    from kornia.geometry.transform import warp_affine
    from torch.profiler import ProfilerActivity, profile

    from psp_hub.identity.warp import _work_size
    from psp_hub.training.host_profile import cpu_events, host_summary

    torch.manual_seed(0)
    faces = torch.rand(3, 3, size, size) * 2 - 1
    warp_ffhq_to_arcface(faces)  # the first call at a size builds its grid (~50 operators, once)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ours = warp_ffhq_to_arcface(faces)
    work = _work_size(112)
    small = (
        faces if size <= work else torch.nn.functional.interpolate(faces, size=work, mode="bilinear", antialias=True)
    )
    matrix = torch.as_tensor(ffhq_to_arcface_matrix(small.shape[-1], 112), dtype=torch.float32)[None].expand(3, 2, 3)
    want = warp_affine(small, matrix, dsize=(112, 112), mode="bilinear", padding_mode="border", align_corners=True)
    assert ours.shape == (3, 3, 112, 112)
    assert (ours - want).abs().max() < 1e-4
    assert host_summary(cpu_events(prof), steps=1)["eager_ops_per_step"] <= 4  # float, (interpolate,) expand, sample


def test_grid_first_made_under_inference_mode_serves_a_backward_later():
    """The pipeline may build a size's grid inside inference_mode; training's identity loss then saves it for
    backward, which an inference tensor would refuse."""
    from psp_hub.identity.warp import sampling_grid

    sampling_grid.cache_clear()
    with torch.inference_mode():
        warp_ffhq_to_arcface(torch.rand(1, 3, 96, 96))
    faces = torch.rand(2, 3, 96, 96, requires_grad=True)
    warp_ffhq_to_arcface(faces).square().mean().backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0


def test_compiled_warp_is_one_graph_with_constant_geometry():
    """Traced inside a compiled training step (two warps, the fake's and the target's, as in the identity loss), the
    warp is one graph: its numpy similarity fit is a constant to Dynamo, not code it breaks the graph on (15 graphs
    before), and AOTAutograd takes the graph (a grid returned as a constant tensor and used twice failed there)."""
    graphs = []

    def counting_backend(gm, _inputs):
        graphs.append(gm)
        return gm.forward

    def both(fake, real):
        return warp_ffhq_to_arcface(fake).square().mean() + warp_ffhq_to_arcface(real).mean()

    torch._dynamo.reset()
    fake, real = torch.rand(2, 3, 150, 150, requires_grad=True), torch.rand(2, 3, 150, 150)
    want = both(fake, real)
    torch.compile(both, backend=counting_backend)(fake, real)
    assert len(graphs) == 1
    torch._dynamo.reset()
    got = torch.compile(both, backend="aot_eager")(fake, real)
    torch.testing.assert_close(got, want)
    (grad,) = torch.autograd.grad(got, fake)
    torch.testing.assert_close(grad, torch.autograd.grad(want, fake)[0])
    torch._dynamo.reset()


def test_same_identity_scores_higher_than_different(embeddings, corpus):
    labels = corpus[1]
    cos = (embeddings @ embeddings.T).numpy()
    same = labels[:, None] == labels[None]
    off_diag = ~np.eye(len(labels), dtype=bool)
    pos, neg = cos[same & off_diag], cos[~same]
    assert pos.mean() > neg.mean() + 0.3, (pos.mean(), neg.mean())
    assert (pos[:, None] > neg[None]).mean() > 0.9  # ROC AUC


def test_embeddings_unit_norm_and_resolution_invariant(encoder, corpus, embeddings):
    assert embeddings.shape == (36, 192)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(36), atol=1e-5, rtol=0)
    x = image_to_tensor(corpus[0][:4])
    big = torch.nn.functional.interpolate(x, size=512, mode="bicubic", align_corners=False).clamp(-1, 1)
    with torch.no_grad():
        e_big = encoder(big)
    assert (e_big * embeddings[:4]).sum(1).min() > 0.97


def test_gradients_reach_input_but_not_weights(encoder, corpus):
    x = image_to_tensor(corpus[0][:2]).requires_grad_(True)
    encoder.train()  # must be ignored
    assert not encoder.training and not any(m.training for m in encoder.modules())
    (encoder(x) * torch.randn(2, 192)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())


def test_bf16_autocast_close_to_fp32(encoder, corpus, embeddings):
    x = image_to_tensor(corpus[0][:1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        e = encoder(x)
    assert e.dtype == torch.float32
    assert (e * embeddings[:1]).sum(1).min() > 0.95


def test_rejects_non_square_input(encoder):
    with pytest.raises(ValueError):
        encoder(torch.zeros(1, 3, 128, 100))
