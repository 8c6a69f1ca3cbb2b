"""Evaluate a PSP-GAN model on held-out identities: PSNR, SSIM, LPIPS, dlib and ArcFace identity, vs bicubic.

    python -m psp_hub.evaluate --model checkpoints/psp-gan-128 --data data/psp-faces128 --out outputs/eval

For each degradation level (moderate x4, severe x8) and each reference count K (0, 1, 3) it restores the same
test faces (people with at least one other photo, so K is comparable), and reports every metric for all,
older and younger faces. dlib's ResNet was not used in training, so its distance is the unbiased identity score.
Writes results.json, results.md (the table for the model card) and grid.png (input, bicubic, K=0, K=3, target).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from psp_hub.common import tensor_to_image, to_unit
from psp_hub.data import DataConfig, build_eval_dataset, collate_samples
from psp_hub.identity import IdentityEncoder
from psp_hub.metrics import LPIPS, DlibIdentity, identity_similarity, psnr, ssim
from psp_hub.models import PSPGAN

METRICS = ("psnr", "ssim", "lpips", "dlib_distance", "arcface_similarity")
LOWER_IS_BETTER = {"lpips", "dlib_distance"}


@dataclass
class EvalConfig:
    """What to evaluate and on what."""

    model: str = "checkpoints/psp-gan-128"
    data: str = "data/psp-faces128"
    split: str = "test"
    levels: tuple[str, ...] = ("moderate", "severe")
    refs: tuple[int, ...] = (0, 1, 3)
    max_samples: int | None = 400
    batch_size: int = 16
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    out: str = "outputs/eval"
    grid_faces: int = 6
    other_person_refs: bool = False  # control: K=max with another test person's references (does K use identity?)


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


def bicubic_baseline(lq: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bicubic upsampling of the low-resolution input (recovered from the loader's resized-back `lq` by area)."""
    size = lq.shape[-1]
    out = []
    for img, s in zip(lq, scale.tolist()):
        low = max(1, round(size / s))
        small = F.interpolate(img[None], size=(low, low), mode="area")
        out.append(F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[0])
    return torch.stack(out).clamp(-1, 1)


class Scorer:
    """Every metric for a batch of outputs against their targets, per image."""

    def __init__(self, device):
        self.device = device
        self.lpips = LPIPS.from_shared().to(device)
        self.arcface = IdentityEncoder.from_onnx().to(device)
        self.dlib = DlibIdentity()

    @torch.no_grad()
    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        out, target = out.float().clamp(-1, 1), target.float()
        return {
            "psnr": psnr(out, target).cpu().numpy(),
            "ssim": ssim(out, target).cpu().numpy(),
            "lpips": self.lpips(out, target).flatten().cpu().numpy(),
            "arcface_similarity": identity_similarity(self.arcface, out, target).cpu().numpy(),
            "dlib_distance": self.dlib.distance(list(tensor_to_image(out)), list(tensor_to_image(target))),
        }


def evaluate(cfg: EvalConfig) -> dict:
    device = torch.device(cfg.device)
    model = PSPGAN.from_pretrained(cfg.model).to(device).eval()
    size = model.config.out_size
    kmax = max(cfg.refs)
    data_cfg = DataConfig(path=cfg.data, out_size=size, max_references=kmax, num_workers=0)
    scorer = Scorer(device)
    results: dict = {"model": cfg.model, "data": cfg.data, "split": cfg.split, "levels": {}}
    grids = {}
    t0 = time.time()
    for level in cfg.levels:
        # faces whose person has other photos: every K is comparable on them
        ds = balanced_subset(
            build_eval_dataset(data_cfg, cfg.split, degradation=level, num_references=kmax, only_with_references=True),
            cfg.max_samples,
        )
        scores, older, refs_available, grids[level] = _run(model, scorer, ds, cfg.refs, kmax, cfg, device)
        level_result = {
            "samples": len(ds),
            "older": int(np.sum(older)),
            f"mean_refs_for_K={kmax}": float(np.mean(refs_available)),
            "methods": {},
        }
        for name, by_metric in scores.items():
            level_result["methods"][name] = _grouped(by_metric, np.array(older, dtype=bool))
        # older faces: in this data they come from a source with one photo per person, so only K=0 applies
        old_ds = build_eval_dataset(data_cfg, cfg.split, degradation=level, num_references=0)
        old_ds.rows = [r for r in old_ds.rows if r["is_older"] and not r["reference_ids"]]
        if old_ds.rows:
            old_ds = balanced_subset(old_ds, cfg.max_samples)
            old_scores, _, _, _ = _run(model, scorer, old_ds, (0,), 0, cfg, device)
            level_result["older_without_references"] = {
                "samples": len(old_ds),
                "methods": {
                    n: {"older": {m: float(np.mean(v)) for m, v in bm.items()}} for n, bm in old_scores.items()
                },
            }
        results["levels"][level] = level_result
    results["seconds"] = round(time.time() - t0, 1)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(markdown_table(results))
    save_grid(grids, out_dir / "grid.png")
    return results


def _grouped(by_metric: dict, older: np.ndarray) -> dict:
    """Mean of every metric over all, older and younger faces (groups with no face are left out)."""
    return {
        group: {m: float(np.mean(np.array(v)[sel])) for m, v in by_metric.items()}
        for group, sel in (("all", np.ones_like(older)), ("older", older), ("younger", ~older))
        if sel.any()
    }


@torch.no_grad()
def _run(model, scorer, ds, ks, kmax, cfg: EvalConfig, device):
    """Restore every face of `ds` with bicubic and each K in `ks`; per-image scores, older flags, grid rows."""
    scores: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    older: list[bool] = []
    refs_available: list[int] = []
    grid_rows = None
    others = other_person_index([r["identity"] for r in ds.rows]) if cfg.other_person_refs and kmax > 0 else None
    for start in range(0, len(ds), cfg.batch_size):
        batch = collate_samples([ds[i] for i in range(start, min(len(ds), start + cfg.batch_size))])
        lq, target = batch["lq"].to(device), batch["target"].to(device)
        refs, mask = batch["refs"].to(device), batch["ref_mask"].to(device)
        older += batch["is_older"].tolist()
        refs_available += mask.sum(1).tolist()
        outputs = {"bicubic": bicubic_baseline(lq, batch["degradation"]["scale"])}
        cache = model.encode_references(refs, mask) if kmax > 0 else None
        for k in ks:
            if k == 0:
                outputs["K=0"] = model.restore(lq, None).image
            elif k == kmax:
                outputs[f"K={k}"] = model.restore(lq, cache).image
            else:
                k_mask = mask.clone()
                k_mask[:, k:] = False
                outputs[f"K={k}"] = model(lq, refs, k_mask).image
        if others is not None:
            stand_in = collate_samples([ds[int(others[i])] for i in range(start, start + lq.shape[0])])
            outputs[f"K={kmax}, other person"] = model(
                lq, stand_in["refs"].to(device), stand_in["ref_mask"].to(device)
            ).image
        for name, out in outputs.items():
            for metric, values in scorer(out, target).items():
                scores[name][metric].extend(values.tolist())
        if grid_rows is None:
            n = min(cfg.grid_faces, lq.shape[0])
            grid_rows = [lq[:n], outputs["bicubic"][:n], outputs["K=0"][:n], outputs[f"K={kmax}"][:n], target[:n]]
    return scores, older, refs_available, grid_rows


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


def _table(title: str, methods: dict) -> list[str]:
    """A markdown table: rows = method x group of faces, columns = metrics (arrows say which way is better)."""
    lines = [
        title,
        "",
        "| method | faces | " + " | ".join(f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}" for m in METRICS) + " |",
        "| --- | --- |" + " --- |" * len(METRICS),
    ]
    for name, groups in methods.items():
        for group, vals in groups.items():
            lines.append(f"| {name} | {group} | " + " | ".join(f"{vals[m]:.4f}" for m in METRICS) + " |")
    return lines + [""]


def markdown_table(results: dict) -> str:
    """Per level: the faces with references (every K), then the older faces (no references exist for them)."""
    lines = []
    for level, res in results["levels"].items():
        lines += _table(
            f"**{level}** ({res['samples']} test faces with other photos of the same person)", res["methods"]
        )
        blind = res.get("older_without_references")
        if blind:
            lines += _table(
                f"*{level}, older faces* ({blind['samples']} test faces; their source has one photo per "
                "person, so there are no references to give)",
                blind["methods"],
            )
    return "\n".join(lines)


def save_grid(grids: dict, path: Path) -> None:
    """Rows: faces; columns: input, bicubic, K=0, K=max, target; one block per level, stacked."""
    from torchvision.utils import make_grid, save_image

    blocks = []
    for rows in grids.values():
        cols = torch.stack([r.float().cpu() for r in rows], dim=1)  # (n, 5, 3, S, S)
        blocks.append(cols.flatten(0, 1))
    save_image(make_grid(to_unit(torch.cat(blocks)), nrow=5, padding=2), str(path))


def write_card(cfg: EvalConfig, results: dict, summary: str) -> Path:
    """Render the model card of a local model folder with these results, and put the grid beside it."""
    import shutil

    folder = Path(cfg.model)
    model = PSPGAN.from_pretrained(str(folder))
    shutil.copyfile(Path(cfg.out) / "grid.png", folder / "eval_grid.png")
    (folder / "eval_results.json").write_text(json.dumps(results, indent=2))
    control = (
        f"\n*K={max(cfg.refs)}, other person*: the same faces restored with another test person's references, a "
        "control: if the model uses the references' identity, this is further from the target than the right "
        "references.\n"
        if cfg.other_person_refs
        else ""
    )
    table = (
        markdown_table(results)
        + control
        + "\n![input, bicubic, K=0, K=3, target on held-out faces (moderate, then severe)]"
        "(eval_grid.png)\n\nReproduce: `python -m psp_hub.evaluate --model <this folder> --data data/psp-faces128 "
        f"--max-samples {cfg.max_samples}{' --other-person-refs' if cfg.other_person_refs else ''}` (test split, "
        "identities never seen in training)."
    )
    card = model.generate_model_card(
        repo_id=f"psp-gan/{folder.name}", trained=True, training_summary=summary, metrics_markdown=table
    )
    card.save(folder / "README.md")
    return folder / "README.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = EvalConfig()
    p.add_argument("--model", default=d.model, help="Hub id or folder")
    p.add_argument("--data", default=d.data, help="dataset folder or Hub id (built by train/build_dataset.py)")
    p.add_argument("--split", default=d.split)
    p.add_argument("--levels", nargs="+", default=list(d.levels))
    p.add_argument("--refs", nargs="+", type=int, default=list(d.refs))
    p.add_argument("--max-samples", type=int, default=d.max_samples)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--device", default=d.device)
    p.add_argument("--out", default=d.out)
    p.add_argument(
        "--other-person-refs",
        action="store_true",
        help="also restore with another test person's references (a control: personal detail should be lost)",
    )
    p.add_argument(
        "--card",
        action="store_true",
        help="write the table and grid into the model folder's model card (README.md, eval_grid.png)",
    )
    p.add_argument("--summary", default="", help="with --card: the training summary line of the card")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    cfg = EvalConfig(
        model=a.model,
        data=a.data,
        split=a.split,
        levels=tuple(a.levels),
        refs=tuple(a.refs),
        max_samples=a.max_samples,
        batch_size=a.batch_size,
        device=a.device,
        out=a.out,
        other_person_refs=a.other_person_refs,
    )
    results = evaluate(cfg)
    print(markdown_table(results))
    print(f"wrote {cfg.out}/results.json, results.md, grid.png in {results['seconds']} s")
    if a.card:
        print(f"model card written to {write_card(cfg, results, a.summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
