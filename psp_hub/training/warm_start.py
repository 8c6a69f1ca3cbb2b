"""Starting a network from another one's weights where the shapes match (e.g. a 256 px prior from the 128 px one).

A StyleGAN2 of a larger size keeps every layer of the smaller one under the same name and shape (mapping MLP,
constant input, the convolutions and to-RGB layers up to the smaller size) and adds layers for the new scales, so
those load and only the new ones start from scratch. What was loaded and skipped is reported, never silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from psp_hub.models import PSPGAN
from psp_hub.models.prior_loading import PRIOR_FILE, read_state_dict

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


# The U-Nets whose down path is indexed from the input resolution, and the config size their input has
UNET_INPUT_SIZES = {"lr_unet.": "out_size", "ref_unet.": "reference_size"}
NEW_RGB_PREFIX = "generator.to_rgbs."


def grown_sizes(model: PSPGAN, source: PSPGAN) -> dict[str, tuple[int, int]]:
    """The config sizes a grown model may raise, as (model's, source's) effective sizes (null reference_size =
    out_size)."""
    big, small = model.config, source.config
    return {
        "out_size": (big.out_size, small.out_size),
        "reference_size": (big.reference_input_size, small.reference_input_size),
    }


def unet_shifts(model: PSPGAN, source: PSPGAN) -> dict[str, int]:
    """By how many octaves each U-Net's input grew: E_LR with out_size, E_p with the reference size."""
    sizes = grown_sizes(model, source)
    return {prefix: int(math.log2(sizes[key][0] // sizes[key][1])) for prefix, key in UNET_INPUT_SIZES.items()}


def _grown_key(key: str, shifts: dict[str, int]) -> str | None:
    """The source key a larger PSP-GAN's tensor grows from; None where it is new.

    U-Net down blocks are numbered from the input side, so block i+shift of the larger net sees the resolution
    block i of the smaller one saw; where a U-Net's input grew (shift > 0) its stem (RGB at the new input size) and
    first `shift` blocks are new. Everything else (decoder, up path, fusion, SFT) is named by resolution or from the
    low end and keeps its name.
    """
    for prefix, shift in shifts.items():
        if not key.startswith(prefix) or shift == 0:
            continue
        if key.startswith(prefix + "stem."):
            return None
        if key.startswith(prefix + "down."):
            index, rest = key[len(prefix + "down.") :].split(".", 1)
            return f"{prefix}down.{int(index) - shift}.{rest}" if int(index) >= shift else None
    return key


def _grown_latent_head(source: torch.Tensor, target: torch.Tensor, style_dim: int) -> torch.Tensor:
    """The W+ head for more latents: the source's latents first, each new (finer) latent a copy of the last."""
    n_source = source.shape[0] // style_dim
    rows = source.view(n_source, style_dim, *source.shape[1:])
    extra = rows[-1:].expand(target.shape[0] // style_dim - n_source, *rows.shape[1:])
    return torch.cat([rows, extra]).reshape(target.shape)


@torch.no_grad()
def grow_pspgan(model: PSPGAN, source: PSPGAN, label: str) -> WarmStart:
    """Start a larger-output PSP-GAN from a trained smaller one: every layer at a shared resolution keeps its weights.

    The new finest layers (U-Net stems and first down blocks, the decoder's last conv pair, to-RGB, noise and SFT
    at the new size) start fresh; the latent head gains rows for the new W+ entries, copied from the finest one.
    """
    shifts = unet_shifts(model, source)
    source_sd, report = source.state_dict(), WarmStart(label)
    for key, tensor in model.state_dict().items():
        src_key = _grown_key(key, shifts)
        src = source_sd.get(src_key) if src_key else None
        if src is None:
            if key.startswith(NEW_RGB_PREFIX) and key.endswith("modulated_conv.weight"):
                tensor.zero_()  # the new to-RGB adds nothing yet: the grown model starts as the upsampled smaller one
            report.missing.append(key)
        elif key.startswith("latent_head.") and src.shape != tensor.shape:
            tensor.copy_(_grown_latent_head(src, tensor, model.config.style_dim))
            report.loaded.append(key)
        elif src.shape != tensor.shape:
            report.shape_mismatch.append(key)
        else:
            tensor.copy_(src.to(tensor.dtype))
            report.loaded.append(key)
    return report


# options a run may switch on over a trained model that lacks them: they only add zero-initialised tensors, so the
# grown model starts from the trained one's output exactly (tests/test_reference_selection.py)
ADDED_OPTIONS = ("reference_selection",)


def init_pspgan(model: PSPGAN, source: str) -> WarmStart:
    """Initialise `model` from a trained PSP-GAN (Hub id or folder): the same architecture, or one grown in size.

    Any config difference other than a larger `out_size` (and a reference size at least the source's) or an added
    option (ADDED_OPTIONS: its tensors start at zero) is refused:
    weights of another architecture would load partly and silently change what the run trains.
    """
    trained = PSPGAN.from_pretrained(source)
    have, want = trained.config.to_dict(), model.config.to_dict()
    sizes = grown_sizes(model, trained)
    adds = [k for k in ADDED_OPTIONS if want.get(k) and not have.get(k)]
    differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k) and k not in sizes and k not in adds)
    shrinks = [k for k, (big, small) in sizes.items() if big < small]
    if differ or shrinks:
        raise ValueError(
            f"init_from {source}: its config differs from the run's model config in "
            + ", ".join(f"{k} ({have.get(k)!r} vs {want.get(k)!r})" for k in differ + shrinks)
        )
    grows = any(big > small for big, small in sizes.values())
    if grows or adds:
        return grow_pspgan(model, trained, source)
    model.load_state_dict(trained.state_dict())
    return WarmStart(source, loaded=list(model.state_dict()))
