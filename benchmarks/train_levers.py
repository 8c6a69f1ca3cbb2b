"""Two rewrites of hot spots in the compiled psp-256 training step, timed against the other form.

The round 8 profile (docs/speed.md, "H200, round 8") put ~43 of 162 GPU-busy ms a step in the windowed fusion's
per-position einsums and ~23 ms in bilinear upsampling's backward (inductor writes `F.interpolate`'s gradient as an
atomic scatter). This script takes the real shapes from one forward of the config's model (batch, channels_last,
bf16 autocast, K references), then times forward + backward of each form, eager and compiled, and prints how far
each candidate's output and gradients are from today's (in fp32, so a wrong rewrite shows as a large difference):

- upsampling: `F.interpolate(x2, bilinear)` (compiled, its gradient is an atomic scatter) against the same with the
  gradient written as a gather (`models/resample.py`), against a one-pixel replicate pad + a depthwise transposed
  convolution with the [1, 3, 3, 1] / 4 taps (its backward is a convolution), and against the same sum written as
  shifted slices and an interleave (its backward is slices inductor fuses; what compiled training uses);
- windowed fusion (`reference_query`): the einsums over unfolded neighbourhoods against nine shifted products
  summed over the head width (no per-position GEMMs); both are the model's (`CrossAttentionFusion`, which uses
  the shifted products on CUDA), pinned here one at a time.

Measured on one H200 (docs/speed.md, "H200: the gather gradient measured"): compiled, `F.interpolate`'s forward +
backward costs twice its eager kernels (31.7 ms at (128, 64, 128, 128)), the gather-form gradient 5.5-6.3x less
(5.0 ms), the slices 2.4 ms (timed then with a contiguous output; the form now keeps channels-last), the transposed
convolution as much as `F.interpolate`. (Round 10's compiled column had run eager code past Dynamo's recompile limit;
each form now compiles afresh.) The shifted products are 5-11x faster compiled, and the whole generator's compiled
forward + backward at batch 32 fell from 121 to 55.5 ms with them.

    python benchmarks/train_levers.py --config train/configs/psp-256.yaml --device cuda
    python benchmarks/train_levers.py --device cuda --shapes 128x64x128x128   # upsampling alone, prior-256's largest
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from torch.nn import functional as F

from psp_hub.models import PSPGAN, layers
from psp_hub.models.fusion import CrossAttentionFusion
from psp_hub.models.resample import interpolate2x, upsample2x_gather_grad, upsample2x_slices
from psp_hub.training import TrainConfig

_TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4.0


def replicate_pad1(x: torch.Tensor) -> torch.Tensor:
    """`F.pad(x, (1, 1, 1, 1), mode="replicate")` as concatenated edges, whose backward is slices (inductor's
    `replication_pad2d_backward` fails its stride check on channels_last inputs, torch 2.14 on CPU)."""
    for dim in (2, 3):
        n = x.shape[dim]
        x = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    return x


def upsample_transposed(x: torch.Tensor) -> torch.Tensor:
    """Replicate pad by one, then a stride-2 depthwise transposed conv with the [1,3,3,1]/4 taps, cropped by 3."""
    c = x.shape[1]
    k = (_TAPS[:, None] * _TAPS[None, :]).to(device=x.device, dtype=x.dtype)
    weight = k.expand(c, 1, 4, 4).contiguous(memory_format=torch.channels_last)
    return F.conv_transpose2d(replicate_pad1(x), weight, stride=2, padding=3, groups=c)


def _fresh_compile(fn):
    """`torch.compile(fn)` after clearing Dynamo's caches: one function compiled for more shapes than its recompile
    limit (8) silently runs eagerly after that, which would time eager code in the compiled column."""
    torch._dynamo.reset()
    return torch.compile(fn, dynamic=False)


def time_ms(step, device: torch.device, iters: int) -> float:
    """Mean ms of `step()` (forward + backward) after three warm-up calls."""
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e3


def capture_shapes(model: PSPGAN, cfg: TrainConfig, device: torch.device) -> tuple[list, dict]:
    """One bf16 forward of the model at the training batch: the x2 upsampling inputs' shapes and each windowed
    fusion's inputs (x, prepared, mask, weights)."""
    shapes, fusion_inputs = [], {}
    original = layers.upsample2x

    def recording(x):
        shapes.append((tuple(x.shape), x.dtype))
        return original(x)

    def keep(name):
        def hook(module, args, kwargs):
            x, prepared, mask, _strength, weights = args
            fusion_inputs[name] = (x.detach(), {k: v.detach() for k, v in prepared.items()}, mask, weights)

        return hook

    handles = [
        m.register_forward_pre_hook(keep(n), with_kwargs=True) for n, m in model.fusion.items() if m.window is not None
    ]
    layers.upsample2x = recording
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model(*random_batch(cfg, device))
    finally:
        layers.upsample2x = original
        for h in handles:
            h.remove()
    return sorted(set(shapes), key=lambda s: s[0][1] * s[0][2] * s[0][3]), fusion_inputs


def random_batch(cfg: TrainConfig, device: torch.device):
    b, k, s = cfg.batch_size, cfg.data.max_references, cfg.model.reference_size or cfg.model.out_size
    lq = torch.rand(b, 3, cfg.model.out_size, cfg.model.out_size, device=device) * 2 - 1
    refs = torch.rand(b, k, 3, s, s, device=device) * 2 - 1
    return lq.contiguous(memory_format=torch.channels_last), refs, torch.ones(b, k, dtype=torch.bool, device=device)


UPSAMPLES = {
    "interpolate": interpolate2x,
    "gather-grad": upsample2x_gather_grad,
    "transposed": upsample_transposed,
    "slices": upsample2x_slices,
}
"""`F.interpolate` with its own gradient (a scatter when compiled), the same with the gradient as a gather, and the
two rewrites of the whole upsampling: a transposed convolution, and the slices `layers.upsample2x` uses in compiled
training (channels-last kept)."""


def _relative(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """Largest |a - b| over the largest |b| (at least `floor`): 1e-6 is fp32 rounding, a wrong rewrite is ~1."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(floor)).item()


def _grad_of(fn, x: torch.Tensor, gout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    out = fn(x)
    out.backward(gout)
    return out.detach(), x.grad


def compare_upsample(shape, dtype, device, iters: int) -> None:
    """One upsampling input shape: each form's distance from today's in fp32, then its ms eager and compiled."""
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    gout = torch.randn(shape[0], shape[1], shape[2] * 2, shape[3] * 2, device=device)
    ref_out, ref_grad = _grad_of(UPSAMPLES["interpolate"], x, gout)
    xt, gt = x.to(dtype).requires_grad_(True), gout.to(dtype)
    for name, fn in UPSAMPLES.items():
        try:
            _time_upsample(name, fn, (x, gout, ref_out, ref_grad), (xt, gt), device, iters)
        except Exception as error:  # noqa: BLE001 (a form inductor cannot compile is a result too)
            print(f"| upsample {tuple(shape)} | {name} | failed: {str(error).splitlines()[0][:120]} | | |", flush=True)


def _time_upsample(name, fn, exact, timed, device, iters) -> None:
    """Print one form's largest fp32 difference from today's (output and gradient) and its ms eager and compiled."""
    (x, gout, ref_out, ref_grad), (xt, gt) = exact, timed
    out, grad = _grad_of(fn, x, gout)
    err = max(_relative(out, ref_out), _relative(grad, ref_grad))
    compiled = _fresh_compile(fn)
    eager_ms = time_ms(lambda: fn(xt).backward(gt), device, iters)
    compiled_ms = time_ms(lambda: compiled(xt).backward(gt), device, iters)
    print(f"| upsample {tuple(x.shape)} | {name} | {err:.1e} | {eager_ms:.3f} | {compiled_ms:.3f} |", flush=True)


def _fusion_step(module, inputs, gout):
    x, prepared, mask, weights = inputs
    return lambda: module(x, prepared, mask, 1.0, weights).backward(gout)


def compare_fusion(name: str, module: CrossAttentionFusion, inputs, device, iters: int) -> None:
    """One windowed fusion: the shifted-product form's distance from today's in fp32 (output and every input and
    parameter gradient), then both forms' ms eager and compiled under bf16 autocast."""
    with torch.no_grad():  # a trained model's projection; the zero init would leave q, k and v without gradient
        module.out.weight.normal_(0.0, 0.02)
    x, prepared, mask, weights = inputs
    results = {}
    for form in ("einsum", "shifted"):
        _set_form(module, form)
        module.zero_grad()
        xf = x.float().requires_grad_(True)
        pf = {k: v.float().requires_grad_(True) for k, v in prepared.items()}
        out = module.float()(xf, pf, mask, 1.0, weights)
        out.backward(torch.ones_like(out))
        grads = [xf.grad, *(v.grad for v in pf.values()), *(p.grad for p in module.parameters())]
        results[form] = [out.detach(), *[g if g is not None else torch.zeros(()) for g in grads]]
    # k's bias cannot move a softmax over its own keys: its gradient is 0 up to rounding in both forms, so each
    # tensor is compared relative to at least a millionth of the largest gradient
    floor = 1e-6 * max(t.abs().max().item() for t in results["einsum"])
    err = max(_relative(a, b, floor) for a, b in zip(results["shifted"], results["einsum"]))
    gout = torch.randn_like(x)
    xt = x.detach().requires_grad_(True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for form in ("einsum", "shifted"):
            _set_form(module, form)
            eager_ms = time_ms(_fusion_step(module, (xt, prepared, mask, weights), gout), device, iters)
            compiled = _fresh_compile(module)
            compiled_ms = time_ms(_fusion_step(compiled, (xt, prepared, mask, weights), gout), device, iters)
            print(
                f"| fusion {name} {tuple(x.shape)} | {form} | {err:.1e} | {eager_ms:.3f} | {compiled_ms:.3f} |",
                flush=True,
            )


def _set_form(module: CrossAttentionFusion, form: str) -> None:
    """Pin the windowed fusion to one of its two forms (the model picks by device)."""
    module._per_reference_windowed = (
        module._per_reference_shifted if form == "shifted" else module._per_reference_unfolded
    )


def whole_model_ms(model: PSPGAN, cfg: TrainConfig, device, iters: int, shifted: bool) -> float:
    """The compiled generator's forward + backward on a random training batch, with the windowed fusion's einsums
    or its shifted products (`shifted`)."""
    torch._dynamo.reset()
    for module in model.fusion.values():
        if module.window is not None:
            _set_form(module, "shifted" if shifted else "einsum")
    batch = random_batch(cfg, device)
    compiled = _fresh_compile(model)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = compiled(*batch)
        out.image.float().square().mean().backward()

    return time_ms(step, device, iters)


TABLE_HEAD = (
    "| where | form | largest difference to F.interpolate's, relative (fp32) | eager ms | compiled ms |\n"
    "| --- | --- | --- | --- | --- |"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="train/configs/psp-256.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--whole", action="store_true", help="also the whole generator with each fusion form")
    parser.add_argument(
        "--shapes",
        nargs="+",
        metavar="BxCxHxW",
        help="time only the upsampling, at these input shapes (e.g. prior-256's largest, 128x64x128x128)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. batch_size=4 on a CPU)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.shapes:
        print(f"upsampling only, {args.device}, {args.iters} timed steps each, bf16 channels_last\n{TABLE_HEAD}")
        for text in args.shapes:
            compare_upsample(tuple(int(v) for v in text.split("x")), torch.bfloat16, device, args.iters)
        return
    cfg = TrainConfig.from_yaml(args.config, args.overrides)
    model = PSPGAN(cfg.model).to(device).train()
    shapes, fusion_inputs = capture_shapes(model, cfg, device)
    print(f"{args.config} batch {cfg.batch_size}, {args.device}, {args.iters} timed steps each")
    print(TABLE_HEAD)
    for shape, dtype in shapes:
        compare_upsample(shape, dtype, device, args.iters)
    for name, inputs in fusion_inputs.items():
        compare_fusion(name, model.fusion[name], inputs, device, args.iters)
    if args.whole:
        model = PSPGAN(cfg.model).to(device).train()
        for shifted in (False, True):
            ms = whole_model_ms(model, cfg, device, args.iters, shifted)
            form = "shifted products" if shifted else "einsums"
            print(f"whole generator fwd+bwd, windowed fusion as {form}: {ms:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
