"""Where the project finds what it cannot download: the shared folder of data and auxiliary weights.

`PSP_SHARED_DIR` overrides the default, which is `../shared` beside the repository checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The shared folder (data, weights, samples); `PSP_SHARED_DIR` wins over `<repo>/../shared`."""
    env = os.environ.get("PSP_SHARED_DIR")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def weights_dir() -> Path:
    """Pretrained auxiliary networks (detector, identity, VGG, LPIPS, dlib); `PSP_WEIGHTS_DIR` overrides."""
    env = os.environ.get("PSP_WEIGHTS_DIR")
    return Path(env).expanduser().resolve() if env else shared_dir() / "weights"


def faces_dir() -> Path:
    """The aligned face corpus with its `metadata.csv`; `PSP_FACES_DIR` overrides."""
    env = os.environ.get("PSP_FACES_DIR")
    return Path(env).expanduser().resolve() if env else shared_dir() / "data" / "faces128"


def samples_dir() -> Path:
    """Unaligned photos and reference sets for pipeline and app tests."""
    return shared_dir() / "samples"
