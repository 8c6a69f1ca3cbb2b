"""Atomic, resumable checkpoints: written to a temporary folder, then renamed into place.

A run killed at any moment leaves either the previous checkpoint or the new one, never a half-written
one: the folder only gets its final name (`checkpoint-<step>`) once every file is on disk, and the
`latest` pointer is replaced atomically after that.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"


@dataclass
class TrainState:
    """Counters that make resuming exact: the next step, and how many samples this process consumed."""

    step: int = 0
    samples_seen: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step, self.samples_seen = int(state["step"]), int(state["samples_seen"])


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None (the `latest` pointer, else the highest step folder)."""
    root = checkpoint_root(output_dir)
    pointer = root / "latest"
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / "COMPLETE").is_file():
            return candidate
    done = sorted(
        (p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if (p / "COMPLETE").is_file()),
        key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
    )
    return done[-1] if done else None


def save_checkpoint(accelerator, output_dir: str | Path, step: int, keep: int, extra: dict | None = None) -> Path:
    """accelerator.save_state into `.tmp-<step>`, mark it COMPLETE, rename, repoint `latest`, prune old ones."""
    root = checkpoint_root(output_dir)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "meta.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=2))
        (tmp / "COMPLETE").write_text("ok\n")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer_tmp = root / ".latest.tmp"
        pointer_tmp.write_text(final.name + "\n")
        os.replace(pointer_tmp, root / "latest")
        _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str | Path) -> None:
    accelerator.load_state(str(path))


def _prune(root: Path, keep: int) -> None:
    done = sorted(
        (p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if (p / "COMPLETE").is_file()),
        key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
    )
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(f".tmp-{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
