"""The 256 px campaign's curve as a figure: severe K=3 dlib distance and sharpness ratio against GPU-minutes, one point
per round, read from the curve table at the top of docs/release-model.md (the one place the numbers live).

    python benchmarks/campaign_curve.py --out docs/images/campaign-curve.webp

A row's GPU-minutes are the training minutes of its whole line of runs from the 128 px model (compiling apart): the
number after the cell's last "=", else its first number; rows without minutes (the 128 px model, interpolations that
are not bundled) are drawn as horizontal references or left out.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "release-model.md"
TABLE_START = "| round | what changed | GPU-minutes |"
DLIB_AIM = 0.40
SHARPNESS_BAND = (0.8, 1.25)


@dataclass
class CurvePoint:
    """One row of the curve table: severe level, K=3 own references, the sharp test faces."""

    label: str
    gpu_minutes: float | None
    dlib: float
    sharpness: float


def first_number(cell: str) -> float | None:
    """The cell's first number ("**0.412** (0.410 in ...)" -> 0.412), or None when it has none."""
    match = re.search(r"\d+(?:\.\d+)?", cell.replace(",", ""))
    return float(match.group()) if match else None


def minutes(cell: str) -> float | None:
    """Cumulative GPU-minutes: "40.1 + 6.1 = 46.2 (+1.1 compiling)" -> 46.2, "16.1 (+6.0 compiling)" -> 16.1."""
    cell = re.sub(r"\(.*?\)", "", cell)
    return first_number(cell.rsplit("=", 1)[-1])


def curve_points(markdown: str) -> list[CurvePoint]:
    """Every row of the table that starts with TABLE_START, in the table's order."""
    lines = markdown[markdown.index(TABLE_START) :].splitlines()[2:]
    points = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        label = cells[0].replace("**", "")
        points.append(CurvePoint(label, minutes(cells[2]), first_number(cells[4]), first_number(cells[7])))
    return points


def short_label(label: str) -> str:
    """ "11, arm B" -> "11B", "0.7 x 9 + 0.3 x 11 arm B (bundled)" -> "bundled", "2 (96 faces)" -> "2"."""
    if " x " in label:
        return "bundled" if "bundled" in label else "interpolated"
    if label.startswith("128 px"):
        return "128 px model"
    match = re.match(r"(\d+)(?:, arm ([A-Z]))?", label)
    return match.group(1) + (match.group(2) or "") if match else label


def labels_collide(point: tuple[float, float], other: tuple[float, float]) -> bool:
    """Whether `other`, within 1.5 minutes and above (or level and to the right), takes the label's place above."""
    return abs(other[0] - point[0]) <= 1.5 and (other[1] > point[1] or (other[1] == point[1] and other[0] > point[0]))


def draw_points(axis, timed: list[CurvePoint], field: str) -> None:
    """One panel's points, each labelled, the bundled model a red star; a label goes below or left of its point where
    a neighbour's point or label would take its place."""
    spots = [(p.gpu_minutes, getattr(p, field)) for p in timed]
    for i, (p, spot) in enumerate(zip(timed, spots)):
        label = short_label(p.label)
        bundled = label == "bundled"
        axis.scatter(
            *spot,
            color="tab:red" if bundled else "tab:blue",
            marker="*" if bundled else "o",
            s=120 if bundled else 30,
        )
        below = any(labels_collide(spot, other) for j, other in enumerate(spots) if j != i)
        left = any(0 < other[0] - spot[0] <= 1.5 for other in spots)
        offset = (-5 if left else 5, -12 if below else 4)
        axis.annotate(
            label, spot, fontsize=8, textcoords="offset points", xytext=offset, ha="right" if left else "left"
        )


def plot(points: list[CurvePoint], out: Path) -> None:
    """Two panels over GPU-minutes: dlib with its aim, sharpness with its band; the 128 px model as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [p for p in points if p.gpu_minutes is not None]
    baseline = next((p for p in points if short_label(p.label) == "128 px model"), None)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    for axis, field in ((top, "dlib"), (bottom, "sharpness")):
        draw_points(axis, timed, field)
        if baseline is not None:
            axis.axhline(getattr(baseline, field), color="grey", linestyle="--", label="128 px model, resized")
    top.axhline(DLIB_AIM, color="tab:green", label=f"aim <= {DLIB_AIM}")
    top.set_ylabel("dlib distance, severe K=3 (lower is better)")
    bottom.axhspan(*SHARPNESS_BAND, color="tab:green", alpha=0.15, label="aim band")
    bottom.set_ylabel("sharpness ratio (output / target)")
    bottom.set_xlabel("GPU-minutes of training on one H200 (the round's whole line from the 128 px model)")
    top.legend(fontsize=8)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    points = curve_points(args.doc.read_text())
    plot(points, args.out)
    for p in points:
        print(f"{p.label[:40]:40} {p.gpu_minutes!s:>6} dlib {p.dlib} sharpness {p.sharpness}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
