"""Several photo folders in one build: a YAML manifest naming each source, its licence, identities and split rule.

A source is a folder of ordinary photos as downloaded. Its people come from sub-folder names (`folder`), from a
part of the file name (`regex:<pattern>`, first group), from a table of file -> person (`table`), or every photo is
its own person (`photo`). Optional attributes (age, gender) come from a table keyed by person. The split rule is
`auto` (by person, like any build), a fixed split (`train`, `validation`, `test`), or `like:<aligned corpus>`: the
split each person has in the dataset built from that corpus, so one person never lands in two splits across them.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .metadata import IMAGE_SUFFIXES, InputRecord
from .splits import SPLITS


@dataclass(frozen=True)
class PhotoSource:
    """One folder of photos and how to label it."""

    name: str  # the `source` column and the prefix of its identities
    path: Path
    license: str
    identity: str = "folder"  # folder | photo | table | regex:<pattern with one group>
    identity_table: Path | None = None  # `table`: columns (file name, person), CSV or whitespace separated
    attributes: dict = field(default_factory=dict)  # {table, key, age, gender}: per-person columns
    split: str = "auto"  # auto | train | validation | test | like:<aligned corpus folder>
    include: str | None = None  # regular expression the relative path must match
    min_native_px: int | None = None  # overrides the build's tiny-face limit for this source
    min_sharp_px: int = 0  # faces whose measured sharpness is lower are left out ("soft_face")

    def __post_init__(self) -> None:
        """Reject rules that cannot work."""
        ok_identity = self.identity in ("folder", "photo", "table") or self.identity.startswith("regex:")
        if not ok_identity:
            raise ValueError(f"source {self.name}: unknown identity rule {self.identity!r}")
        if self.identity == "table" and self.identity_table is None:
            raise ValueError(f"source {self.name}: identity 'table' needs identity_table")
        if self.split not in ("auto", *SPLITS) and not self.split.startswith("like:"):
            raise ValueError(f"source {self.name}: unknown split rule {self.split!r}")


def _resolve(base: Path, value) -> Path | None:
    """A path from the manifest, relative to its root; `@shared/...` is inside the shared folder (psp_hub.common.paths)."""
    if value in (None, ""):
        return None
    value = str(value)
    if value.startswith("@shared/"):
        from psp_hub.common.paths import shared_dir

        return (shared_dir() / value[len("@shared/") :]).resolve()
    return (base / value).resolve()


def load_manifest(path: Path) -> tuple[Path, list[PhotoSource]]:
    """(root folder, sources in build order) of a manifest; paths are relative to `root` (itself relative to the file)."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    root = (path.parent / spec.get("root", ".")).resolve()
    sources = []
    for entry in spec["sources"]:
        entry = dict(entry)
        entry["path"] = _resolve(root, entry["path"])
        entry["identity_table"] = _resolve(root, entry.get("identity_table"))
        attrs = dict(entry.get("attributes") or {})
        if attrs.get("table"):
            attrs["table"] = str(_resolve(root, attrs["table"]))
        entry["attributes"] = attrs
        split = str(entry.get("split", "auto"))
        if split.startswith("like:"):
            split = "like:" + str(_resolve(root, split[5:]))
        entry["split"] = split
        sources.append(PhotoSource(**entry))
    return root, sources


def read_table(path: Path) -> list[list[str]]:
    """Rows of a small CSV or whitespace-separated table, header included."""
    text = Path(path).read_text(encoding="utf-8")
    if "," in text.splitlines()[0]:
        return [row for row in csv.reader(text.splitlines()) if row]
    return [line.split() for line in text.splitlines() if line.strip()]


def _person_of(source: PhotoSource, rel: Path, table: dict[str, str]) -> str | None:
    """The person label of a photo (without the source prefix), None when the rule does not name one."""
    if source.identity == "folder":
        return rel.parent.as_posix() if rel.parent != Path(".") else rel.stem
    if source.identity == "photo":
        return rel.with_suffix("").as_posix()
    if source.identity == "table":
        return table.get(rel.name)
    match = re.search(source.identity[len("regex:") :], rel.name)
    return match.group(1) if match else None


def _attributes(source: PhotoSource) -> dict[str, dict[str, str]]:
    """person -> {age, gender} from the source's attribute table."""
    attrs = source.attributes
    if not attrs.get("table"):
        return {}
    rows = read_table(Path(attrs["table"]))
    head = rows[0]
    out = {}
    for row in rows[1:]:
        cells = dict(zip(head, row))
        out[cells[attrs["key"]]] = {k: cells.get(attrs[k]) for k in ("age", "gender") if attrs.get(k)}
    return out


def source_records(
    source: PhotoSource, root: Path, split_of: dict[str, str] | None = None
) -> tuple[list[InputRecord], int]:
    """Records of one source (file names relative to `root`) and how many photos had no person label."""
    table = {}
    if source.identity == "table":
        table = {row[0]: row[1] for row in read_table(source.identity_table)[1:] if len(row) >= 2}
    attrs = _attributes(source)
    paths = [Path(r) / n for r, _, names in os.walk(source.path, followlinks=True) for n in names]
    records, unlabelled = [], 0
    for path in sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(source.path)
        if any(part.startswith(".") for part in rel.parts) or (
            source.include and not re.search(source.include, rel.as_posix())
        ):
            continue
        person = _person_of(source, rel, table)
        if person is None:
            unlabelled += 1
            continue
        identity = f"{source.name}:{person}"
        split = source.split if source.split in SPLITS else (split_of or {}).get(identity)
        extra = {"split": split, "min_native_px": source.min_native_px, "min_sharp_px": source.min_sharp_px}
        a = attrs.get(person, {})
        age = a.get("age")
        records.append(
            InputRecord(
                file_name=path.relative_to(root).as_posix(),
                identity=identity,
                source=source.name,
                age=int(float(age)) if age not in (None, "", "NA") else None,
                gender=a.get("gender") or None,
                origin=rel.as_posix(),
                extra=extra,
            )
        )
    return records, unlabelled
