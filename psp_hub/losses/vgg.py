"""Frozen torchvision VGG feature extractor with named layers (conv1_1 .. relu5_4), loaded from local weights only."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from ..common.frozen import FrozenEval
from ..common.images import signed_to_unit
from ..common.paths import weights_dir

VGG16_FILENAME = "vgg16_imagenet_features_fp16.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def vgg_layer_names(network: str) -> list[str]:
    """Names of the layers of torchvision's `vgg16().features` / `vgg19().features`, in order (basicsr naming)."""
    if network not in _CONVS_PER_BLOCK:
        raise ValueError(f"unknown VGG network {network!r}; choose from {sorted(_CONVS_PER_BLOCK)}")
    names: list[str] = []
    for block, n_convs in enumerate(_CONVS_PER_BLOCK[network], start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def default_vgg_path(network: str) -> Path:
    """The shared VGG-16 features file; VGG-19 weights are not shipped, so there is no default for them."""
    if network != "vgg16":
        raise ValueError(
            f"no shared weights for {network!r}: pass weights_path to a torchvision {network}().features "
            "state dict (.safetensors or .pth)"
        )
    return weights_dir() / VGG16_FILENAME


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A features state dict from .safetensors or a torch file, as fp32, with any `features.` prefix removed."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    return {k.removeprefix("features."): v.float() for k, v in state.items()}


def load_vgg_features(network: str = "vgg16", weights_path: str | Path | None = None) -> nn.Sequential:
    """torchvision `vgg16/vgg19().features` built without download and loaded strictly from a local file."""
    path = Path(weights_path) if weights_path is not None else default_vgg_path(network)
    if not path.is_file():
        raise FileNotFoundError(f"VGG weights not found: {path}")
    features = getattr(torchvision.models, network)(weights=None).features
    features.load_state_dict(_read_state_dict(path), strict=True)
    return features


class VGGFeatureExtractor(FrozenEval):
    """Frozen eval-mode VGG returning a dict of the named layers' outputs; truncated after the deepest one needed."""

    def __init__(
        self,
        layers: list[str] | tuple[str, ...],
        network: str = "vgg16",
        weights_path: str | Path | None = None,
        use_input_norm: bool = True,
        range_norm: bool = True,
    ) -> None:
        super().__init__()
        names = vgg_layer_names(network)
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f"unknown {network} layers {unknown}; valid names look like conv3_3 or relu4_2")
        self.layers = tuple(layers)
        last = max(names.index(name) for name in layers)
        self.names = names[: last + 1]
        self.features = load_vgg_features(network, weights_path)[: last + 1]
        for layer in self.features:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # in-place ReLUs would overwrite the pre-activation `conv*` outputs we return
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of (B, 3, H, W) RGB in [-1, 1] if range_norm else [0, 1]."""
        if self.range_norm:
            x = signed_to_unit(x)
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for name, layer in zip(self.names, self.features):
            x = layer(x)
            if name in self.layers:
                out[name] = x
        return out
