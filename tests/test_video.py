"""Video restoration on a short synthetic clip: a shared face moved and scaled over 30 frames, with a tone."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from psp_hub import PSPGAN, tiny_config
from psp_hub.face.paste import paste_faces
from psp_hub.pipeline import RestorationPipeline
from psp_hub.profiles import PersonProfile
from psp_hub.video import VideoConfig, estimate_seconds, iter_frames, probe, restore_video
from tests.model_helpers import make_live

FIXTURES = Path(__file__).parent / "fixtures" / "release_faces"
FRAMES, SIZE, FPS = 30, (256, 192), 30


def face_square(i: int) -> tuple[int, int, int]:
    """x, y and side of the face in frame i: it grows from 96 to 136 px while moving right and down."""
    t = i / (FRAMES - 1)
    return round(40 + 80 * t), round(20 + 10 * t), round(96 + 40 * t)


def make_clip(path: Path, face: np.ndarray) -> Path:
    """H.264 + AAC mp4: the face pasted on a gradient at `face_square(i)`, and a 440 Hz tone for the clip's length."""
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([80 + 60 * xx / w, 90 + 40 * yy / h, 120 + 0 * xx], -1).astype(np.uint8)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        audio = c.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for i in range(FRAMES):
            x, y, s = face_square(i)
            img = bg.copy()
            img[y : y + s, x : x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100 * FRAMES // FPS) / 44100)).astype(np.float32)[None]
        for k in range(0, tone.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, k
            c.mux(audio.encode(af))
        c.mux(audio.encode())
    return path


def flicker(frames: list[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change inside the face, after undoing the known motion (each frame's face
    square resized to 128 px, inner 80 %): what is left is flicker, not movement."""
    canon = [
        cv2.resize(f[y : y + s, x : x + s], (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)[13:115, 13:115]
        for f, (x, y, s) in zip(frames, map(face_square, range(len(frames))))
    ]
    return float(np.mean([np.abs(a - b).mean() for a, b in itertools.pairwise(canon)]))


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return sum(p.duration or 0 for p in c.demux(a)) * float(a.time_base)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video")
    person = json.loads((FIXTURES / "index.json").read_text())[0]
    face = np.asarray(Image.open(FIXTURES / f"{person['target']}.webp").convert("RGB"))
    torch.manual_seed(0)
    pipe = RestorationPipeline(make_live(PSPGAN(tiny_config(64)), seed=3).eval())
    profile = PersonProfile.build(pipe, [FIXTURES / f"{r}.webp" for r in person["references"]], aligned=True)
    return pipe, profile, make_clip(tmp / "clip.mp4", face), tmp


def test_video_keeps_frames_size_and_audio_and_flickers_less_than_per_frame(setup):
    pipe, profile, clip, tmp = setup
    refs = profile.reference_set(pipe)
    report = restore_video(pipe, clip, tmp / "out.mp4", refs, VideoConfig(progress=False))
    src, out = probe(clip), probe(tmp / "out.mp4")
    assert report.frames == out.frames == src.frames == FRAMES
    assert (out.width, out.height, out.fps) == (src.width, src.height, src.fps)
    assert report.tracks == 1 and report.faces_restored == FRAMES and report.personalized_tracks == 1
    assert out.has_audio and report.audio_copied
    assert abs(audio_seconds(tmp / "out.mp4") - audio_seconds(clip)) < 1e-3  # the packets are copied, not re-encoded
    video = list(iter_frames(tmp / "out.mp4"))
    source = list(iter_frames(clip))
    # frame by frame: each frame's own detection, its restored crop pasted as the video path pastes (no band split)
    results = [pipe.restore(frame, refs, upscale=1.0) for frame in source]
    per_frame = [paste_faces(frame, [(f.restored, f.affine) for f in r.faces], 1.0, pipe.config.feather)
                 for frame, r in zip(source, results, strict=True)]  # fmt: skip
    f_video, f_frames, f_source = flicker(video), flicker(per_frame), flicker(source)
    f_photo = flicker([r.image for r in results])  # the photo pipeline: the photo's own coarse structure kept
    print(
        f"flicker (mean |change| per frame inside the motion-compensated face, 0-255): source {f_source:.2f}, "
        f"per-frame restoration {f_frames:.2f}, video restoration {f_video:.2f}, photo pipeline per frame "
        f"{f_photo:.2f}; {report.frames_per_second:.2f} frames/s on this CPU (tiny model)"
    )
    assert f_video < f_frames
    # the face really was restored: against the same clip at fidelity 1 (the photo's own face, pasted unchanged) the
    # output moved inside the face square and nowhere else
    fidelity, pipe.config.fidelity = pipe.config.fidelity, 1.0
    try:
        restore_video(pipe, clip, tmp / "kept.mp4", refs, VideoConfig(progress=False))
    finally:
        pipe.config.fidelity = fidelity  # the module's shared pipeline, as the other tests find it
    change = np.abs(video[0].astype(int) - next(iter_frames(tmp / "kept.mp4")).astype(int)).mean(-1)
    x, y, side = face_square(0)
    inside = np.zeros(change.shape, bool)
    inside[y : y + side, x : x + side] = True
    print(f"first frame against fidelity 1: face {change[inside].mean():.3f}, rest {change[~inside].mean():.3f}")
    assert change[inside].mean() > 0.5 and change[~inside].mean() < 0.1 * change[inside].mean()


def test_long_clip_is_refused_with_the_limit_in_the_message_and_a_time_estimate_is_given(setup):
    pipe, profile, clip, tmp = setup
    assert estimate_seconds(pipe, clip, profile.reference_set(pipe)) > 0
    with pytest.raises(ValueError, match=r"30 frames .* limit is 10 frames"):
        restore_video(pipe, clip, tmp / "never.mp4", None, VideoConfig(max_frames=10, progress=False))
