"""Copy files out of a bare git mirror at HEAD, skipping blobs the mirror lacks (its largest files may be absent).

    python train/data/git_export.py GIT_DIR DEST PATH... [--match REGEX]
Prints how many files were written and how many were listed but absent from the mirror.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path


def list_blobs(git_dir: str, paths: list[str]) -> list[tuple[str, str]]:
    """(object id, path) of every file under `paths` at HEAD."""
    out = subprocess.run(
        ["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", "HEAD", "--", *paths], capture_output=True, check=True
    ).stdout
    rows = []
    for entry in out.decode().split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            _, kind, oid = meta.split()
            if kind == "blob":
                rows.append((oid, path))
    return rows


def export(git_dir: str, dest: Path, paths: list[str], match: str | None) -> tuple[int, int]:
    """Write the present blobs under dest/<path>; returns (written, absent)."""
    blobs = [(o, p) for o, p in list_blobs(git_dir, paths) if match is None or re.search(match, p)]
    # every file gets HEAD's commit time: a re-export leaves the builder's scan cache (keyed by size + mtime) valid
    stamp = int(
        subprocess.run(
            ["git", "--git-dir", git_dir, "log", "-1", "--format=%ct", "HEAD"], capture_output=True, check=True
        ).stdout
    )
    proc = subprocess.Popen(
        ["git", "--git-dir", git_dir, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    written = absent = 0
    for oid, path in blobs:
        proc.stdin.write(oid.encode() + b"\n")
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) < 3 or header[1] == b"missing":
            absent += 1
            continue
        data = proc.stdout.read(int(header[2]))
        proc.stdout.read(1)  # the newline after the object
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.utime(target, (stamp, stamp))
        written += 1
    proc.stdin.close()
    proc.wait()
    return written, absent


def main() -> None:
    """CLI entry."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("git_dir")
    p.add_argument("dest", type=Path)
    p.add_argument("paths", nargs="+")
    p.add_argument("--match", default=None, help="keep only paths matching this regular expression")
    a = p.parse_args()
    written, absent = export(a.git_dir, a.dest, a.paths, a.match)
    print(f"{a.dest}: {written} files written, {absent} listed but absent from the mirror")


if __name__ == "__main__":
    main()
