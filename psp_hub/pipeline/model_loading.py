"""The one place that decides which restoration model runs: argument, PSP_MODEL, bundled weights, or untrained."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from psp_hub.pipeline.errors import ModelLoadError

UNTRAINED_WARNING = (
    "No trained PSP-GAN weights were found, so this runs a small UNTRAINED model with random weights: "
    "its faces are noise, not a restoration. Set PSP_MODEL to a trained model (Hub id or folder)."
)


@dataclass
class ModelInfo:
    """Where the model came from and whether its weights are trained; `message` is shown to users."""

    source: str
    trained: bool
    out_size: int
    max_references: int
    device: str
    dtype: str
    num_parameters: int
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if device not in (None, "auto"):
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """Compute dtype for autocast: bfloat16 (or float16) on CUDA, float32 elsewhere."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def bundled_model_dir() -> Path:
    """The repository's default weights folder (Hub layout: config.json + model.safetensors)."""
    from psp_hub.models import default_model_dir

    return default_model_dir()


def _card_says_untrained(folder: Path) -> bool:
    """True when the folder's model card (written by save_pretrained) declares the weights untrained."""
    card = folder / "README.md"
    try:
        return card.is_file() and "status: untrained" in card.read_text(encoding="utf-8", errors="ignore").lower()
    except OSError:
        return False


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def untrained_model(out_size: int = 128, seed: int = 0):
    """A small randomly initialised PSPGAN (deterministic seed) used only when no trained weights exist."""
    from psp_hub.models import PSPGAN, tiny_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PSPGAN(tiny_config(out_size=out_size)).eval()


def _load_requested(requested: str):
    """(model, trained, message) for an explicit Hub id or folder; ModelLoadError when it cannot be loaded."""
    from psp_hub.models import PSPGAN

    try:
        path = Path(requested).expanduser()
        if path.exists() and not path.is_dir():
            raise ModelLoadError(
                f"model {requested!r} is a file; give the folder that holds config.json and model.safetensors"
            )
        if path.is_dir() and not _has_weights(path):
            raise ModelLoadError(f"model folder {requested!r} has no config.json + model.safetensors")
        model = PSPGAN.from_pretrained(str(path) if path.is_dir() else requested)
    except ModelLoadError:
        raise
    except Exception as exc:  # hub, file and state-dict errors all become one message
        raise ModelLoadError(f"cannot load the model {requested!r}: {type(exc).__name__}: {exc}") from exc
    if path.is_dir() and _card_says_untrained(path):
        return (
            model,
            False,
            (
                f"The model in {requested} is marked UNTRAINED in its model card (random weights): "
                "its faces are noise, not a restoration."
            ),
        )
    return model, True, f"PSP-GAN weights from {requested}"


def load_restoration_model(
    id_or_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    allow_untrained: bool = True,
):
    """Load the restoration model -> (model, ModelInfo).

    Order: `id_or_path`, else the PSP_MODEL environment variable, else the bundled `checkpoints/psp-gan-256`,
    else (if `allow_untrained`) a small untrained model, clearly flagged as such in `info.message`.
    A given id or folder that cannot be loaded raises ModelLoadError; it never falls back silently.
    """
    from psp_hub.models import PSPGAN

    dev = pick_device(device)
    requested = str(id_or_path) if id_or_path else os.environ.get("PSP_MODEL") or None
    trained = True
    if requested:
        source = requested
        model, trained, message = _load_requested(requested)
    elif _has_weights(bundled_model_dir()):
        source = str(bundled_model_dir())
        try:
            model = PSPGAN.from_pretrained(source)
        except Exception as exc:
            raise ModelLoadError(f"the bundled weights in {source} cannot be loaded: {exc}") from exc
        message = f"bundled PSP-GAN weights ({bundled_model_dir().name})"
        if _card_says_untrained(bundled_model_dir()):
            trained, message = False, f"The bundled model in {source} is marked UNTRAINED (random weights)."
    elif allow_untrained:
        source, trained = "untrained (random init)", False
        model = untrained_model()
        message = UNTRAINED_WARNING
    else:
        raise ModelLoadError(f"no model given, PSP_MODEL unset, and no bundled weights in {bundled_model_dir()}")
    model = model.eval().to(dev)
    model.requires_grad_(False)
    info = ModelInfo(
        source=source,
        trained=trained,
        out_size=int(model.config.out_size),
        max_references=int(model.config.max_references),
        device=str(dev),
        dtype=str(pick_dtype(dev)).replace("torch.", ""),
        num_parameters=int(sum(p.numel() for p in model.parameters())),
        message=message,
    )
    return model, info
