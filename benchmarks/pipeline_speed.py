"""End-to-end speed of the photo pipeline: a 1024 px photo with 3 faces and 3 reference photos.

    python benchmarks/pipeline_speed.py                      # CPU (or CUDA when present), tiny + 128 px configs
    python benchmarks/pipeline_speed.py --device cuda --json out.json

Weights are random (speed does not depend on them). References are forced onto every face
(mismatched_references="keep", reference_faces="all") so that all 3 faces run the reference path.
Reported: `end_to_end` = prepare the 3 references + restore the photo (decode, detect, align, identity,
model, paste) from files; `restore_cached_refs` = the same photo when the references were prepared earlier
(a CLI batch or a Space session); and the per-stage split from the pipeline's report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub import PSPGAN, PSPGANConfig, default_model_dir, tiny_config
from psp_hub.common.imageio import load_image, save_image
from psp_hub.common.paths import samples_dir
from psp_hub.face.detection import FaceDetector
from psp_hub.pipeline import (
    IdentityScorer,
    PipelineConfig,
    RestorationPipeline,
    load_restoration_model,
    pick_device,
)

CONFIGS = {
    "tiny-128": lambda: tiny_config(out_size=128),  # the untrained fallback the app uses without weights
    "psp-gan-128": lambda: PSPGANConfig(out_size=128),  # the 128 px model's default widths (as psp_hub.benchmark)
    "bundled": lambda: PSPGANConfig.from_dict(json.loads((default_model_dir() / "config.json").read_text())),  # shipped
}


def bench_photo(path: Path | None, out_dir: Path) -> Path:
    """The benchmark photo: the shared 3-face group photo scaled so its long side is 1024 px."""
    import cv2

    src = path or samples_dir() / "photos" / "whole" / "10045.png"
    image = load_image(src)
    s = 1024 / max(image.shape[:2])
    image = cv2.resize(
        image,
        (round(image.shape[1] * s), round(image.shape[0] * s)),
        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
    )
    return save_image(image, out_dir / "bench_1024.png")


def summarise(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4), "n": len(xs)}


def run_config(name: str, model, device, photo: Path, refs: list[Path], repeats: int, warmup: int) -> dict:
    """Time one model inside the full pipeline."""
    model = model.eval().to(device)
    pipe = RestorationPipeline(
        model,
        detector=FaceDetector(device=device, score_threshold=0.5),
        identity=IdentityScorer(device=device),
        config=PipelineConfig(upscale=2, mismatched_references="keep", reference_faces="all"),
    )
    end_to_end, cached, prepare, stages = [], [], [], []
    refset = pipe.prepare_references([str(r) for r in refs])
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        fresh = pipe.prepare_references([str(r) for r in refs])
        t1 = time.perf_counter()
        result = pipe.restore(str(photo), fresh)
        t2 = time.perf_counter()
        again = pipe.restore(str(photo), refset)
        t3 = time.perf_counter()
        faces = result.report["faces"]
        assert len(faces) == 3, f"expected 3 faces, found {len(faces)}"
        assert all(len(f["references_used"]) == 3 for f in faces), "every face should use the 3 references"
        assert result.image.shape[:2] == again.image.shape[:2]
        if i >= warmup:
            prepare.append(t1 - t0)
            end_to_end.append(t2 - t0)
            cached.append(t3 - t2)
            stages.append(again.report["timings_s"])
    split = {k: round(statistics.median(s[k] for s in stages), 4) for k in stages[0]}
    return {
        "config": name,
        "out_size": int(model.config.out_size),
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "end_to_end_s": summarise(end_to_end),
        "prepare_3_references_s": summarise(prepare),
        "restore_cached_refs_s": summarise(cached),
        "stages_cached_refs_s": split,
        "output_size": list(result.image.shape[1::-1]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--configs",
        default="tiny-128,psp-gan-128",
        help=f"comma list of {list(CONFIGS)} and/or 'default' "
        "(the model load_restoration_model picks: PSP_MODEL, bundled or untrained)",
    )
    p.add_argument("--photo", type=Path, default=None)
    p.add_argument("--refs", type=Path, nargs="*", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    refs = args.refs or sorted((samples_dir() / "references" / "celeba_7222").glob("*.jpg"))[:3]
    with tempfile.TemporaryDirectory() as tmp:
        photo = bench_photo(args.photo, Path(tmp))
        h, w = load_image(photo).shape[:2]
        results = []
        for name in args.configs.split(","):
            if name == "default":
                model, info = load_restoration_model(device=device)
                name = f"default ({info.source}, trained={info.trained})"
            else:
                torch.manual_seed(0)
                model = PSPGAN(CONFIGS[name]())
            results.append(run_config(name, model, device, photo, refs, args.repeats, args.warmup))
            print(json.dumps(results[-1]), flush=True)
    summary = {
        "photo": f"{w}x{h}, 3 faces",
        "references": [r.name for r in refs],
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print("\nconfig            end-to-end (s)   cached refs (s)   model stage (s)")
    for r in results:
        print(
            f"{r['config'][:16]:16}  {r['end_to_end_s']['median']:>12.3f}   {r['restore_cached_refs_s']['median']:>14.3f}   "
            f"{r['stages_cached_refs_s']['restore']:>14.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
