"""CPU latency of the exported model in onnxruntime beside PyTorch (batch 1, K = 0 and K = 3).

    python benchmarks/onnx_speed.py                         # the bundled checkpoints/psp-gan-128
    python benchmarks/onnx_speed.py --model PATH --threads 2 --repeats 20 --json out.json

Rows: `blind` (K = 0 graph), `full_k3` (lq + 3 references -> image, references encoded every call) and
`cached_k3` (the restore from cached reference tensors: what an album or a video pays per face). Times are the
median of `--repeats` calls after `--warmup`, both engines on the same number of threads.
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

from psp_hub.onnx.backend import OnnxBackend
from psp_hub.onnx.export import OPSET, export_model
from psp_hub.pipeline import load_restoration_model


def median_ms(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(1000 * statistics.median(times), 2)


def bench(model, tmp: Path, repeats: int, warmup: int, threads: int) -> list[dict]:
    """Export K = 0 and K = 3 (with the cached graphs) and time each call in both engines."""
    s = model.config.out_size
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(1, 3, s, s, generator=gen) * 2 - 1
    refs = torch.rand(1, 3, 3, s, s, generator=gen) * 2 - 1
    blind = OnnxBackend(export_model(model, tmp / "k0.onnx", 0).restore, threads=threads)
    k3 = OnnxBackend(export_model(model, tmp / "k3.onnx", 3, cached=True).restore, threads=threads)
    k3_full = OnnxBackend(tmp / "k3.onnx", threads=threads)
    k3_full.encoder = k3_full.cached = None
    with torch.inference_mode():
        torch_cache, onnx_cache = model.encode_references(refs), k3.encode_references(refs)
    cases = {
        "blind": (lambda: model.restore(lq), lambda: blind.restore(lq)),
        "full_k3": (lambda: model(lq, refs), lambda: k3_full(lq, refs)),
        "cached_k3": (lambda: model.restore(lq, torch_cache), lambda: k3.restore(lq, onnx_cache)),
        "encode_k3": (lambda: model.encode_references(refs), lambda: k3.encode_references(refs)),
    }
    rows = []
    for name, (pt, ox) in cases.items():
        with torch.inference_mode():
            pt_ms, ox_ms = median_ms(pt, repeats, warmup), median_ms(ox, repeats, warmup)
        rows.append({"case": name, "pytorch_ms": pt_ms, "onnxruntime_ms": ox_ms, "speedup": round(pt_ms / ox_ms, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Hub id or folder (default: the bundled psp-gan-128)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, info = load_restoration_model(args.model, device="cpu", allow_untrained=False)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench(model, Path(tmp), args.repeats, args.warmup, args.threads)
    import onnxruntime

    env = {
        "model": info.source,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
    }
    print(json.dumps(env))
    print(f"{'case':<10} {'PyTorch ms':>11} {'ORT ms':>9} {'speed-up':>9}")
    for r in rows:
        print(f"{r['case']:<10} {r['pytorch_ms']:>11.2f} {r['onnxruntime_ms']:>9.2f} {r['speedup']:>8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
