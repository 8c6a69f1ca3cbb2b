"""Evaluate a PSP-GAN model on held-out identities: PSNR, SSIM, LPIPS, dlib and ArcFace identity, face detail.

    python -m psp_hub.evaluate --model checkpoints/psp-gan-128 --data data/psp-faces128 --out outputs/eval
    python -m psp_hub.evaluate --model <256 px model> --data data/sharp256 --compare-model checkpoints/psp-gan-128

For each degradation level (moderate x4, severe x8) and each reference count K (0, 1, 3) it restores the same
test faces (people with at least one other photo, so K is comparable), and reports every metric for all,
older and younger faces, against bicubic. dlib's ResNet was not used in training, so its distance is the unbiased
identity score. The evaluation size is the model's unless `--size` says otherwise; a model (or `--compare-model`)
of another size gets the same inputs resized to its own size and its outputs are resized bicubically to the
evaluation size. Above 128 px only targets sharp at that size count (`sharp_px` >= 0.8 x size by default).
Writes results.json, results.md (the table for the model card) and grid.png (input, bicubic, [compare model],
K=0, K=max, target, [other person]).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from psp_hub.metrics import LPIPS, DlibIdentity, geometric_mean, psnr, sharpness_ratio, ssim
from psp_hub.models import PSPGAN

METRICS = ("psnr", "ssim", "lpips", "dlib_distance", "arcface_similarity", "sharpness_ratio")
LOWER_IS_BETTER = {"lpips", "dlib_distance"}
TOWARDS_ONE = {"sharpness_ratio"}  # detail of output over target: 1 is right, below is soft, above is noise
AGGREGATE = {"sharpness_ratio": geometric_mean}  # ratios average on a log scale; every other metric: the mean
SHARP_FRACTION = 0.8
"""A face whose detail runs right up to its pixel size measures about 0.8 of it in `sharp_px` (docs/data.md), so a
fair target at S px has sharp_px >= 0.8 S."""
RESIZE_MODE = "bicubic"  # a model output of another size to the evaluation size (torch, align_corners=False)


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
    size: int | None = None  # evaluation size; None: the model's out_size
    compare_model: str | None = None  # a second model (e.g. the 128 px one) restoring the same faces
    min_sharp_px: int | None = None  # targets below are left out; None: 0.8 x size above 128 px, else none

    def sharp_threshold(self, size: int) -> int:
        """The `sharp_px` a target needs at this evaluation size (0 = no filter: the 128 px corpus is read as is)."""
        if self.min_sharp_px is not None:
            return self.min_sharp_px
        return round(SHARP_FRACTION * size) if size > 128 else 0


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
    """Every metric for a batch of outputs against their targets, per image (the targets' features computed once)."""

    def __init__(self, device):
        self.device = device
        self.lpips = LPIPS.from_shared().to(device)
        self.arcface = IdentityEncoder.from_onnx().to(device)
        self.dlib = DlibIdentity()

    @torch.no_grad()
    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        """Scores of one method's outputs (B, 3, S, S) against the targets."""
        return self.score_all({"out": out}, target)["out"]

    @torch.no_grad()
    def score_all(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
        """Scores of every method's outputs against the same targets: {method: {metric: (B,)}}."""
        target = target.float()
        target_u8 = list(tensor_to_image(target))
        target_dlib = self.dlib.descriptors(target_u8)
        target_arc = self.arcface(target)
        scores = {}
        for name, out in outputs.items():
            out = out.float().clamp(-1, 1)
            out_u8 = list(tensor_to_image(out))
            scores[name] = {
                "psnr": psnr(out, target).cpu().numpy(),
                "ssim": ssim(out, target).cpu().numpy(),
                "lpips": self.lpips(out, target).flatten().cpu().numpy(),
                "arcface_similarity": (self.arcface(out) * target_arc).sum(dim=-1).cpu().numpy(),
                "dlib_distance": np.linalg.norm(self.dlib.descriptors(out_u8) - target_dlib, axis=1),
                "sharpness_ratio": sharpness_ratio(out_u8, target_u8),
            }
        return scores


@dataclass
class Restorer:
    """A model under evaluation, its row-name prefix, and the evaluation size its outputs are resized to."""

    model: PSPGAN
    prefix: str
    size: int

    def __call__(self, lq, refs, mask, ks, kmax, stand_in) -> dict[str, torch.Tensor]:
        """Restorations at every K (and with another person's references when `stand_in` = (refs, mask) is given).

        The model resizes inputs and references to its own size itself (bilinear, antialiased)."""
        model, p = self.model, self.prefix
        out = {}
        cache = model.encode_references(refs, mask) if kmax > 0 else None
        for k in ks:
            if k == 0:
                out[f"{p}K=0"] = model.restore(lq, None).image
            else:  # each reference is encoded on its own, so fewer of them is the same cache with fewer slots on
                k_mask = mask.clone()
                k_mask[:, k:] = False
                out[f"{p}K={k}"] = model.restore(lq, dataclasses.replace(cache, mask=k_mask)).image
        if stand_in is not None:
            out[f"{p}K={kmax}, other person"] = model(lq, *stand_in).image
        return {name: resize_to(img, self.size) for name, img in out.items()}


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images at `size` px: bicubic up (RESIZE_MODE), area down; unchanged when already there."""
    if images.shape[-1] == size:
        return images
    mode = RESIZE_MODE if size > images.shape[-1] else "area"
    kwargs = {"align_corners": False} if mode == "bicubic" else {}
    return F.interpolate(images.float(), size=(size, size), mode=mode, **kwargs).clamp(-1, 1)


def load_restorers(cfg: EvalConfig, device) -> tuple[list[Restorer], int]:
    """The model (rows K=...) and the optional compare model (rows '<name> (<size> px), K=...'); the eval size."""
    model = PSPGAN.from_pretrained(cfg.model).to(device).eval()
    size = cfg.size or model.config.out_size
    restorers = [Restorer(model, "", size)]
    if cfg.compare_model:
        other = PSPGAN.from_pretrained(cfg.compare_model).to(device).eval()
        restorers.append(Restorer(other, f"{compare_label(cfg.compare_model, other)}, ", size))
    return restorers, size


def compare_label(name: str, model: PSPGAN) -> str:
    """Row prefix of the compare model: its folder or Hub name and its size."""
    return f"{Path(name.rstrip('/')).name} ({model.config.out_size} px)"


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
        "methods": {n: {"older": _aggregate(bm, np.ones(len(old_ds), bool))} for n, bm in old_scores.items()},
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
            "methods": {name: _grouped(bm, np.array(older, dtype=bool)) for name, bm in scores.items()},
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
        "resize": f"{RESIZE_MODE} (model outputs of another size to {size} px; inputs and references to the "
        "model's size: bilinear, antialiased)",
    }
    if len(restorers) > 1:
        setup |= {"compare_model": cfg.compare_model, "compare_model_size": restorers[1].model.config.out_size}
    return setup


def _aggregate(by_metric: dict, sel: np.ndarray) -> dict[str, float]:
    """Every metric over the selected faces: the mean, or AGGREGATE's rule (geometric mean for ratios)."""
    return {m: float(AGGREGATE.get(m, np.mean)(np.array(v)[sel])) for m, v in by_metric.items()}


def _grouped(by_metric: dict, older: np.ndarray) -> dict:
    """Every metric over all, older and younger faces (groups with no face are left out)."""
    return {
        group: _aggregate(by_metric, sel)
        for group, sel in (("all", np.ones_like(older)), ("older", older), ("younger", ~older))
        if sel.any()
    }


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
        for name, by_metric in scorer.score_all(outputs, target).items():
            for metric, values in by_metric.items():
                scores[name][metric].extend(values.tolist())
        if grid is None:
            grid = grid_columns(outputs, lq, target, restorers, kmax, cfg.grid_faces)
    return scores, older, refs_available, grid


def grid_columns(outputs: dict, lq, target, restorers: list[Restorer], kmax: int, n: int) -> dict[str, torch.Tensor]:
    """The grid's columns for the first n faces: input, bicubic, [compare model K=max], K=0, K=max, target,
    [K=max with another person's references]."""
    names = ["bicubic"] + [f"{r.prefix}K={kmax}" for r in restorers[1:]] + ["K=0", f"K={kmax}"]
    columns = {"input": lq} | {name: outputs[name] for name in names if name in outputs} | {"target": target}
    if f"K={kmax}, other person" in outputs:
        columns[f"K={kmax}, other person"] = outputs[f"K={kmax}, other person"]
    return {name: images[:n] for name, images in columns.items()}


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


def _arrow(metric: str) -> str:
    return "→1" if metric in TOWARDS_ONE else "↓" if metric in LOWER_IS_BETTER else "↑"


def _table(title: str, methods: dict) -> list[str]:
    """A markdown table: rows = method x group of faces, columns = metrics (arrows say which way is better)."""
    lines = [
        title,
        "",
        "| method | faces | " + " | ".join(f"{m} {_arrow(m)}" for m in METRICS) + " |",
        "| --- | --- |" + " --- |" * len(METRICS),
    ]
    for name, groups in methods.items():
        for group, vals in groups.items():
            lines.append(f"| {name} | {group} | " + " | ".join(f"{vals[m]:.4f}" for m in METRICS) + " |")
    return lines + [""]


def setup_line(results: dict) -> list[str]:
    """One paragraph on sizes, resizing and the sharpness rule; none for a same-size run without a filter."""
    size, model_size = results.get("size"), results.get("model_size")
    parts = []
    if size and model_size and size != model_size:
        parts.append(f"the model works at {model_size} px; its outputs are resized to {size} px ({RESIZE_MODE})")
    if results.get("compare_model"):
        parts.append(
            f"compare model `{results['compare_model']}` at {results['compare_model_size']} px, given the same "
            f"inputs and references resized to its size, its outputs resized to {size} px ({RESIZE_MODE})"
        )
    if results.get("min_sharp_px"):
        parts.append(f"only targets with sharp_px >= {results['min_sharp_px']} (sharp at {size} px)")
    return [f"Evaluated at {size} px: " + "; ".join(parts) + ".", ""] if parts else []


def markdown_table(results: dict) -> str:
    """Per level: the faces with references (every K), then the older faces (no references exist for them)."""
    lines = setup_line(results)
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


def save_grid(grids: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Rows: faces; columns: grid_columns' (input ... target); one block per level, stacked."""
    from torchvision.utils import make_grid, save_image

    blocks = []
    for columns in grids.values():
        cols = torch.stack([c.float().cpu() for c in columns.values()], dim=1)  # (n, columns, 3, S, S)
        blocks.append(cols.flatten(0, 1))
    ncols = len(next(iter(grids.values())))
    save_image(make_grid(to_unit(torch.cat(blocks)), nrow=ncols, padding=2), str(path))


def reproduce_command(cfg: EvalConfig) -> str:
    """The command line that gives these results again."""
    cmd = f"python -m psp_hub.evaluate --model <this folder> --data {cfg.data} --max-samples {cfg.max_samples}"
    if cfg.size:
        cmd += f" --size {cfg.size}"
    if cfg.compare_model:
        cmd += f" --compare-model {cfg.compare_model}"
    if cfg.min_sharp_px is not None:
        cmd += f" --min-sharp-px {cfg.min_sharp_px}"
    return cmd + (" --other-person-refs" if cfg.other_person_refs else "")


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
        + f"\n![{', '.join(results['grid_columns'])} on held-out faces ({', then '.join(cfg.levels)})]"
        f"(eval_grid.png)\n\nReproduce: `{reproduce_command(cfg)}` (test split, identities never seen in "
        "training)."
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
    p.add_argument("--size", type=int, default=None, help="evaluation size (default: the model's output size)")
    p.add_argument(
        "--compare-model",
        default=None,
        help="a second model (e.g. checkpoints/psp-gan-128) on the same faces, outputs resized to the evaluation size",
    )
    p.add_argument(
        "--min-sharp-px",
        type=int,
        default=None,
        help="targets need sharp_px >= this (default: 0.8 x size above 128 px, no filter at 128)",
    )
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
        size=a.size,
        compare_model=a.compare_model,
        min_sharp_px=a.min_sharp_px,
    )
    results = evaluate(cfg)
    print(markdown_table(results))
    print(f"wrote {cfg.out}/results.json, results.md, grid.png in {results['seconds']} s")
    if a.card:
        print(f"model card written to {write_card(cfg, results, a.summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
