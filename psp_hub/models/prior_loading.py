"""Loading an external StyleGAN2 state dict into our generator, with a key-by-key check.

Accepted: a `.safetensors`, `.pt` or `.pth` file or an in-memory dict, in our layout (= GFPGAN's clean
StyleGAN2 layout), possibly wrapped (`params_ema`, `params`, `g_ema`, `state_dict`, `generator`) or
prefixed (`stylegan_decoder.`, `generator.`, `module.`). Anything else fails with the keys named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .stylegan2 import StyleGAN2Generator

PRIOR_FILE = "prior_ema.safetensors"  # what the prior stage exports (the EMA generator)
PRIOR_CONFIG_FILE = "prior_config.json"  # beside it: the generator's constructor arguments
PRIOR_CONFIG_KEYS = ("out_size", "style_dim", "n_mlp", "channel_multiplier", "narrow", "max_channels")

_WRAPPERS = ("params_ema", "g_ema_state", "params", "state_dict", "generator", "g_ema")
_PREFIXES = ("module.", "stylegan_decoder.", "generator.", "stylegan.")


class StateDictMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists them."""


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file path or dict -> a flat tensor dict (unwrapped from the common checkpoint containers)."""
    if isinstance(source, Mapping):
        sd = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"StyleGAN2 checkpoint not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in _WRAPPERS:
        if key in sd and isinstance(sd[key], Mapping):
            sd = dict(sd[key])
            break
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    if expected & set(sd):
        return sd
    for prefix in _PREFIXES:
        stripped = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if expected & set(stripped):
            return stripped
    return sd


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Raise StateDictMismatchError naming missing, unexpected and wrongly shaped keys, if any."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(sd)
        if tuple(sd[k].shape) != tuple(own[k].shape)
    )
    if not (missing or unexpected or shapes):
        return

    def listing(title: str, items: list[str]) -> str:
        if not items:
            return ""
        more = f"\n    ... and {len(items) - 12} more" if len(items) > 12 else ""
        return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(items[:12]) + more

    hint = ""
    if any(k.startswith(("conv1.conv.", "input.input", "convs.0.conv")) for k in unexpected):
        hint = (
            "\n  These keys look like rosinality/stylegan2-pytorch's layout, which uses blur-based resampling; "
            "convert it to the clean layout first (GFPGAN documents such a conversion)."
        )
    raise StateDictMismatchError(
        f"{what} does not match {type(model).__name__}:"
        + listing("missing keys", missing)
        + listing("unexpected keys", unexpected)
        + listing("shape mismatches", shapes)
        + hint
    )


def load_stylegan2_weights(generator: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a pretrained StyleGAN2 into `generator` strictly; returns the generator."""
    sd = _strip_prefix(read_state_dict(source), set(generator.state_dict()))
    check_state_dict(generator, sd, what=f"StyleGAN2 prior {source if not isinstance(source, Mapping) else '(dict)'}")
    generator.load_state_dict(sd, strict=True)
    return generator


def load_prior_export(folder: str | Path) -> nn.Module:
    """The unconditional StyleGAN2 generator a prior stage exported (its settings and EMA weights), in eval mode."""
    folder = Path(folder)
    config_path = folder / PRIOR_CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"no prior export at {folder}: {PRIOR_CONFIG_FILE} and {PRIOR_FILE} expected")
    settings = json.loads(config_path.read_text())
    generator = StyleGAN2Generator(**{k: settings[k] for k in PRIOR_CONFIG_KEYS})
    return load_stylegan2_weights(generator, folder / PRIOR_FILE).eval()
