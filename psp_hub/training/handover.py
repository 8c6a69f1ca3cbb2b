"""The light state a run hands to its continuation on another machine: the discriminators and the step reached.

A device machine is returned at the end of each session, and its accelerate checkpoint (~300 MB for psp-256 with
the optimizers) cannot come back from it (64 MiB per call). The generator travels as the run's EMA export
(`init_from`); this folder adds what the export lacks, so the next session continues the run instead of restarting
it: the discriminators as one fp16 safetensors file (18.7 MB for psp-256's, so the device script splits it), and
`handover.json` with the step, the step the adversarial warm-up started at, and what a run must match to load it.
Optimizer moments are not handed over: Adam restarts on both players.

`python -m psp_hub.training.make_handover` writes one from an accelerate checkpoint (a machine still holding one), or
a step-only one (no discriminators: they start fresh and the adversarial warm-up starts again at that step).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from psp_hub.common.config import ConfigError
from psp_hub.losses import COMPONENTS

if TYPE_CHECKING:
    from .config import TrainConfig

HANDOVER_FILE = "handover.json"
DISCRIMINATORS_FILE = "discriminators.safetensors"
EXPORT_WEIGHTS = {"pspgan": "model.safetensors", "prior": "prior_ema.safetensors"}  # what init_from loads


@dataclass
class Handover:
    """What `handover.json` records. `signature`: what the discriminators were built with (must equal the run's);
    `adversarial_from`: where the adversarial warm-up started; `components_trained`: whether the eye/mouth
    discriminators ever trained; `export_sha256`: the export written with it, which init_from must be."""

    step: int
    signature: dict
    has_discriminators: bool
    adversarial_from: int = 0
    components_trained: bool = False
    export_sha256: str | None = None


def discriminator_names(stage: str) -> list[str]:
    """The stage's discriminators in the order it prepares them (after the generator)."""
    return ["global_d", *COMPONENTS] if stage == "pspgan" else ["global_d"]


def adversarial_origin(h: Handover | None) -> int:
    """The step at which the discriminators a run starts with began learning (its warm-up's start)."""
    if h is None:
        return 0
    return h.adversarial_from if h.has_discriminators else h.step


def components_trained(cfg: TrainConfig, step: int, previous: Handover | None) -> bool:
    """Whether the eye/mouth discriminators of a run that reached `step` have ever trained."""
    w, origin = cfg.losses, adversarial_origin(previous)
    before = previous is not None and previous.has_discriminators and previous.components_trained
    now = cfg.stage == "pspgan" and (w.component_gan > 0 or w.component_style > 0)
    return before or (now and step > max(w.component_from, origin))


def signature(cfg: TrainConfig) -> dict:
    """The settings that shape the discriminators' tensors."""
    sig = {"stage": cfg.stage, "out_size": cfg.model.out_size, "d_narrow": cfg.d_narrow}
    if cfg.stage == "pspgan":
        sig["component_d_channels"] = cfg.component_d_channels
    else:
        sig["channel_multiplier"] = cfg.model.channel_multiplier
    return sig


def weights_sha256(path: Path) -> str:
    """A digest of a safetensors file's tensors rounded to fp16 (by name): an export and its fp16 copy (how a 256 px
    export travels to the device beside its hand-over, 27 + 19 MB inside one call's 64 MiB) digest alike."""
    digest = hashlib.sha256()
    state = load_file(str(path))
    for name in sorted(state):
        t = state[name]
        t = t.half() if t.is_floating_point() else t
        digest.update(name.encode())
        digest.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _export_digest(export: str | Path | None, stage: str) -> str | None:
    """The digest of an export's weights (a folder, or the weights file itself); None for a Hub id."""
    if export is None:
        return None
    path = Path(export) if Path(export).is_file() else Path(export) / EXPORT_WEIGHTS[stage]
    return weights_sha256(path) if path.is_file() else None


def write_handover(
    folder: str | Path,
    handover: Handover,
    discriminators: dict[str, dict[str, torch.Tensor]] | None,
    export: str | Path | None = None,
) -> Path:
    """Write `discriminators` ({name: state dict}, stored fp16) and handover.json (last: it marks the folder done);
    with `export`, record its weights' digest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HANDOVER_FILE).unlink(missing_ok=True)
    if discriminators:
        flat = {
            f"{name}.{key}": (t.detach().half() if t.is_floating_point() else t.detach()).cpu().contiguous()
            for name, state in discriminators.items()
            for key, t in state.items()
        }
        save_file(flat, str(folder / DISCRIMINATORS_FILE))
    else:
        (folder / DISCRIMINATORS_FILE).unlink(missing_ok=True)
    handover.has_discriminators = bool(discriminators)
    handover.export_sha256 = _export_digest(export, handover.signature["stage"]) or handover.export_sha256
    tmp = folder / f".{HANDOVER_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(handover), indent=2) + "\n")
    os.replace(tmp, folder / HANDOVER_FILE)
    return folder


def read_handover(folder: str | Path) -> Handover:
    path = Path(folder) / HANDOVER_FILE
    if not path.is_file():
        raise ConfigError(f"continue_from {folder}: no {HANDOVER_FILE} (an export writes one when handover_dir is set)")
    return Handover(**json.loads(path.read_text()))


def check_handover(cfg: TrainConfig) -> Handover:
    """The hand-over `cfg.continue_from` names, refused in one line where it cannot continue this run."""
    h = read_handover(cfg.continue_from)
    want = signature(cfg)
    if h.has_discriminators and h.signature != want:
        differ = sorted(k for k in set(want) | set(h.signature) if want.get(k) != h.signature.get(k))
        raise ConfigError(
            f"continue_from {cfg.continue_from}: its discriminators were built with another config: "
            + ", ".join(f"{k} {h.signature.get(k)!r} (run: {want.get(k)!r})" for k in differ)
        )
    if h.signature.get("stage") != cfg.stage:
        raise ConfigError(f"continue_from {cfg.continue_from}: a hand-over of stage {h.signature.get('stage')!r}")
    if h.step > cfg.max_steps:
        raise ConfigError(f"continue_from {cfg.continue_from}: its step {h.step} is past max_steps {cfg.max_steps}")
    digest = _export_digest(cfg.init_from, cfg.stage) if h.export_sha256 else None
    if digest is not None and digest != h.export_sha256:
        raise ConfigError(
            f"continue_from {cfg.continue_from}: init_from {cfg.init_from} is not the export written with it"
        )
    _check_components(cfg, h)
    return h


def _check_components(cfg: TrainConfig, h: Handover) -> None:
    """Eye/mouth terms at full weight against discriminators that never trained would be a fresh-D start."""
    w = cfg.losses
    wanted = cfg.stage == "pspgan" and (w.component_gan > 0 or w.component_style > 0)
    origin = max(w.component_from, adversarial_origin(h))
    if wanted and h.has_discriminators and not h.components_trained and origin < h.step:
        raise ConfigError(
            f"continue_from {cfg.continue_from}: its eye/mouth discriminators never trained; set "
            f"losses.component_from >= {h.step} so they learn while their terms ramp in"
        )


def load_discriminators(folder: str | Path, modules: dict[str, torch.nn.Module]) -> None:
    """Copy the hand-over's weights into `modules` ({name: discriminator}), refusing any missing or other tensor."""
    flat = load_file(str(Path(folder) / DISCRIMINATORS_FILE))
    extra = sorted({k.split(".", 1)[0] for k in flat} - set(modules))
    if extra:
        raise ConfigError(f"continue_from {folder}: discriminators {extra} are not in this run")
    for name, module in modules.items():
        state = {k[len(name) + 1 :]: v for k, v in flat.items() if k.startswith(name + ".")}
        try:
            module.load_state_dict(state)  # copy_ casts fp16 to the module's dtype
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise ConfigError(f"continue_from {folder}: {name} does not fit: {' '.join(first[1:2] or first)}") from None


def checkpoint_discriminators(ckpt: str | Path, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """The discriminators of an accelerate checkpoint: prepare() order is the generator (model.safetensors), then
    the discriminators in `names` order (model_1.safetensors, ...)."""
    ckpt = Path(ckpt)
    return {name: load_file(str(ckpt / f"model_{i}.safetensors")) for i, name in enumerate(names, start=1)}
