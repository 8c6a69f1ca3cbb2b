"""The evaluation loop: restore the same held-out faces with every method at every level, score them, write the files."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from psp_hub.common.images import downsample
from psp_hub.data import DataConfig, build_eval_dataset, collate_samples

from .config import RESIZE_MODE, EvalConfig
from .grid import grid_columns, save_grid
from .report import markdown_table
from .restorers import Restorer, bicubic_baseline, load_restorers
from .scoring import Scorer, aggregate, grouped


def balanced_subset(ds, max_samples: int | None):
    """At most `max_samples` faces: every older one up to half of them, the rest younger, evenly spread, in stored order.

    The test split is ~8 % older faces; reporting them separately needs more of them than a plain prefix holds.
    """
    if max_samples is None or len(ds) <= max_samples:
        return ds
    older = [i for i, r in enumerate(ds.rows) if r["is_older"]]
    younger = [i for i, r in enumerate(ds.rows) if not r["is_older"]]
    n_old = min(len(older), max_samples // 2)
    pick_old = [older[j] for j in np.linspace(0, len(older) - 1, n_old).round().astype(int)] if n_old else []
    n_young = min(len(younger), max_samples - n_old)
    pick_young = [younger[j] for j in np.linspace(0, len(younger) - 1, n_young).round().astype(int)] if n_young else []
    ds.rows = [ds.rows[i] for i in sorted(set(pick_old) | set(pick_young))]
    return ds


def other_person_index(identities: list[str]) -> torch.Tensor:
    """For each face, a face of someone else, about half the list away (its references stand in for the right ones)."""
    n = len(identities)
    index = []
    for i, who in enumerate(identities):
        j = next(((i + n // 2 + t) % n for t in range(n) if identities[(i + n // 2 + t) % n] != who), None)
        if j is None:
            raise ValueError("the other-person control needs at least two people")
        index.append(j)
    return torch.tensor(index)


def _level_dataset(cfg: EvalConfig, data_cfg: DataConfig, level: str, kmax: int, size: int):
    """The level's test faces whose person has other photos and whose target is sharp at the evaluation size."""
    ds = build_eval_dataset(
        data_cfg,
        cfg.split,
        degradation=level,
        num_references=kmax,
        only_with_references=True,
        min_sharp_px=cfg.sharp_threshold(size),
    )
    if not len(ds):
        raise ValueError(
            f"no {cfg.split} face of {cfg.data} has other photos of its person and sharp_px >= "
            f"{cfg.sharp_threshold(size)} (the rule at {size} px); lower --min-sharp-px or use sharper data"
        )
    return balanced_subset(ds, cfg.max_samples)


def _older_block(restorers, scorer, cfg: EvalConfig, data_cfg: DataConfig, level: str, size: int, device):
    """Older faces without other photos (K=0 only), or None when the split has none."""
    old_ds = build_eval_dataset(
        data_cfg, cfg.split, degradation=level, num_references=0, min_sharp_px=cfg.sharp_threshold(size)
    )
    old_ds.rows = [r for r in old_ds.rows if r["is_older"] and not r["reference_ids"]]
    if not old_ds.rows:
        return None
    old_ds = balanced_subset(old_ds, cfg.max_samples)
    old_scores, _, _, _ = _run(restorers, scorer, old_ds, (0,), 0, cfg, device)
    return {
        "samples": len(old_ds),
        "methods": {n: {"older": aggregate(bm, np.ones(len(old_ds), bool))} for n, bm in old_scores.items()},
    }


def evaluate(cfg: EvalConfig) -> dict:
    """Restore and score the test faces at every level; write results.json, results.md and grid.png."""
    device = torch.device(cfg.device)
    restorers, size = load_restorers(cfg, device)
    kmax = max(cfg.refs)
    data_cfg = DataConfig(path=cfg.data, out_size=size, max_references=kmax, num_workers=0)
    scorer = Scorer(device)
    results: dict = {"model": cfg.model, "data": cfg.data, "split": cfg.split, **_setup(cfg, restorers, size)}
    results["levels"] = {}
    grids = {}
    t0 = time.time()
    for level in cfg.levels:
        ds = _level_dataset(cfg, data_cfg, level, kmax, size)
        scores, older, refs_available, grids[level] = _run(restorers, scorer, ds, cfg.refs, kmax, cfg, device)
        level_result = {
            "samples": len(ds),
            "older": int(np.sum(older)),
            f"mean_refs_for_K={kmax}": float(np.mean(refs_available)),
            "methods": {name: grouped(bm, np.array(older, dtype=bool)) for name, bm in scores.items()},
        }
        # older faces: in the 128 px corpus they come from a source with one photo per person, so only K=0 applies
        blind = _older_block(restorers, scorer, cfg, data_cfg, level, size, device)
        if blind:
            level_result["older_without_references"] = blind
        results["levels"][level] = level_result
    results["seconds"] = round(time.time() - t0, 1)
    results["grid_columns"] = list(next(iter(grids.values())))
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(markdown_table(results))
    save_grid(grids, out_dir / "grid.png")
    return results


def _setup(cfg: EvalConfig, restorers: list[Restorer], size: int) -> dict:
    """What the numbers were measured on: sizes, the sharpness rule, the compare model, how outputs were resized."""
    setup = {
        "size": size,
        "model_size": restorers[0].model.config.out_size,
        "min_sharp_px": cfg.sharp_threshold(size),
        "score_size": cfg.scored_size(size),
        "resize": f"{RESIZE_MODE} (model outputs of another size to {size} px; inputs and references to the "
        "model's size: bilinear, antialiased)",
    }
    if len(restorers) > 1:
        setup |= {"compare_model": cfg.compare_model, "compare_model_size": restorers[1].model.config.out_size}
    return setup


@torch.no_grad()
def _run(restorers: list[Restorer], scorer, ds, ks, kmax, cfg: EvalConfig, device):
    """Restore every face of `ds` with bicubic and each model at each K in `ks`; per-image scores, older flags,
    references available, and the grid's columns for the first faces."""
    scores: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    older: list[bool] = []
    refs_available: list[int] = []
    grid = None
    others = other_person_index([r["identity"] for r in ds.rows]) if cfg.other_person_refs and kmax > 0 else None
    for start in range(0, len(ds), cfg.batch_size):
        batch = collate_samples([ds[i] for i in range(start, min(len(ds), start + cfg.batch_size))])
        lq, target = batch["lq"].to(device), batch["target"].to(device)
        refs, mask = batch["refs"].to(device), batch["ref_mask"].to(device)
        older += batch["is_older"].tolist()
        refs_available += mask.sum(1).tolist()
        stand_in = None
        if others is not None:
            other = collate_samples([ds[int(others[i])] for i in range(start, start + lq.shape[0])])
            stand_in = (other["refs"].to(device), other["ref_mask"].to(device))
        outputs = {"bicubic": bicubic_baseline(lq, batch["degradation"]["scale"])}
        for restorer in restorers:
            outputs |= restorer(lq, refs, mask, ks, kmax, stand_in)
        scored = cfg.scored_size(target.shape[-1])
        scored_outputs = {name: downsample(out, scored) for name, out in outputs.items()}
        for name, by_metric in scorer.score_all(scored_outputs, downsample(target, scored)).items():
            for metric, values in by_metric.items():
                scores[name][metric].extend(values.tolist())
        if grid is None:
            grid = grid_columns(outputs, lq, target, restorers, kmax, cfg.grid_faces)
    return scores, older, refs_available, grid
