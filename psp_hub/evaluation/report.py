"""The evaluation's markdown tables, the command that reproduces them, and the model card they go into."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from psp_hub.models import PSPGAN

from .config import LOWER_IS_BETTER, METRICS, RESIZE_MODE, TOWARDS_ONE, EvalConfig

GRID_FILE = "eval_grid.webp"  # the model card's grid, beside README.md in the model folder


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
    scored = results.get("score_size") or size
    if scored != size:
        parts.append(f"outputs and targets scored at {scored} px (area-downsampled: the faces' native size)")
    if results.get("min_sharp_px"):
        parts.append(f"only targets with sharp_px >= {results['min_sharp_px']} (sharp at {scored} px)")
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


def reproduce_command(cfg: EvalConfig) -> str:
    """The command line that gives these results again."""
    cmd = f"python -m psp_hub.evaluate --model <this folder> --data {cfg.data} --max-samples {cfg.max_samples}"
    if cfg.size:
        cmd += f" --size {cfg.size}"
    if tuple(cfg.refs) != EvalConfig.refs:
        cmd += " --refs " + " ".join(str(k) for k in cfg.refs)
    if cfg.compare_model:
        cmd += f" --compare-model {cfg.compare_model}"
    if cfg.min_sharp_px is not None:
        cmd += f" --min-sharp-px {cfg.min_sharp_px}"
    if cfg.score_size:
        cmd += f" --score-size {cfg.score_size}"
    return cmd + (" --other-person-refs" if cfg.other_person_refs else "")


def write_card(
    cfg: EvalConfig, results: dict, summary: str, training_data: str = "", datasets: list[str] | None = None
) -> Path:
    """Render the model card of a local model folder with these results, and put the grid beside it;
    `training_data` (markdown) and `datasets` describe data other than the 128 px corpus."""
    folder = Path(cfg.model)
    model = PSPGAN.from_pretrained(str(folder))
    # WebP q90: the 256 px grid as PNG was 6.8 MB, a size every clone of the repository would carry
    Image.open(Path(cfg.out) / "grid.png").save(folder / GRID_FILE, quality=90, method=6)
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
        f"({GRID_FILE})\n\nReproduce: `{reproduce_command(cfg)}` (test split, identities never seen in "
        "training)."
    )
    card = model.generate_model_card(
        repo_id=f"psp-gan/{folder.name}",
        trained=True,
        training_summary=summary,
        metrics_markdown=table,
        training_data=training_data,
        datasets=datasets,
    )
    card.save(folder / "README.md")
    return folder / "README.md"
