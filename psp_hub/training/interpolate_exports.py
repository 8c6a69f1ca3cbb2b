"""Network interpolation (ESRGAN's `net_interp.py`): an export whose every weight is (1 - alpha) x A + alpha x B.

For two exports of one config that share an ancestor (a fine-tune and the export it started from), it trades one's
detail for the other's fidelity without training, as ESRGAN blends its PSNR-trained and GAN-trained generators.

    python -m psp_hub.training.interpolate_exports A B --alpha 0.5 --out OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from safetensors.torch import load_file, save_file


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) x a + alpha x b for every float tensor (computed in fp32, stored in a's dtype); integer tensors
    must be equal. Raises ValueError where the two are not the same network."""
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ValueError(f"the exports hold different tensors ({len(only)} in one only, e.g. {only[0]!r})")
    out = {}
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            raise ValueError(f"{name}: {tuple(ta.shape)} {ta.dtype} in A, {tuple(tb.shape)} {tb.dtype} in B")
        if ta.is_floating_point():
            out[name] = torch.lerp(ta.float(), tb.float(), alpha).to(ta.dtype)
        elif torch.equal(ta, tb):
            out[name] = ta
        else:
            raise ValueError(f"{name}: integer tensors differ between the exports")
    return out


def describe(a: Path, b: Path, alpha: float) -> str:
    """The interpolation as text ("0.7 x A + 0.3 x B"): the safetensors metadata, README.md and the CLI say it alike."""
    return f"{1 - alpha:g} x {a} + {alpha:g} x {b}"


def interpolate_exports(a: Path, b: Path, alpha: float, out: Path) -> Path:
    """Write OUT (config.json, model.safetensors, README.md) as the interpolation of model folders A and B."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    config_a, config_b = (json.loads((p / CONFIG_NAME).read_text()) for p in (a, b))
    if config_a != config_b:
        differ = sorted(k for k in config_a.keys() | config_b.keys() if config_a.get(k) != config_b.get(k))
        raise ValueError(f"the exports' configs differ in {', '.join(differ)}")
    state = interpolate_state(load_file(a / SAFETENSORS_SINGLE_FILE), load_file(b / SAFETENSORS_SINGLE_FILE), alpha)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(a / CONFIG_NAME, out / CONFIG_NAME)
    recipe = describe(a, b, alpha)
    save_file(state, out / SAFETENSORS_SINGLE_FILE, metadata={"interpolation": recipe})
    (out / "README.md").write_text(
        f"# Network interpolation\n\n{recipe}, written by "
        f"`python -m psp_hub.training.interpolate_exports {a} {b} --alpha {alpha:g} --out {out}`.\n"
    )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="model folder (config.json + model.safetensors): alpha 0")
    p.add_argument("b", type=Path, help="model folder of the same config: alpha 1")
    p.add_argument("--alpha", type=float, required=True, help="B's weight in [0, 1]")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    args = p.parse_args(argv)
    try:
        folder = interpolate_exports(args.a, args.b, args.alpha, args.out)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    print(f"wrote {folder}: {describe(args.a, args.b, args.alpha)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
