"""The running Space through gradio_client: the named endpoint restores, bad input is a readable one-line error,
identical concurrent calls all succeed, and results and uploads are deleted after the configured time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from psp_hub import PSPGAN, tiny_config
from psp_hub.common.imageio import load_image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp: Path, model_dir: Path, **env) -> tuple[subprocess.Popen, str]:
    """Run app.py on a free loopback port (cwd in `tmp`, so cached examples land there); wait until it answers."""
    port = free_port()
    full_env = {
        **os.environ,
        "PSP_MODEL": str(model_dir),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        **env,
    }
    with open(tmp / "app.log", "w") as log:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")], cwd=tmp, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
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


ARGS = ("all", 2, 1.0, True, "best", False, False)  # faces, upscale, strength, drop, reference_faces, aligned, only


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    PSPGAN(tiny_config(64)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("app")
    proc, url = start_app(
        tmp, tiny_model, PSP_CACHE_EXAMPLES="0", PSP_MAX_REFERENCE_UPLOADS="4", PSP_MAX_VIDEO_FRAMES="30"
    )
    yield url, tmp / "app.log"
    stop_app(proc)


@pytest.fixture(scope="module")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="module")
def client(app_url, tmp_path_factory):
    return Client(
        app_url, verbose=False, analytics_enabled=False, download_files=str(tmp_path_factory.mktemp("downloads"))
    )


def test_named_endpoint_returns_the_restored_photo(client, samples):
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    slider, download, faces, face_files, references, status, report = client.predict(
        handle_file(str(photo)), [handle_file(str(r)) for r in refs], *ARGS, api_name="/restore"
    )
    out = load_image(download)
    assert out.shape == (1600, 1202, 3)
    assert len(slider) == 2 and load_image(slider[1]).shape[2] == 3
    assert len(faces) == 1 and len(references) == 3
    assert report["faces"][0]["references_used"] == [r.name for r in refs]
    shares = report["faces"][0]["reference_shares"]
    assert list(shares) == [r.name for r in refs] and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert f"{refs[0].name} ({shares[refs[0].name]:.0%})" in status  # the page names each reference's share
    assert all("of the references' weight" in item["caption"] for item in references)
    assert "Untrained model" in status  # the test model is untrained and the page says so
    assert [Path(f).suffix for f in face_files] == [".png"]  # the restored face at the model's full size, lossless
    assert load_image(face_files[0]).shape == (64, 64, 3)


def test_every_output_and_parameter_is_named_and_references_are_optional(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/restore"]
    labels = [r["label"] for r in info["returns"]]
    assert len(labels) == 7 and not any(label.startswith("value_") for label in labels), labels
    params = {p["parameter_name"]: p for p in info["parameters"]}
    assert params["references"]["parameter_has_default"] and not params["photo"]["parameter_has_default"]
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/restore", "/build_profile", "/check_video", "/restore_video"]
    assert params["profile"]["parameter_has_default"]
    for name, count in [("/build_profile", 2), ("/restore_video", 3)]:
        labels = [r["label"] for r in endpoints[name]["returns"]]
        assert len(labels) == count and not any(label.startswith("value_") for label in labels), labels


def test_references_may_be_left_out_or_given_as_one_file(client, samples):
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    *_, status, report = client.predict(handle_file(str(photo)), api_name="/restore")  # every option defaulted
    assert "blind" in status and report["references_given"] == 0
    ref = samples / "references" / "celeba_7222" / "000131.jpg"
    *_, references, status, report = client.predict(
        handle_file(str(photo)), handle_file(str(ref)), *ARGS, api_name="/restore"
    )
    assert report["references_given"] == 1  # taken as a list of one (whether it is used is the identity gate's call)
    assert [r["caption"].split(":")[0] for r in references] == ["000131.jpg"]  # aligned and shown


def test_identical_concurrent_requests_all_succeed(app_url, samples, tmp_path):
    """Identical calls share cached upload files: every one must come back whole (no half-written shared file)."""
    photo = samples / "references" / "celeba_7256" / "011760.jpg"
    refs = sorted((samples / "references" / "celeba_7256").glob("*.jpg"))[:2]
    results, errors = [], []

    def call(i: int) -> None:
        c = Client(app_url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / f"c{i}"))
        try:
            out = c.predict(handle_file(str(photo)), [handle_file(str(r)) for r in refs], *ARGS, api_name="/restore")
            results.append((load_image(out[1]).shape, [load_image(g["image"]).shape for g in out[2]]))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 6 and len(set(map(repr, results))) == 1  # the same, complete answer six times


def test_no_references_is_blind_and_said_so(client, samples):
    photo = samples / "photos" / "cropped" / "Paris_Hilton_crop.png"
    *_, status, report = client.predict(
        handle_file(str(photo)), [], "all", 1, 1.0, True, "best", False, False, api_name="/restore"
    )
    assert len(report["faces"]) == 1
    assert "blind" in status and report["faces"][0]["mode"] == "blind"


def test_too_many_references_uses_the_first_n(client, samples):
    photo = samples / "references" / "celeba_7256" / "011760.jpg"
    refs = (
        sorted((samples / "references" / "celeba_7256").glob("*.jpg"))
        + sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:1]
    )
    *_, status, report = client.predict(
        handle_file(str(photo)),
        [handle_file(str(r)) for r in refs],
        "all",
        1,
        1.0,
        True,
        "best",
        False,
        False,
        api_name="/restore",
    )
    assert "only the first 4 were used" in status
    assert report["references_given"] == 4


@pytest.mark.parametrize(
    "content,needle",
    [(b"just some text", "not an image file"), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image file")],
)
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
    *_, status, report = client.predict(
        handle_file(str(photo)),
        [handle_file(str(r)) for r in refs],
        "all",
        1,
        1.0,
        True,
        "best",
        False,
        False,
        api_name="/restore",
    )
    assert "may show someone else" in status and report["faces"][0]["mode"] == "blind"


def test_user_errors_are_one_log_line_without_traceback(client, app_server, tmp_path):
    from PIL import Image

    (tmp_path / "notes.png").write_text("not a photo")
    Image.new("RGB", (300, 200), (120, 130, 140)).save(tmp_path / "wall.jpg")
    for name in ("notes.png", "wall.jpg"):
        with pytest.raises(AppError):
            client.predict(handle_file(str(tmp_path / name)), api_name="/restore")
    log = app_server[1].read_text()
    refused = [line for line in log.splitlines() if "refused:" in line]
    assert any("not an image file" in line for line in refused) and any("No face" in line for line in refused)
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.slow
def test_results_and_uploads_are_deleted_after_the_configured_age(tmp_path, tiny_model, samples):
    """PSP_DELETE_AFTER=30: the cache sweep (every 5 s) removes the outputs and the uploads of a request."""
    proc, url = start_app(tmp_path, tiny_model, PSP_CACHE_EXAMPLES="0", PSP_DELETE_AFTER="30")
    try:
        c = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        photo = samples / "references" / "celeba_7222" / "010582.jpg"
        out = c.predict(handle_file(str(photo)), handle_file(str(photo)), *ARGS, api_name="/restore")
        served = [out[1]["path"], *[f["path"] for f in out[3]]]
        cache = tmp_path / "gradio"
        assert all(Path(p).resolve().is_relative_to(cache.resolve()) for p in served)  # written in Gradio's cache

        def left() -> list[Path]:  # this request's files and folder: its results and its uploaded photo
            files = [f for f in cache.rglob("*") if f.is_file() and (str(f) in served or f.name == photo.name)]
            return files + list((cache / "psp-gan-results").glob("*"))

        deadline = time.time() + 600  # the sweep runs every 5 s; the bound only guards against a hung server
        while time.time() < deadline and left():
            time.sleep(1)
        assert left() == []
        shipped = {p.name for p in (REPO / "examples").rglob("*.jpg")}
        others = [f for f in cache.rglob("*") if f.is_file() and f.name not in shipped and f.stat().st_size > 0]
        assert others == []  # what stays is the examples' copies (and Gradio's empty upload stubs)
    finally:
        stop_app(proc)


def test_fidelity_one_keeps_the_photo_and_the_new_options_reach_the_pipeline(client, samples):
    """fidelity=1 returns the photo's own face (the untrained test model's face is noise, so 0 differs, in the bands
    where the model's detail wins over a sharp photo's)."""
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    source = load_image(photo).astype(float)
    diffs = {}
    for fidelity in (0.0, 1.0):
        out = client.predict(
            handle_file(str(photo)),
            None,
            "all",
            1,
            1.0,
            True,
            "best",
            False,
            False,
            fidelity,
            "restore",
            0.05,
            api_name="/restore",
        )
        diffs[fidelity] = abs(load_image(out[1]).astype(float) - source).mean()
    assert diffs[1.0] < 0.01 and diffs[0.0] > 0.1, diffs  # 0.0 and 0.2 levels (the photo keeps its coarse band)
    with pytest.raises(Exception, match="greater than maximum"):  # the slider range, checked by Gradio
        client.predict(
            handle_file(str(photo)),
            None,
            "all",
            1,
            1.0,
            True,
            "best",
            False,
            False,
            1.5,
            "restore",
            0.05,
            api_name="/restore",
        )


# -- person profiles and video ---------------------------------------------------------------------


def test_a_downloaded_profile_restores_instead_of_the_references(client, samples, app_server, tmp_path):
    refs = sorted((samples / "references" / "celeba_7222").glob("*.jpg"))[:3]
    profile, summary = client.predict([handle_file(str(r)) for r in refs], api_name="/build_profile")
    assert Path(profile).name == "profile.psp" and "**3** reference(s)" in summary
    photo = samples / "references" / "celeba_7222" / "010582.jpg"
    *_, references, status, report = client.predict(
        handle_file(str(photo)), None, *ARGS, profile=handle_file(profile), api_name="/restore"
    )
    assert report["faces"][0]["references_used"] == [r.name for r in refs]
    assert report["reference_encodings_computed"] == 0  # encoded once, when the profile was built
    assert len(references) == 3 and "Person profile" in status
    (tmp_path / "fake.psp").write_bytes(b"not a profile at all")
    with pytest.raises(AppError, match="not a PSP-GAN person profile"):
        client.predict(
            handle_file(str(photo)), None, *ARGS, profile=handle_file(str(tmp_path / "fake.psp")), api_name="/restore"
        )
    with pytest.raises(AppError, match="upload reference photos"):
        client.predict(None, api_name="/build_profile")
    refused = [line for line in app_server[1].read_text().splitlines() if "refused:" in line]
    assert any("not a PSP-GAN person profile" in line for line in refused)


def _plain_clip(path: Path, frames: int) -> Path:
    """A faceless grey clip: enough for the length checks (only its frame count is read)."""
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="rgb24")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
    return path


def test_video_tab_estimates_restores_and_refuses_long_clips(client, tmp_path):
    from PIL import Image

    from psp_hub.video import probe
    from tests.test_video import FIXTURES, FRAMES, make_clip

    person = json.loads((FIXTURES / "index.json").read_text())[0]
    clip = make_clip(
        tmp_path / "clip.mp4", np.asarray(Image.open(FIXTURES / f"{person['target']}.webp").convert("RGB"))
    )
    info = client.predict(handle_file(str(clip)), api_name="/check_video")
    assert f"{FRAMES} frames" in info and "with audio" in info
    assert "No GPU here: this would take about" in info  # the test server runs on the CPU
    video, status, report = client.predict(handle_file(str(clip)), None, None, api_name="/restore_video")
    out = probe(video)
    assert (out.frames, out.width, out.height, out.has_audio) == (FRAMES, 256, 192, True)
    assert report["frames"] == FRAMES and report["faces_restored"] == FRAMES and "audio copied" in status
    long_clip = _plain_clip(tmp_path / "long.mp4", FRAMES + 1)
    for api in ("/check_video", "/restore_video"):
        with pytest.raises(AppError, match=f"{FRAMES + 1} frames .* at most {FRAMES} frames"):
            client.predict(handle_file(str(long_clip)), api_name=api)
