"""Every Python snippet and every `psp-restore` command in the README runs as written, from a folder outside the
repository, on the bundled model (photos named as in the README are copied there from the shared samples)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from psp_hub.common.imageio import load_image

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PSP_RESTORE = Path(sys.executable).with_name("psp-restore")

pytestmark = [pytest.mark.slow, pytest.mark.needs_shared]


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of one language, in order."""
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def cli_commands() -> list[str]:
    """Every `psp-restore` command line in the README's bash blocks."""
    lines = [line.strip() for block in blocks("bash") for line in block.splitlines()]
    return [line for line in lines if re.match(r"^(\.venv/bin/)?psp-restore\b", line)]


@pytest.fixture
def user_folder(tmp_path, samples) -> Path:
    """A folder outside the repository with the files the README's examples name."""
    assert not tmp_path.resolve().is_relative_to(REPO)
    person = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))
    shutil.copy(person[-1], tmp_path / "old_photo.jpg")  # 010582.jpg, 601 x 800
    for i, ref in enumerate(person[:3], start=1):
        shutil.copy(ref, tmp_path / f"me{i}.jpg")
    (tmp_path / "old_photos").mkdir()
    shutil.copy(person[-1], tmp_path / "old_photos" / "portrait.jpg")
    shutil.copy(samples / "references" / "celeba_7256" / "011760.jpg", tmp_path / "old_photos" / "someone.jpg")
    return tmp_path


def user_env() -> dict:
    """The user's environment: no PSP_MODEL (the bundled model) and no PYTHONPATH pointing into the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PSP_MODEL", "PYTHONPATH")}
    return {**env, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_the_readme_shows_python_snippets_and_cli_commands():
    assert len(blocks("python")) >= 2
    assert len(cli_commands()) >= 3
    assert any(c.count("--ref") >= 3 for c in cli_commands())  # the repeated form
    assert any(re.search(r"--ref \S+ \S+\.jpg", c) for c in cli_commands())  # the list form


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippet_runs_from_another_folder(index, user_folder):
    code = blocks("python")[index]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=user_folder, env=user_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    if "save_image(" in code:  # the snippet that saves its result
        saved = re.search(r'save_image\([^,]+, "([^"]+)"\)', code).group(1)
        assert load_image(user_folder / saved).shape == (1600, 1202, 3)


def test_cli_commands_run_as_written(user_folder):
    for command in cli_commands():
        argv = shlex.split(command)
        argv[0] = str(PSP_RESTORE)  # `.venv/bin/psp-restore` is this environment's script
        proc = subprocess.run(argv, cwd=user_folder, env=user_env(), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
    assert load_image(user_folder / "restored" / "old_photo.png").shape == (1600, 1202, 3)
    assert load_image(user_folder / "restored" / "portrait.png").shape == (3200, 2404, 3)  # --upscale 4
    assert (user_folder / "restored" / "portrait_faces" / "face_00.png").is_file()
    assert (user_folder / "restored_blind" / "old_photo.json").is_file()
