"""The methods under evaluation: bicubic upsampling and each model at every reference count K, at the eval size."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from psp_hub.models import PSPGAN

from .config import RESIZE_MODE, EvalConfig


def bicubic_baseline(lq: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bicubic upsampling of the low-resolution input (recovered from the loader's resized-back `lq` by area)."""
    size = lq.shape[-1]
    out = []
    for img, s in zip(lq, scale.tolist()):
        low = max(1, round(size / s))
        small = F.interpolate(img[None], size=(low, low), mode="area")
        out.append(F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[0])
    return torch.stack(out).clamp(-1, 1)


@dataclass
class Restorer:
    """A model under evaluation, its row-name prefix, and the evaluation size its outputs are resized to."""

    model: PSPGAN
    prefix: str
    size: int

    def __call__(self, lq, refs, mask, ks, kmax, stand_in) -> dict[str, torch.Tensor]:
        """Restorations at every K (and with another person's references when `stand_in` = (refs, mask) is given).

        The model resizes inputs and references to its own size itself (bilinear, antialiased)."""
        model, p = self.model, self.prefix
        out = {}
        cache = model.encode_references(refs, mask) if kmax > 0 else None
        for k in ks:
            if k == 0:
                out[f"{p}K=0"] = model.restore(lq, None).image
            else:  # each reference is encoded on its own, so fewer of them is the same cache with fewer slots on
                k_mask = mask.clone()
                k_mask[:, k:] = False
                out[f"{p}K={k}"] = model.restore(lq, dataclasses.replace(cache, mask=k_mask)).image
        if stand_in is not None:
            out[f"{p}K={kmax}, other person"] = model(lq, *stand_in).image
        return {name: resize_to(img, self.size) for name, img in out.items()}


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images at `size` px: bicubic up (RESIZE_MODE), area down; unchanged when already there."""
    if images.shape[-1] == size:
        return images
    mode = RESIZE_MODE if size > images.shape[-1] else "area"
    kwargs = {"align_corners": False} if mode == "bicubic" else {}
    return F.interpolate(images.float(), size=(size, size), mode=mode, **kwargs).clamp(-1, 1)


def load_restorers(cfg: EvalConfig, device) -> tuple[list[Restorer], int]:
    """The model (rows K=...) and the optional compare model (rows '<name> (<size> px), K=...'); the eval size."""
    model = PSPGAN.from_pretrained(cfg.model).to(device).eval()
    size = cfg.size or model.config.out_size
    restorers = [Restorer(model, "", size)]
    if cfg.compare_model:
        other = PSPGAN.from_pretrained(cfg.compare_model).to(device).eval()
        restorers.append(Restorer(other, f"{compare_label(cfg.compare_model, other)}, ", size))
    return restorers, size


def compare_label(name: str, model: PSPGAN) -> str:
    """Row prefix of the compare model: its folder or Hub name and its size."""
    return f"{Path(name.rstrip('/')).name} ({model.config.out_size} px)"
