"""Per-parameter learning rates that give our plain-weight StyleGAN2 the dynamics of StyleGAN2's equalized lr.

StyleGAN2 stores each weight as N(0, 1) and multiplies it by c = lr_mul / sqrt(fan_in) at run time, so an Adam
step of size lr moves the effective weight by lr * c. Our generator keeps the effective weights themselves (the
GFPGAN-clean layout, so public checkpoints load), so the same dynamics need the learning rate lr * c on those
weights. Without it, the first Adam steps move every weight of the 8-layer mapping network and the
undemodulated to-RGB convs by ~lr at once and the output blows up (seen: std 1.3 -> 3000 after one step).
"""

from __future__ import annotations

import math

from torch import nn

from psp_hub.models.stylegan2 import ModulatedConv2d

MAPPING_LR_MUL = 0.01  # StyleGAN2's lr multiplier for the mapping network


def equalized_lr_groups(model: nn.Module, lr: float, module_lr: dict[str, float] | None = None) -> list[dict]:
    """Adam parameter groups: StyleGAN2 weights at lr / sqrt(fan_in) (mapping network x0.01), the rest at lr, and
    every parameter of a submodule named in `module_lr` at that multiple of its rate.

    Only trainable parameters are listed. Works on a bare StyleGAN2 generator or any model that contains one
    (the U-Nets, fusion and SFT layers of PSP-GAN are ordinary layers and keep lr, as in GFPGAN).
    """
    scale: dict[int, float] = {}
    for module in model.modules():
        if isinstance(module, ModulatedConv2d):
            _, _, cin, k, _ = module.weight.shape
            scale[id(module.weight)] = 1 / math.sqrt(cin * k * k)
            scale[id(module.modulation.weight)] = 1 / math.sqrt(module.modulation.in_features)
        mapping = getattr(module, "style_mlp", None)
        if isinstance(mapping, nn.Sequential):
            for layer in mapping.modules():
                if isinstance(layer, nn.Linear):
                    scale[id(layer.weight)] = MAPPING_LR_MUL / math.sqrt(layer.in_features)
                    if layer.bias is not None:
                        scale[id(layer.bias)] = MAPPING_LR_MUL
    for name, mult in (module_lr or {}).items():
        for p in named_submodule(model, name, "optim.module_lr").parameters():
            scale[id(p)] = scale.get(id(p), 1.0) * mult
    groups: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr": lr * s} for s, ps in sorted(groups.items(), reverse=True)]


def named_submodule(model: nn.Module, name: str, setting: str) -> nn.Module:
    """`model.get_submodule(name)`, or a one-line error naming the config `setting` and the model's top level."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise ValueError(f"{setting}: the model has no submodule {name!r} (top level: {children})") from None
