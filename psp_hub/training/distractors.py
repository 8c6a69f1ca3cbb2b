"""Distractor references: swap one of a sample's references for another person's, so selection has something to learn.

A training batch gives every sample only its own person's references, so a model that mixes them equally loses
nothing; reference selection (models/selection.py) only learns to prefer the right person when some references are
wrong. With probability `TrainConfig.distractor_references`, a sample with at least two valid references gets one of
them (chosen at random) replaced by a valid reference of another sample of the same batch: of a different identity
where the batch names identities (the streaming loader's `identity`), of a different sample otherwise. The batch
gains a (B, K) bool `distractor` mask, which the selection loss reads (training/objectives.py).
"""

from __future__ import annotations

import numpy as np
import torch

DISTRACTOR_KEY = "distractor"  # (B, K) bool: which reference slots hold another person's photo


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The draws of one training step: a function of (seed, step), so a resumed run draws what an unbroken one did."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), 0x5E1EC7]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state >> 1))


def _other_people(batch: dict, device) -> torch.Tensor:
    """(B, B) bool: which samples may lend sample i a distractor (not itself; not its person when the batch says)."""
    b = batch["ref_mask"].shape[0]
    allowed = ~torch.eye(b, dtype=torch.bool, device=device)
    names = batch.get("identity")
    if isinstance(names, (list, tuple)) and len(names) == b:
        codes = {name: i for i, name in enumerate(dict.fromkeys(names))}
        person = torch.tensor([codes[n] for n in names], device=device)
        allowed &= person[:, None] != person[None, :]
    return allowed


def _random_pick(allowed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of a bool matrix, a uniformly random True column (argmax of masked noise), and whether any."""
    noise = torch.rand(allowed.shape, generator=generator, device=allowed.device)
    return noise.masked_fill(~allowed, -1.0).argmax(dim=1), allowed.any(dim=1)


def add_distractors(batch: dict, probability: float, generator: torch.Generator) -> dict:
    """A copy of `batch` in which some samples have one reference replaced by another person's, plus the mask.

    Samples with fewer than two valid references keep theirs (one of their own must stay), as do samples for which
    the batch holds no one else with a reference. `probability` 0 still adds the (all False) mask. A batch that
    already has its distractor mask is returned as it is (a second pass would relabel the first one's distractors).
    """
    if DISTRACTOR_KEY in batch:
        return batch
    refs, mask = batch["refs"], batch["ref_mask"].to(torch.bool)
    b, k = mask.shape
    device = mask.device
    none = torch.zeros(b, k, dtype=torch.bool, device=device)
    if probability <= 0 or k < 2 or b < 2:
        return {**batch, DISTRACTOR_KEY: none}
    chosen = torch.rand(b, generator=generator, device=device) < probability
    slot, _ = _random_pick(mask, generator)  # which of its own references a sample gives up
    lender, has_lender = _random_pick(_other_people(batch, device) & mask.any(dim=1)[None, :], generator)
    lent_slot, _ = _random_pick(mask, generator)  # which of its references each sample would lend
    swap = chosen & (mask.sum(dim=1) >= 2) & has_lender
    distractor = torch.nn.functional.one_hot(slot, k).to(torch.bool) & swap[:, None]
    lent = refs[lender, lent_slot[lender]]  # (B, 3, S, S)
    out = {**batch, "refs": torch.where(distractor[..., None, None, None], lent[:, None], refs)}
    if "ref_is_augmented" in batch:  # the lent photo is a real one
        out["ref_is_augmented"] = batch["ref_is_augmented"] & ~distractor
    out[DISTRACTOR_KEY] = distractor
    return out


def reference_selection_loss(weights: torch.Tensor, ref_mask: torch.Tensor, distractor: torch.Tensor) -> torch.Tensor:
    """Mean over samples with a distractor of -log(total weight on their own references); 0 when none has one.

    `weights` (B, K) are the model's reference weights (`PSPGANOutput.reference_weights`). The zero case stays
    connected to them, so every step's graph has the same parameters (what DDP expects).
    """
    own = ref_mask.to(torch.bool) & ~distractor
    has = distractor.any(dim=1).to(weights.dtype)
    own_weight = (weights.float() * own).sum(dim=1)
    nll = -own_weight.clamp_min(torch.finfo(torch.float32).tiny).log()
    return (nll * has).sum() / has.sum().clamp_min(1.0)
