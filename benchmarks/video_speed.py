"""Video restoration speed (frames/s) on the synthetic 30-frame test clip, or a given clip, with a person profile.

    python benchmarks/video_speed.py                               # bundled psp-gan-128, CUDA when present
    python benchmarks/video_speed.py --device cpu --clip my.mp4 --refs a.jpg b.jpg c.jpg

The synthetic clip is the test's (a held-out face moved and scaled over 30 frames, 256x192, with a tone); its
profile is built from that person's three aligned reference crops. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub.pipeline import RestorationPipeline
from psp_hub.profiles import PersonProfile
from psp_hub.video import VideoConfig, probe, restore_video
from tests.test_video import FIXTURES, make_clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--clip", default=None, help="video file (default: the synthetic test clip)")
    parser.add_argument("--refs", nargs="*", default=None, help="reference photos (default: the clip person's crops)")
    args = parser.parse_args(argv)
    pipe = RestorationPipeline.from_pretrained(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        person = json.loads((FIXTURES / "index.json").read_text())[0]
        if args.clip is None:
            face = np.asarray(Image.open(FIXTURES / f"{person['target']}.webp").convert("RGB"))
            clip = make_clip(tmp / "clip.mp4", face)
        else:
            clip = Path(args.clip)
        t = time.perf_counter()
        if args.refs:
            profile = PersonProfile.build(pipe, args.refs)
        else:
            profile = PersonProfile.build(pipe, [FIXTURES / f"{r}.webp" for r in person["references"]], aligned=True)
        t_profile = time.perf_counter() - t
        report = restore_video(pipe, clip, tmp / "out.mp4", profile.reference_set(pipe), VideoConfig(progress=False))
        info = probe(clip)
    print(
        json.dumps(
            {
                "device": str(pipe.device),
                "model": pipe.info.source if pipe.info else None,
                "clip": f"{info.width}x{info.height}, {info.frames} frames",
                "profile_s": round(t_profile, 2),
                "video_s": round(report.seconds, 2),
                "frames_per_s": round(report.frames_per_second, 2),
                "faces_restored": report.faces_restored,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
