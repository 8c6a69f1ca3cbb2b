"""Stop a run whose losses became NaN or infinite before it overwrites good checkpoints with broken weights."""

from __future__ import annotations

import torch


class TrainingDiverged(FloatingPointError):
    """A loss is no longer finite: the run ended without writing a checkpoint, so the newest one is still good."""


def nonfinite_terms(logs: dict, accelerator) -> list[str]:
    """Names of this step's logged terms that are NaN or infinite on any process (every process gets the same list)."""
    names = sorted(logs)
    if not names:
        return []
    values = torch.stack(
        [torch.as_tensor(logs[k], device=accelerator.device).detach().float().reshape(()) for k in names]
    )
    bad = accelerator.reduce((~torch.isfinite(values)).float(), reduction="sum")
    return [k for k, b in zip(names, bad.tolist()) if b > 0]
