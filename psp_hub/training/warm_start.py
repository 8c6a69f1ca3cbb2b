"""Starting a network from another one's weights where the shapes match (e.g. a 256 px prior from the 128 px one).

A StyleGAN2 of a larger size keeps every layer of the smaller one under the same name and shape (mapping MLP,
constant input, the convolutions and to-RGB layers up to the smaller size) and adds layers for the new scales, so
those load and only the new ones start from scratch. What was loaded and skipped is reported, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from psp_hub.models import PSPGAN
from psp_hub.models.prior_loading import read_state_dict

PRIOR_FILE = "prior_ema.safetensors"  # what the prior stage exports (the EMA generator)
PSPGAN_DECODER_PREFIX = "generator."  # PSP-GAN's StyleGAN2 decoder, the prior it was trained from


@dataclass
class WarmStart:
    """Which of the model's tensors came from the source, and which did not (with the reason)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the source
    unused: list[str] = field(default_factory=list)  # in the source, not in the model

    def summary(self) -> str:
        """One line for the run's log."""

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" ... (+{len(keys) - 6})" if len(keys) > 6 else "")

        return (
            f"init_from {self.source}: loaded {len(self.loaded)} tensors; new (not in source) {len(self.missing)}: "
            f"{few(self.missing)}; shape differs {len(self.shape_mismatch)}: {few(self.shape_mismatch)}; "
            f"unused {len(self.unused)}"
        )


def prior_state_dict(source: str) -> dict[str, torch.Tensor]:
    """StyleGAN2 weights from a prior export (folder or file) or from a PSP-GAN (folder or Hub id): its decoder."""
    path = Path(source)
    if path.is_dir() and (path / PRIOR_FILE).is_file():
        return read_state_dict(path / PRIOR_FILE)
    if path.is_file():
        sd = read_state_dict(path)
    else:  # a PSP-GAN, loaded the way the PSP stage's init_from loads one
        sd = PSPGAN.from_pretrained(source).state_dict()
    decoder = {k[len(PSPGAN_DECODER_PREFIX) :]: v for k, v in sd.items() if k.startswith(PSPGAN_DECODER_PREFIX)}
    return decoder or sd


@torch.no_grad()
def load_matching(model: nn.Module, source_sd: dict[str, torch.Tensor], source: str = "(dict)") -> WarmStart:
    """Copy every tensor of `source_sd` whose name and shape match one of `model`'s; report the rest."""
    report = WarmStart(source)
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in source_sd:
            report.missing.append(key)
        elif tuple(source_sd[key].shape) != tuple(tensor.shape):
            report.shape_mismatch.append(key)
        else:
            tensor.copy_(source_sd[key].to(tensor.dtype))
            report.loaded.append(key)
    report.unused = sorted(set(source_sd) - set(own))
    if not report.loaded:
        raise ValueError(f"init_from {source}: no tensor matches the model by name and shape; {report.summary()}")
    return report
