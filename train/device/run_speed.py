"""Read training runs' `metrics.jsonl` / `last_run.json`: speed side by side, or losses of a resumed run vs the original.

    python3 train/device/run_speed.py RUN_DIR [RUN_DIR ...]          it/s, samples/s, scaling against the first run
    python3 train/device/run_speed.py --compare ORIGINAL RESUMED     per-step losses where both logged the same step
    python3 train/device/run_speed.py --table OUT_DIR                benchmarks/train_speed.py results of speed_all.sh:
                                                                     old and new per config, and new / old samples/s
    python3 train/device/run_speed.py --table OUT_DIR --configs NAME  one compare_speed.sh pair (it prints this)

Speed is taken from the runs' own logs (trainer timing, `log_every=1`), skipping the first `--skip` steps
(cuDNN autotuning, worker start-up), so the 1- and 2-GPU figures come from the same steady stretch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LOSS_KEYS = ("l1", "perceptual", "identity", "gan", "component_gan", "d_global", "d_components", "g_total")


def _records(run: Path) -> list[dict]:
    """The training-step records of the newest run in the folder (validation lines have no it_per_s)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "it_per_s" in r]


def steady_speed(run: Path, skip: int, until: int | None = None) -> dict:
    """Steps/s from step `skip` to step `until` (default: the last) of this run, from the cumulative rate logged each step."""
    rows = _records(run)
    last = json.loads((run / "last_run.json").read_text())
    first_step = rows[0]["step"] - 1  # the step the run started from (0, or the resumed step)
    a = next(r for r in rows if r["step"] - first_step >= skip)
    b = rows[-1] if until is None else [r for r in rows if r["step"] - first_step <= until][-1]
    t_a = (a["step"] - first_step) / a["it_per_s"]
    t_b = (b["step"] - first_step) / b["it_per_s"]
    cfg = json.loads((run / "config.json").read_text())
    it_s = (b["step"] - a["step"]) / (t_b - t_a)
    return {
        "steps": rows[-1]["step"] - first_step,
        "it_per_s_all": last["it_per_s"],
        "it_per_s": it_s,
        "samples_per_step": last["samples_per_s"] / last["it_per_s"],
        "batch_per_gpu": cfg["batch_size"],
        "data_wait_share": last["data_wait_share"],
        "peak_gpu_gib": last.get("peak_gpu_gib", float("nan")),
    }


def speed_table(runs: list[Path], skip: int, until: int | None = None) -> str:
    lines = [
        "| run | steps run | batch/GPU | samples/step | it/s (steady) | samples/s | it/s (all) | scaling eff. | data wait | peak GPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = None
    for run in runs:
        s = steady_speed(run, skip, until)
        sps = s["it_per_s"] * s["samples_per_step"]
        gpus = s["samples_per_step"] / s["batch_per_gpu"]
        base = base or sps / gpus
        lines.append(
            f"| {run.name} | {s['steps']} | {s['batch_per_gpu']} | {s['samples_per_step']:.0f} | {s['it_per_s']:.2f} | "
            f"{sps:.1f} | {s['it_per_s_all']:.2f} | {sps / (gpus * base):.0%} | {s['data_wait_share']:.1%} | "
            f"{s['peak_gpu_gib']:.2f} GiB |"
        )
    return "\n".join(lines)


def compare(original: Path, resumed: Path) -> str:
    """The resumed run's losses next to the uninterrupted run's for the same steps, and the largest relative gap."""
    ref = {r["step"]: r for r in _records(original)}
    rows = [r for r in _records(resumed) if r["step"] in ref]
    keys = [k for k in LOSS_KEYS if k in rows[0]]
    out = ["| step | " + " | ".join(f"{k} (orig / resumed)" for k in keys) + " |", "| --- |" + " --- |" * len(keys)]
    worst = {k: 0.0 for k in keys}
    for r in rows:
        o = ref[r["step"]]
        out.append(f"| {r['step']} | " + " | ".join(f"{o[k]:.4f} / {r[k]:.4f}" for k in keys) + " |")
        for k in keys:
            worst[k] = max(worst[k], abs(r[k] - o[k]) / max(1e-8, abs(o[k])))
    out.append("largest relative gap: " + ", ".join(f"{k} {v:.2%}" for k, v in worst.items()))
    return "\n".join(out)


SPEED_CONFIGS = ("prior-128", "psp-128", "prior-256", "psp-256")
SPEED_COLUMNS = (
    ("batch", "batch"),
    ("loader", "loader"),
    ("samples_per_s", "samples/s"),
    ("it_per_s", "it/s"),
    ("ms_per_step_median", "ms/step"),
    ("gpu_busy_share", "GPU busy"),
    ("data_wait_share", "data wait"),
    ("peak_mem_GiB", "peak GiB"),
    ("compile_s", "compile/warm-up s"),
    ("host_syncs_per_step", "syncs/step"),
)


def _last_json(path: Path) -> dict | None:
    """The last JSON object line of a benchmark's stdout, or None (missing file, crashed run)."""
    if not path.is_file():
        return None
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def speed_results_table(folder: Path, configs=SPEED_CONFIGS, note: str = "") -> str:
    """Markdown: one row per (config, tree) from `old-<config>.json` / `new-<config>.json`, with new / old samples/s."""
    head = "| config | tree | " + " | ".join(title for _, title in SPEED_COLUMNS) + " | new / old |"
    lines = ([note] if note else []) + [head, "|" + " --- |" * (len(SPEED_COLUMNS) + 3)]
    for name in configs:
        runs = {side: _last_json(folder / f"{side}-{name}.json") for side in ("old", "new")}
        ratio = (
            f"{runs['new']['samples_per_s'] / runs['old']['samples_per_s']:.2f}x"
            if runs["old"] and runs["new"] and runs["old"]["samples_per_s"]
            else "n/a"
        )
        for side in ("old", "new"):
            r = runs[side]
            cells = (
                ["no result (see the .err file)"] + [""] * (len(SPEED_COLUMNS) - 1)
                if r is None
                else ["" if r.get(key) is None else str(r[key]) for key, _ in SPEED_COLUMNS]
            )
            lines.append(f"| {name} | {side} | " + " | ".join(cells) + f" | {ratio if side == 'new' else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path)
    p.add_argument("--compare", action="store_true", help="two runs: ORIGINAL RESUMED")
    p.add_argument("--table", type=Path, metavar="OUT_DIR", help="speed_all.sh's results: old vs new per config")
    p.add_argument("--note", default="", help="a line printed above the --table table")
    p.add_argument("--configs", nargs="+", default=SPEED_CONFIGS, help="the --table rows (compare_speed.sh: its NAME)")
    p.add_argument("--skip", type=int, default=20, help="leave out the first steps of each run from the speed")
    p.add_argument("--until", type=int, default=None, help="end the speed window at this many steps into each run")
    args = p.parse_args(argv)
    if args.table:
        print(speed_results_table(args.table, args.configs, note=args.note))
    elif not args.runs:
        p.error("give run folders, or --table OUT_DIR")
    else:
        print(compare(*args.runs) if args.compare else speed_table(args.runs, args.skip, args.until))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
