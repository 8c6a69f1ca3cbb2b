"""Shared test setup: offline, no telemetry, CPU-sized, and the shared data located once."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from psp_hub.paths import faces_dir, samples_dir, shared_dir, weights_dir  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared():
    """The shared folder; the suite needs it (CI has it beside the clone), so its absence is an error."""
    path = shared_dir()
    assert path.is_dir(), f"shared folder not found at {path}; set PSP_SHARED_DIR"
    return path


@pytest.fixture(scope="session")
def weights(shared):
    return weights_dir()


@pytest.fixture(scope="session")
def faces(shared):
    return faces_dir()


@pytest.fixture(scope="session")
def samples(shared):
    return samples_dir()
