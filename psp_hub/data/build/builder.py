"""Build the Hub-style training dataset: check inputs, split by person, write parquet shards, card and report."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

from psp_hub.common.geometry import ffhq_template

from ..ages import age_group, is_older
from ..config import BuildConfig
from ..schema import GROUPS
from .build_report import sharpness_report
from .card import render_card
from .corpus_splits import corpus_split_map
from .hub import BUILD_STATE_DIR
from .manifest import PhotoSource, source_records
from .metadata import IMAGE_SUFFIXES, InputRecord, find_metadata, list_photos, read_aligned_metadata
from .photos import PhotoAligner
from .scan import AlignedChecker, ScanResult, scan_inputs
from .shards import is_done, shard_fingerprint, write_shard
from .splits import SPLITS, split_identities

REPORT_NAME = "build_report.json"
AMBIGUOUS_SCORE = 0.97
"""Photo mode: in a photo with several faces, a kept (largest) face scoring below this is left out. Of the first
3,318 sharp256 faces, the one false face seen (a belly, 769 px, in a CelebA photo) scored 0.906 beside a real face."""


def detect_mode(folder: Path) -> str:
    """'aligned' when the folder has a metadata table, else 'photos'."""
    return "aligned" if find_metadata(folder) is not None else "photos"


def _order_key(seed: int, row_id: str) -> str:
    """Seeded, stable row order inside a shard group, so the stream starts well mixed."""
    return hashlib.sha256(f"{seed}:order:{row_id}".encode()).hexdigest()


def _template(size: int) -> list[list[float]]:
    """Landmarks of an aligned-corpus face: the FFHQ template at the crop size (shared README)."""
    return [[round(float(x), 4), round(float(y), 4)] for x, y in ffhq_template(size)]


def _make_row(rec: InputRecord, res: ScanResult, row_id: str, cfg: BuildConfig, mode: str) -> dict:
    """The shard columns of one kept face (reference_ids / num_photos are filled in later)."""
    age = rec.age
    native = res.native_px if mode == "photos" else rec.native_px
    return {
        "id": row_id,
        "identity": rec.identity,
        "source": rec.source,
        "age": age,
        "age_group": age_group(age),
        "is_older": is_older(age, cfg.older_age),
        "gender": rec.gender,
        "size": res.size,
        "native_resolution": native,
        "sharp_px": res.sharp_px,
        "det_score": res.det_score if mode == "photos" else rec.det_score,
        "faces_in_photo": res.faces_in_photo if mode == "photos" else rec.faces_in_photo,
        "landmarks": res.landmarks if mode == "photos" else _template(res.size),
        "reference_ids": [],
        "num_photos": 1,
        "origin": rec.origin,
        "image_path": rec.file_name,
        "_sha1": res.sha1,
        "_file": str(res.cached_image or rec.file_name),
    }


def _skip_reason(rec: InputRecord, res: ScanResult | None, cfg: BuildConfig, mode: str) -> str | None:
    """Why a checked input is left out (None = kept)."""
    if res is None:
        return "unchecked"
    if not res.ok:
        return res.reason or "bad"
    native = res.native_px if mode == "photos" else rec.native_px
    min_native = rec.extra.get("min_native_px") or cfg.min_native_px  # a manifest source may set its own limit
    if native is not None and native < min_native:
        return "tiny_face"
    score = rec.det_score if mode == "aligned" else None
    if score is not None and score < cfg.min_det_score:
        return "low_score"
    if mode == "photos" and (res.faces_in_photo or 0) > 1 and (res.det_score or 0) < AMBIGUOUS_SCORE:
        return "ambiguous_face"
    if res.sharp_px is not None and res.sharp_px < rec.extra.get("min_sharp_px", 0):
        return "soft_face"
    return None


def plan_rows(
    records: list[InputRecord],
    results: dict[str, ScanResult],
    cfg: BuildConfig,
    mode: str,
    skipped_by_source: dict | None = None,
):
    """Kept rows with split, group, references and order; plus skip counts (per source into `skipped_by_source`)."""
    skipped: Counter = Counter()
    rows: list[dict] = []
    seen_ids: set[str] = set()
    per_source: Counter = Counter()  # photo ids count within each source, so adding a source renames no row
    forced: dict[str, str] = {}
    for rec in records:
        n = per_source[rec.source]
        per_source[rec.source] += 1
        reason = _skip_reason(rec, results.get(rec.file_name), cfg, mode)
        row_id = rec.id if (mode == "aligned" and rec.id) else f"{rec.source}_{n:05d}"
        if reason is None and row_id in seen_ids:
            reason = "duplicate_id"
        if reason:
            skipped[reason] += 1
            if skipped_by_source is not None:
                skipped_by_source.setdefault(rec.source, Counter())[reason] += 1
            continue
        seen_ids.add(row_id)
        if rec.extra.get("split"):
            forced[rec.identity] = rec.extra["split"]
        rows.append(_make_row(rec, results[rec.file_name], row_id, cfg, mode))

    by_person: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_person[row["identity"]].append(row)
    free = {
        p: rs for p, rs in by_person.items() if p not in forced
    }  # fixed-split people take no share of the fractions
    strata = {p: f"{rs[0]['source']}|{int(any(r['is_older'] for r in rs))}" for p, rs in free.items()}
    split_of = split_identities({p: len(rs) for p, rs in free.items()}, strata, cfg.split_fractions, cfg.seed)
    split_of.update(forced)
    for person, prs in by_person.items():
        for row in prs:
            row["split"] = split_of[person]
            row["num_photos"] = len(prs)
            row["reference_ids"] = sorted(o["id"] for o in prs if o["id"] != row["id"] and o["_sha1"] != row["_sha1"])

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["split"], "older" if row["is_older"] else "general")].append(row)
    for group in groups.values():
        group.sort(key=lambda r: _order_key(cfg.seed, r["id"]))
    return groups, skipped, len(rows)


def _shard_plan(groups: dict[tuple[str, str], list[dict]], rows_per_shard: int) -> list[tuple[str, list[dict]]]:
    """(relative path, rows) of every shard: data/<split>/<group>-<k>-of-<n>.parquet."""
    plan = []
    for split in SPLITS:
        for group in GROUPS:
            rows = groups.get((split, group), [])
            n = (len(rows) + rows_per_shard - 1) // rows_per_shard
            if n == 0:
                continue
            bounds = [round(k * len(rows) / n) for k in range(n + 1)]  # even shard sizes, at most rows_per_shard
            for k in range(n):
                plan.append((f"data/{split}/{group}-{k:05d}-of-{n:05d}.parquet", rows[bounds[k] : bounds[k + 1]]))
    return plan


def _public(row: dict) -> dict:
    """Row without the builder's private keys."""
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "split"}


def _count_unlisted(folder: Path, records: list[InputRecord]) -> int:
    """Image files in an aligned folder that its metadata does not list (left out, reported)."""
    listed = {r.file_name for r in records}
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in listed)


def _source_inputs(cfg: BuildConfig, sources: list[PhotoSource]) -> tuple[list[InputRecord], int, dict[str, str]]:
    """Records of all manifest sources (file names relative to cfg.input), unlabelled photos, licence per source."""
    records: list[InputRecord] = []
    unlabelled = 0
    corpus_splits: dict[str, dict[str, str]] = {}
    for source in sources:
        split_of = None
        if source.split.startswith("like:"):
            corpus = source.split[5:]
            if corpus not in corpus_splits:
                corpus_splits[corpus] = corpus_split_map(Path(corpus), cfg.seed, cfg.split_fractions, cfg.older_age)
            split_of = corpus_splits[corpus]
        recs, missing = source_records(source, Path(cfg.input).resolve(), split_of)
        records += recs
        unlabelled += missing
    return records, unlabelled, {s.name: s.license for s in sources}


def _write_shards(cfg: BuildConfig, out: Path, state: Path, plan, image_root: Path, say, on_shard) -> tuple:
    """Write the planned shards (reusing finished ones, deleting leftovers); (files, nbytes, written, reused)."""
    wanted = {rel for rel, _ in plan}
    for old in sorted((out / "data").rglob("*.parquet")) if (out / "data").is_dir() else []:
        if old.relative_to(out).as_posix() not in wanted:
            old.unlink()  # left over from a build with other settings
    files: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    nbytes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    written = reused = 0
    for rel, rows in plan:
        public = [_public(r) for r in rows]
        fp = shard_fingerprint([{**p, "_sha1": r["_sha1"]} for p, r in zip(public, rows)], cfg.row_group_size)
        split, group = rel.split("/")[1], rel.split("/")[2].split("-")[0]
        if is_done(out, state / "shards", rel, fp):
            reused += 1
        else:
            images = [(image_root / r["_file"]).read_bytes() for r in rows]
            write_shard(out, state / "shards", rel, public, images, fp, cfg.row_group_size)
            written += 1
            say(f"wrote {rel} ({len(rows)} rows)")
            if on_shard:
                on_shard(rel)
        files[split][group].append(rel)
        nbytes[split][group] += (out / rel).stat().st_size
    return files, nbytes, written, reused


def build_dataset(
    cfg: BuildConfig,
    progress: Callable[[str], None] | None = None,
    on_shard: Callable[[str], None] | None = None,
    sources: list[PhotoSource] | None = None,
) -> dict:
    """Run (or resume) a build; returns the report that is also written to `<output>/build_report.json`.

    With `sources` (a manifest, manifest.py) the photos of every source under `cfg.input` are built together.
    """
    t0 = time.time()
    say = progress or (lambda msg: None)
    src, out = Path(cfg.input).resolve(), Path(cfg.output).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"input folder {src} not found")
    state = out / BUILD_STATE_DIR
    mode = "photos" if sources else (detect_mode(src) if cfg.mode == "auto" else cfg.mode)
    licenses = {cfg.source_name: cfg.license} if (mode == "photos" and cfg.license) else {}
    if mode == "aligned":
        records = read_aligned_metadata(src)
        factory = partial(AlignedChecker, src)  # picklable, built once in each worker process
        unlisted = _count_unlisted(src, records)
    else:
        if sources:
            records, unlisted, licenses = _source_inputs(cfg, sources)
        else:
            records, unlisted = list_photos(src, cfg.source_name), 0
        tag = f"{cfg.size}px-{cfg.image_format}-t{cfg.detector_threshold:g}"  # crops depend on these settings
        factory = partial(
            PhotoAligner, src, state / f"aligned-{tag}", cfg.size, cfg.detector_threshold, 0, cfg.image_format, None
        )
    say(f"{mode} input: {len(records)} images in {src}")
    # v2: results carry sharp_px; older caches lack it and are not reused
    scan_name = "scan-aligned-v2.jsonl" if mode == "aligned" else f"scan-photos-v2-{tag}.jsonl"
    results = scan_inputs(records, src, factory, state / scan_name, cfg.workers, say)
    skipped_by_source: dict[str, Counter] = {}
    groups, skipped, kept = plan_rows(records, results, cfg, mode, skipped_by_source)
    plan = _shard_plan(groups, cfg.rows_per_shard)
    say(f"plan: {kept} kept, {sum(skipped.values())} skipped {dict(skipped)}, {len(plan)} shards")
    if kept == 0:
        raise RuntimeError(f"no usable face among {len(records)} inputs in {src}: skipped {dict(skipped)}")

    image_root = state / f"aligned-{tag}" if mode == "photos" else src
    files, nbytes, written, reused = _write_shards(cfg, out, state, plan, image_root, say, on_shard)

    report = _report(cfg, mode, records, groups, skipped, unlisted, written, reused, time.time() - t0)
    report["licenses"] = licenses
    report.update(sharpness_report(groups, records, skipped_by_source))
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(render_card(report, files, nbytes), encoding="utf-8")
    say(f"done in {report['seconds']:.1f} s: {report['rows']}")
    return report


def _report(cfg, mode, records, groups, skipped, unlisted, written, reused, seconds) -> dict:
    """Counts per split and group, people, sources, skips and settings."""
    rows = {s: {g: len(groups.get((s, g), [])) for g in GROUPS} for s in SPLITS}
    people: dict[str, dict[str, int]] = {}
    sources: Counter = Counter()
    sizes: Counter = Counter()
    for split in SPLITS:
        persons: Counter = Counter()
        for g in GROUPS:
            for r in groups.get((split, g), []):
                persons[r["identity"]] += 1
                sources[r["source"]] += 1
                sizes[r["size"]] += 1
        people[split] = {"people": len(persons), "multi_photo": sum(1 for n in persons.values() if n > 1)}
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    settings["split_fractions"] = list(cfg.split_fractions)
    return {
        "mode": mode,
        "inputs": len(records),
        "kept": sum(sum(v.values()) for v in rows.values()),
        "rows": rows,
        "people": people,
        "sources": dict(sorted(sources.items())),
        "image_sizes": sorted(sizes),
        "skipped": dict(sorted(skipped.items())),
        "unlisted_files": unlisted,
        "shards_written": written,
        "shards_reused": reused,
        "seconds": round(seconds, 2),
        "settings": settings,
        "pretty_name": cfg.pretty_name,
    }


def remove_build_state(output: Path) -> None:
    """Delete the resumable-build cache (after a finished build, to save space)."""
    shutil.rmtree(Path(output) / BUILD_STATE_DIR, ignore_errors=True)
