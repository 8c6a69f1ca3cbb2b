"""The older-face schedule: 30 % in the main phase, a higher share in the final 'boost' phase (paper 3.3)."""

from __future__ import annotations

import math

from .config import DataConfig

PHASE_NAMES = ("main", "boost")


def older_fraction_for(cfg: DataConfig, phase: str) -> float:
    """Share of the older stream in a phase."""
    if phase not in PHASE_NAMES:
        raise ValueError(f"phase must be one of {PHASE_NAMES}, got {phase!r}")
    return cfg.older_fraction if phase == "main" else cfg.boost_older_fraction


def boost_start_iteration(cfg: DataConfig, total_iterations: int) -> int:
    """First iteration of the boost phase (e.g. 700k of 800k with boost_start=0.875); the one rule (ceil) for it."""
    return math.ceil(cfg.boost_start * total_iterations)


def phase_at(cfg: DataConfig, iteration: int, total_iterations: int) -> tuple[str, int]:
    """(phase, the iteration at which that phase's stream starts) for a run of `total_iterations`."""
    start = boost_start_iteration(cfg, total_iterations)
    if cfg.boost_start < 1.0 and iteration >= start:
        return "boost", start
    return "main", 0


def phase_position(
    cfg: DataConfig, iteration: int, total_iterations: int, samples_per_iteration: int
) -> tuple[str, int]:
    """(phase, start_sample) for resuming at `iteration`: each phase's stream counts its own samples from 0."""
    phase, start = phase_at(cfg, iteration, total_iterations)
    return phase, (iteration - start) * samples_per_iteration
