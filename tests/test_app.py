"""The running Space through gradio_client: the named endpoint restores, and bad input is a readable error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from psp_hub import PSPGAN, tiny_config
from psp_hub.imageio import load_image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp: Path, model_dir: Path, **env) -> tuple[subprocess.Popen, str]:
    """Run app.py on a free loopback port (cwd in `tmp`, so cached examples land there); wait until it answers."""
    port = free_port()
    full_env = {**os.environ, "PSP_MODEL": str(model_dir), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_TEMP_DIR": str(tmp / "gradio"), **env}
    log = open(tmp / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=tmp, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 150
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited early:\n{(tmp / 'app.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("app did not start in time")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    PSPGAN(tiny_config(64)).save_pretrained(tmp / "tiny")
    proc, url = start_app(tmp, tmp / "tiny", PSP_CACHE_EXAMPLES="0", PSP_MAX_REFERENCE_UPLOADS="4")
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    return Client(app_url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


def test_named_endpoint_returns_the_restored_photo(client, samples):
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    slider, download, faces, references, status, report = client.predict(
        handle_file(str(photo)), [handle_file(str(r)) for r in refs], "all", 2, 1.0, True, "best", False, False,
        api_name="/restore")
    out = load_image(download)
    assert out.shape == (1600, 1202, 3)
    assert len(slider) == 2 and load_image(slider[1]).shape[2] == 3
    assert len(faces) == 1 and len(references) == 3
    assert report["faces"][0]["references_used"] == [r.name for r in refs]
    assert "Untrained model" in status  # the test model is untrained and the page says so


def test_no_references_is_blind_and_said_so(client, samples):
    photo = samples / "photos" / "cropped" / "Paris_Hilton_crop.png"
    *_, status, report = client.predict(handle_file(str(photo)), [], "all", 1, 1.0, True, "best", False, False,
                                        api_name="/restore")
    assert "blind" in status and report["faces"][0]["mode"] == "blind"


def test_too_many_references_uses_the_first_n(client, samples):
    photo = samples / "references" / "celeba_7256" / "011760.jpg"
    refs = sorted((samples / "references" / "celeba_7256").glob("*.jpg")) + sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:1]
    *_, status, report = client.predict(handle_file(str(photo)), [handle_file(str(r)) for r in refs], "all", 1, 1.0, True,
                                        "best", False, False, api_name="/restore")
    assert "only the first 4 were used" in status
    assert report["references_given"] == 4


@pytest.mark.parametrize("content,needle", [(b"just some text", "not an image file"),
                                            (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image file")])
def test_bad_photo_is_a_readable_error(client, tmp_path, content, needle):
    bad = tmp_path / "photo.png"
    bad.write_bytes(content)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(bad)), [], "all", 2, 1.0, True, "best", False, False, api_name="/restore")
    assert needle in str(err.value) and "Traceback" not in str(err.value)


def test_no_face_is_a_readable_error(client, tmp_path):
    from PIL import Image

    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (300, 200), (120, 130, 140)).save(wall)
    with pytest.raises(Exception, match="No face was found"):
        client.predict(handle_file(str(wall)), [], "all", 2, 1.0, True, "best", False, False, api_name="/restore")


def test_huge_photo_is_refused_with_a_message(client, tmp_path):
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("RGB", (6000, 4500), (90, 90, 90)).save(huge)  # 27 MP, above the app's 25 MP cap; small file
    with pytest.raises(Exception, match="megapixels"):
        client.predict(handle_file(str(huge)), [], "all", 2, 1.0, True, "best", False, False, api_name="/restore")


def test_references_of_someone_else_are_flagged(client, samples):
    photo = samples / "references" / "celeba_7256" / "011760.jpg"
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    *_, status, report = client.predict(handle_file(str(photo)), [handle_file(str(r)) for r in refs], "all", 1, 1.0,
                                        True, "best", False, False, api_name="/restore")
    assert "may show someone else" in status and report["faces"][0]["mode"] == "blind"
