"""The dataset card (README.md): YAML metadata the Hub and `datasets` read, and the text a user reads."""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml

from ..schema import FEATURES, GROUPS
from .splits import SPLITS

SOURCE_LICENSES = {
    "lfw": "LFW (deep-funneled): research use under the LFW terms, http://vis-www.cs.umass.edu/lfw/",
    "celeba": "CelebA: non-commercial research purposes only, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
    "utkface": "UTKFace: non-commercial research purposes only, https://susanqq.github.io/UTKFace/",
    "ffhq": "FFHQ: images under their Flickr licences (CC BY, CC BY-NC, public domain); metadata CC BY-NC-SA 4.0",
}
"""Licences of the shared corpus' sources; photo sources bring theirs with them (CLI --license or a manifest)."""


def _size_category(n: int) -> str:
    """The Hub's size bucket for n rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def configs_yaml(files: Mapping[str, Mapping[str, list[str]]]) -> list[dict]:
    """`configs:` entries: default = both groups, `general` and `older` = one group each (the loader's two streams)."""
    out = []
    for name in ("default", *GROUPS):
        entries = []
        for split in SPLITS:
            groups = GROUPS if name == "default" else (name,)
            if any(files.get(split, {}).get(g) for g in groups):
                pattern = f"data/{split}/*.parquet" if name == "default" else f"data/{split}/{name}-*.parquet"
                entries.append({"split": split, "path": pattern})
        if entries:
            cfg = {"config_name": name, "data_files": entries}
            if name == "default":
                cfg["default"] = True
            out.append(cfg)
    return out


def dataset_info_yaml(counts: Mapping[str, Mapping[str, int]], nbytes: Mapping[str, Mapping[str, int]]) -> list[dict]:
    """`dataset_info:` per config: features and split sizes (num_bytes = parquet bytes on disk)."""
    out = []
    for name in ("default", *GROUPS):
        groups = GROUPS if name == "default" else (name,)
        splits = []
        for split in SPLITS:
            n = sum(counts.get(split, {}).get(g, 0) for g in groups)
            if n:
                splits.append(
                    {
                        "name": split,
                        "num_bytes": sum(nbytes.get(split, {}).get(g, 0) for g in groups),
                        "num_examples": n,
                    }
                )
        if splits:
            total = sum(s["num_bytes"] for s in splits)
            # a fresh list per config: no YAML anchors in the card
            out.append(
                {
                    "config_name": name,
                    "features": FEATURES._to_yaml_list(),
                    "splits": splits,
                    "download_size": total,
                    "dataset_size": total,
                }
            )
    return out


def render_card(
    report: Mapping, files: Mapping[str, Mapping[str, list[str]]], nbytes: Mapping[str, Mapping[str, int]]
) -> str:
    """The whole README.md, from the build report (counts, settings) and the written shard files."""
    sources = sorted(report["sources"])
    licences = {
        s: report.get("licenses", {}).get(s) or SOURCE_LICENSES.get(s, "unknown: set it before sharing")
        for s in sources
    }
    meta = _card_metadata(report, files, nbytes, sources, licences)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=120).rstrip(), "---", ""]
    lines += [
        f"# {meta['pretty_name']}",
        "",
        'Aligned face crops (FFHQ 5-point template) for training PSP-GAN ("Personalized Super Resolution with Face',
        "Prior\"): each row is one high-resolution target with the ids of the same person's other photos, which the",
        "loader uses as references. Low-quality inputs are not stored; the loader makes them on the fly with eq. (10).",
        "",
    ]
    lines += _count_tables(report, sources, licences)
    lines += _source_sections(report)
    lines += _closing_sections(report)
    return "\n".join(lines)


def _card_metadata(report: Mapping, files, nbytes, sources: list[str], licences: dict) -> dict:
    """The card's YAML header: Hub metadata, configs, split sizes, per-source licences, the mix settings."""
    counts = report["rows"]
    total = sum(sum(v.values()) for v in counts.values())
    return {
        "pretty_name": report.get("pretty_name") or "PSP-GAN aligned faces",
        "license": "other",
        "license_name": "per-source-research-only",
        "license_details": "Each image keeps its source's licence (see source_licenses); several allow non-commercial research only.",
        "task_categories": ["image-to-image"],
        "tags": ["faces", "face-restoration", "super-resolution", "reference-based", "psp-gan"],
        "size_categories": [_size_category(total)],
        "source_datasets": sources,
        "configs": configs_yaml(files),
        "dataset_info": dataset_info_yaml(counts, nbytes),
        "source_licenses": licences,
        "psp_gan": {
            "older_age": report["settings"]["older_age"],
            "older_fraction": 0.3,
            "seed": report["settings"]["seed"],
            "split_fractions": list(report["settings"]["split_fractions"]),
            "image_size": report.get("image_sizes"),
        },
    }


def _count_tables(report: Mapping, sources: list[str], licences: dict) -> list[str]:
    """The per-split and per-source count tables."""
    counts = report["rows"]
    lines = [
        "## Splits (by person: nobody appears in two splits)",
        "",
        "| split | images | general | older | people | people with >= 2 photos |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for split in SPLITS:
        c = counts.get(split, {})
        p = report["people"].get(split, {})
        lines.append(
            f"| {split} | {sum(c.values())} | {c.get('general', 0)} | {c.get('older', 0)} | {p.get('people', 0)} | {p.get('multi_photo', 0)} |"
        )
    lines += [
        "",
        "## Sources and licences",
        "",
        "| source | images | licence |",
        "| --- | --- | --- |",
    ]
    for src in sources:
        lines.append(f"| {src} | {report['sources'][src]} | {licences[src]} |")
    return lines


def _closing_sections(report: Mapping) -> list[str]:
    """The mix, columns, build and licence sections."""
    s = report["settings"]
    return [
        "",
        "## How the 70/30 mix is built",
        "",
        f"`is_older` is true for faces labelled {s['older_age']} years or older (only sources with age labels have it;",
        "from about that age wrinkles and age spots, the textures the paper targets, are common).",
        "The shards of each split are stored in two groups, exposed as configs: `general` (all other faces) and",
        "`older`; `default` holds both. Training streams both (`datasets.load_dataset(..., streaming=True)`),",
        "shuffles each with a buffer and draws 30 % of the samples from `older` (paper, section 4.1), raising the",
        "share (0.6 by default) in the final phase (section 3.3). With plain `datasets` the same mix is",
        "`interleave_datasets([general, older], probabilities=[0.7, 0.3])`.",
        "",
        "## Columns",
        "",
        "`image` (aligned crop), `id`, `identity`, `source`, `age`, `age_group`, `is_older`, `gender`, `size`,",
        "`native_resolution` (source pixels spanned by the crop), `sharp_px` (measured true sharpness: the",
        "largest size at which the face still carries real detail, at most the crop size or 512 px for photos), `det_score`, `faces_in_photo`, `landmarks` (5 points",
        "in the aligned frame: image-left eye, image-right eye, nose, image-left and image-right mouth corner),",
        "`reference_ids` (this person's other photos in the same split, exact duplicates removed), `num_photos`, `origin`.",
        "",
        "## Build",
        "",
        f"Built by `train/build_dataset.py` (psp-gan) with seed {s['seed']}, split fractions {list(s['split_fractions'])}.",
        f"Skipped inputs: {json.dumps(report['skipped'])}.",
        "",
        "## Licence",
        "",
        "This card and the build code are Apache-2.0; the images are not: each keeps its source's terms above.",
        "",
    ]


def _source_sections(report: Mapping) -> list[str]:
    """Per-source counts by split and skip reason, and the sharpness distribution (builds that record them)."""
    per_source, sharp = report.get("per_source"), report.get("sharpness")
    if not per_source:
        return []
    lines = [
        "",
        "## Per source",
        "",
        "| source | photos in | kept | skipped (reason: count) | train | validation | test | people | people with >= 2 photos |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for src, c in per_source.items():
        skipped = ", ".join(f"{k}: {v}" for k, v in c["skipped"].items()) or "-"
        sp = c["splits"]
        lines.append(
            f"| {src} | {c['inputs']} | {c['kept']} | {skipped} | {sp['train']} | {sp['validation']} | {sp['test']} | {c['people']} | {c['multi_photo']} |"
        )
    if sharp:
        levels = [k for k in next(iter(sharp.values())) if k.startswith(">=")]
        lines += [
            "",
            "## Sharpness (`sharp_px`)",
            "",
            "Measured on each aligned face (psp_hub/data/sharpness.py): the smallest size a resample can shrink it to",
            "while keeping 99 % of its detail finer than a 32 px face. Upsampled faces measure at the size they came",
            "from (a 128 px face upsampled to 256 measures about 130), so pixel size alone does not count as sharp.",
            "",
            "| source | faces | p10 | p25 | median | p75 | p90 | " + " | ".join(levels) + " |",
            "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in levels) + " |",
        ]
        for src, d in sharp.items():
            if d.get("measured"):
                lines.append(
                    f"| {src} | {d['measured']} | {d['p10']} | {d['p25']} | {d['p50']} | {d['p75']} | {d['p90']} | "
                    + " | ".join(str(d[k]) for k in levels)
                    + " |"
                )
    pairs = report.get("sharp_pairs")
    if pairs:
        levels = list(next(iter(pairs.values())))
        lines += [
            "",
            "People with at least two photos at each sharpness (identity pairs for training / evaluation):",
            "",
            "| split | " + " | ".join(f"sharp_px {k}" for k in levels) + " |",
            "| --- | " + " | ".join("---" for _ in levels) + " |",
        ]
        lines += [f"| {split} | " + " | ".join(str(v) for v in d.values()) + " |" for split, d in pairs.items()]
    return lines
