"""Write one parquet shard atomically, and remember which shards are complete so a rerun skips them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import FEATURES

SHARD_FORMAT_VERSION = 1


def shard_fingerprint(rows: Sequence[dict], row_group_size: int) -> str:
    """Hash of everything that decides a shard's bytes (rows in order, their image hashes, format settings)."""
    h = hashlib.sha256(f"v{SHARD_FORMAT_VERSION}:rg{row_group_size}:pa{pa.__version__}".encode())
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _marker(done_dir: Path, rel: str) -> Path:
    """The completion marker of one shard."""
    return done_dir / (rel.replace("/", "__") + ".json")


def is_done(out_dir: Path, done_dir: Path, rel: str, fingerprint: str) -> bool:
    """True when this shard was written completely by an earlier run from the same plan."""
    marker, path = _marker(done_dir, rel), out_dir / rel
    if not (marker.is_file() and path.is_file()):
        return False
    try:
        info = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return info.get("fingerprint") == fingerprint and info.get("bytes") == path.stat().st_size


def write_shard(
    out_dir: Path,
    done_dir: Path,
    rel: str,
    rows: Sequence[dict],
    images: Sequence[bytes],
    fingerprint: str,
    row_group_size: int,
) -> int:
    """Write rows (+ their image bytes) to `out_dir/rel` via a temporary file and rename; returns the file size."""
    records = [{**row, "image": {"bytes": img, "path": row["image_path"]}} for row, img in zip(rows, images)]
    for r in records:
        r.pop("image_path", None)
    table = pa.Table.from_pylist(records, schema=FEATURES.arrow_schema)
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=row_group_size, compression="snappy")
    os.replace(tmp, path)
    size = path.stat().st_size
    marker = _marker(done_dir, rel)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "bytes": size, "rows": len(rows)}))
    return size
