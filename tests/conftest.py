"""Shared test setup: offline, no telemetry, CPU-sized, the shared data located once, and the markers applied here.

Markers (select with -m): `needs_shared` (reads ../shared: data or auxiliary weights), `slow` (left out of the fast
lane, `pytest -m "not slow and not browser"`), `browser` (drives a real headless Chromium). They are applied
centrally in pytest_collection_modifyitems below, so test files need not carry them.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from psp_hub.common.paths import faces_dir, samples_dir, shared_dir, weights_dir

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

MARKERS = {
    "needs_shared": "reads the shared folder (../shared or PSP_SHARED_DIR): face data or auxiliary weights",
    "slow": "takes more than a few seconds on 2 CPU cores; left out of the fast lane",
    "browser": "drives a real headless Chromium against the running app",
}
SHARED_FIXTURES = {"shared", "weights", "faces", "samples"}

# Modules whose tests reach the shared folder without the fixtures (default weight paths: the face detector, VGG,
# ArcFace, LPIPS, dlib; the training stages).
SHARED_MODULES = {
    "test_app",
    "test_app_browser",
    "test_diffaugment",
    "test_handover",
    "test_losses",
    "test_mixed_resolution",
    "test_multiprocess",
    "test_pipeline",
    "test_release_model",
    "test_train_speed",
    "test_training",
}

# Whole modules left out of the fast lane, by what they do (not measured one by one here): training runs, several
# processes, torch.compile / ONNX export, dataset builds (with loader workers or the face detector), the browser,
# and the bundled 128 px model restoring and scoring real faces (measured: 179 s for its 4 tests, see below).
SLOW_MODULES = {
    "test_app_browser",
    "test_compilation",
    "test_compile",
    "test_data_build",
    "test_data_photos",
    "test_data_stream",
    "test_export_onnx",
    "test_handover",
    "test_multiprocess",
    "test_release_model",
    "test_train_speed",
    "test_training",
}

# Single tests measured slow. Wall seconds of the call from
#   nice -n 10 python -m pytest -p no:cacheprovider --durations=0 <the 13 test files of models, identity, metrics,
#   face alignment/detection, evaluate, imageio, peak memory, release model, common, golden, model zoo>
# on the shared 2-core machine under load (load average 11-15; the same tests alone were 3-10x faster, e.g. the
# 128 px zoo case 3.4 s alone, 44 s there). Left out: over ~15 s there and real models or subprocesses inside.
SLOW_TESTS = {
    "test_evaluate::test_evaluate_writes_every_method_metric_and_group",  # 79.9 s: evaluate on real faces, 3 nets
    "test_evaluate_256::test_evaluate_at_256_with_a_smaller_compare_model",  # 111 s (521 s under load 10)
    "test_metrics::test_lpips_matches_package",  # 18.7 s: the lpips package's VGG beside ours
    "test_hub::test_from_pretrained_hub_id_through_loopback_endpoint_then_offline_cache",  # 18.0 s: 2 subprocesses
    "test_model_zoo::test_forward_backward_and_round_trip[psp128-input_query-K2]",  # 44.1 s (3.4 s alone)
    "test_model_zoo::test_forward_backward_and_round_trip[psp128-reference_size64-K2]",  # its 128 px sibling's cost
    "test_warm_start::test_the_psp256_config_grows_from_the_bundled_model_keeping_its_reference_encoder",  # 104 s
    # under load 9: builds the 256 px model and loads the bundled one twice
}
# Then the fast lane itself, measured once:
#   /usr/bin/time -v nice -n 10 python -m pytest -q -p no:cacheprovider -m "not slow and not browser" --durations=80
# took 42:21 wall for 700 s of CPU (user 670 + sys 30; 27 % of a core on average, load average ~20 on 2 cores).
# On a quiet 2-core machine (a clean clone of 7f8950d, load average 0.2) the fast lane ran 270 tests in 116.7 s, and
# the full suite (.ci/run: ruff, then pytest; an evaluation shared the machine for its first minutes) 391 in 648.4 s.
# Later (bce9f89): the fast lane 294 tests in 133.8 s (`make test-fast`, the development checkout, load ~1), the full
# suite on a clean clone (.ci/run) 422 in 731.6 s.
# In the loaded run, its tests over ~20 s wall (above ~5 s of CPU) went to the slow lane, except the core model tests; seconds
# are those wall times:
SLOW_TESTS |= {
    "test_video::test_video_keeps_frames_size_and_audio_and_flickers_less_than_per_frame",  # 362.6
    "test_discriminators::test_discriminator_learns_real_vs_blurred_faces",  # 284.4: trains a discriminator
    "test_discriminators::test_stylegan2_discriminator_shapes_any_batch[1024]",  # 24.9
    "test_contributions::test_bundled_model_gives_the_right_person_more_weight_than_a_lookalike",  # 248.2
    "test_profiles::test_an_album_with_a_profile_encodes_the_references_once",  # 206.5
    "test_losses::test_identity_loss_lower_for_same_person",  # 82.6
    "test_losses::test_perceptual_zero_for_identical_and_grows_with_degradation",  # 24.2
    "test_cli::test_folder_run_writes_outputs_and_reports_the_bad_file",  # 52.5
    "test_cli::test_existing_outputs_are_not_overwritten_without_the_flag",  # 46.9
    "test_cli::test_no_face_only_faces_and_usage_errors",  # 14.7
    "test_cli::test_console_script_runs",  # 12.8: a subprocess
    "test_pipeline::test_references_of_the_person_are_used_and_a_stranger_is_dropped",  # 38.6
    "test_pipeline::test_grey_rgba_and_16_bit_photos",  # 31.1
    "test_pipeline::test_output_pixel_cap_lowers_the_upscale",  # 16.7
    "test_pipeline::test_report_is_complete_and_json_ready",  # 15.0
    "test_pipeline::test_more_references_than_k_picks_the_best_k_and_says_why",  # 13.5
    "test_model::test_output_shapes_for_sizes_and_reference_counts[reference_query-128]",  # 45.7
    "test_model::test_output_shapes_for_sizes_and_reference_counts[input_query-128]",  # 56.5
    "test_identity::test_net_compiles_as_one_graph_with_the_same_embeddings",  # 37.2: compile
    "test_metrics::test_arcface_identity_similarity_same_vs_different",  # 38.3 (test_identity covers same/different)
    "test_frechet::test_real_faces_are_closer_to_real_faces_than_blurred_ones",  # 32.0 beside a compile: VGG, 144 faces
    "test_frechet::test_benchmark_scores_a_prior_export_against_the_reference_rows",  # 12.9: a subprocess, VGG
    "test_frechet::test_a_prior_run_validates_by_frechet_distance",  # 34.4 under load: a prior run, VGG
}

BROWSER_MODULES = {"test_app_browser"}


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers here too, so --strict-markers accepts them whatever pyproject lists."""
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test needs_shared / slow / browser from the tables above and the fixtures it uses."""
    for item in items:
        module = item.path.stem
        test = f"{module}::{item.name}"  # the name carries the parameters, e.g. test_x[psp128-input_query-K2]
        if module in SHARED_MODULES or SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_shared)
        if module in SLOW_MODULES or test in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)


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


@pytest.fixture
def fresh_accelerator_state():
    """A callable that forgets accelerate's process-wide state, called before and after the test: an Accelerator()
    built in the test can take its own precision, and later tests' Accelerator() does not inherit it (bf16)."""
    from accelerate.state import AcceleratorState

    def forget() -> None:
        AcceleratorState._reset_state(reset_partial_state=True)

    forget()
    yield forget
    forget()
