"""A module's output and gradients in fp32, eager and compiled, each measured against fp64 eager on the CPU: which of
the two is right where they differ, and in which module.

The CPU's fp64 kernels are the reference because a GPU's own may share a bug across dtypes: on the H200's torch 2.11
the CUDA backward of `avg_pool2d` with padding over channels-last input (which the discriminator's 1x1-conv matmul
path hands on) put gradients on the wrong pixels in fp32 and fp64 alike, so a CUDA fp64 reference agreed with eager
and blamed the compiled blur (input gradient 1.36 off), which was the right one: emulating the bug on the CPU
predicts 1.34. This runs the discriminator's pieces one by one (each kind of blur, the whole network, the traced R1
that `compile_r1` compiles) and prints each form's relative error ||x - x64|| / ||x64|| for the output, the input's
gradient and the parameters' gradients. A right fp32 result sits near 1e-6.

    python benchmarks/compiled_grads.py [--size 128 --narrow 0.5 --batch 16] [--channels-last] [--mode default]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from psp_hub.discriminators.layers import Blur
from psp_hub.discriminators.stylegan2 import StyleGAN2Discriminator
from psp_hub.losses.gan import r1_penalty_traced


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| in fp64 (0 where both are 0)."""
    value, reference = value.double().cpu(), reference.double().cpu()
    norm = reference.norm()
    return float((value - reference).norm() / norm) if norm > 0 else float((value - reference).norm())


def upstream_like(out: torch.Tensor) -> torch.Tensor:
    """A fixed random upstream gradient of `out`'s shape (the same draw for every form, whatever its dtype and
    device), so every output element's backward path counts."""
    return torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out)


def gradients(fn, module: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """`fn(x)` (a module call, or a penalty of it), and the gradients of sum(fn(x) * upstream) to `x` and to the
    module's parameters (as one vector), in one backward."""
    x = x.detach().requires_grad_(True)
    out = fn(x)
    params = list(module.parameters())
    grads = torch.autograd.grad((out * upstream_like(out)).sum(), [x, *params], allow_unused=True)
    grad_x = torch.zeros_like(x) if grads[0] is None else grads[0]  # R1 (traced) detaches its input
    flat = [g.flatten() for g in grads[1:] if g is not None]
    param_grads = torch.cat(flat) if flat else torch.zeros(0)  # a blur has no parameters
    return {"output": out.detach(), "input_grad": grad_x.detach(), "param_grads": param_grads.detach()}


def compare(name: str, module: torch.nn.Module, x: torch.Tensor, make_fn, compile_options: dict) -> dict:
    """`make_fn(module)` (the function of a module to check) in fp64 eager on the CPU, and in fp32 eager and compiled
    on `x`'s device: each fp32 form's relative errors from the fp64 one."""
    module64 = copy.deepcopy(module).double().cpu()
    reference = gradients(make_fn(module64), module64, x.double().cpu())
    eager = gradients(make_fn(module), module, x)
    torch._dynamo.reset()
    compiled = gradients(torch.compile(make_fn(module), **compile_options), module, x)
    row = {"name": name, "shape": list(x.shape)}
    for form, got in (("eager", eager), ("compiled", compiled)):
        row[form] = {k: relative_error(got[k], reference[k]) for k in reference}
    return row


def blur_kinds(disc: StyleGAN2Discriminator, x: torch.Tensor) -> list[tuple[Blur, torch.Tensor]]:
    """One (blur, its input in the discriminator's forward at `x`) per distinct (pad, stride) of `disc`'s blurs."""
    found: dict[tuple, tuple[Blur, torch.Tensor]] = {}

    def keep_first(blur: Blur, args: tuple) -> None:
        found.setdefault((blur.pad, blur.stride), (blur, args[0].detach()))

    hooks = [m.register_forward_pre_hook(keep_first) for m in disc.modules() if isinstance(m, Blur)]
    with torch.no_grad():
        disc(x)
    for hook in hooks:
        hook.remove()
    return list(found.values())


def run(size: int, narrow: float, batch: int, channels_last: bool, mode: str, backend: str = "inductor") -> list[dict]:
    """Every blur kind, the whole discriminator and its traced R1, each checked by `compare`."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    torch.manual_seed(0)
    disc = StyleGAN2Discriminator(size, channel_multiplier=1, narrow=narrow).to(device)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    if channels_last:
        disc, x = disc.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    options = {"backend": backend} | ({"mode": mode} if backend == "inductor" else {})
    rows = [
        compare(f"blur pad={blur.pad} stride={blur.stride}", blur, inp, lambda m: m, options)
        for blur, inp in blur_kinds(disc, x)
    ]
    rows.append(compare("discriminator", disc, x, lambda m: m, options))
    rows.append(compare("r1 (traced)", disc, x, lambda m: lambda images: r1_penalty_traced(m, images), options))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--narrow", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: a quick CPU check)")
    args = p.parse_args(argv)
    rows = run(args.size, args.narrow, args.batch, args.channels_last, args.mode, args.backend)
    for row in rows:
        cells = "  ".join(f"{form} {k} {row[form][k]:.1e}" for form in ("eager", "compiled") for k in row[form])
        print(f"{row['name']:>28}: {cells}", file=sys.stderr)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(json.dumps({"args": vars(args), "device": device, "torch": torch.__version__, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
