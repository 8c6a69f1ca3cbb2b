"""What the per-reference shares cost in onnxruntime on CPU (bundled model, batch 1, K = 3), beside PyTorch.

    python benchmarks/onnx_shares_speed.py --threads 1 --rounds 20

Rows: the restore graphs as exported before they had the `contributions` output (image only), the current graphs
with the shares not asked (their `If` skips the attention measure) and asked, and PyTorch without and with
`return_contributions`. Variants are timed round-robin, one call each per round, so load on a shared machine hits
all alike; medians (and minima) in ms. Also checks the current graph's image equals the image-only graph's.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from psp_hub.onnx.backend import OnnxBackend
from psp_hub.onnx.export import _example, _export, export_model
from psp_hub.onnx.graphs import CachedRestoreGraph, EncoderGraph, RestoreGraph, cache_input_names, cache_layout
from psp_hub.pipeline import load_restoration_model


def image_only_files(model, tmp: Path):
    """The graphs as exported before the contributions output (image only)."""
    layout, (lq, refs, mask) = cache_layout(model), _example(model, 3)
    st = torch.tensor(1.0)
    full = _export(
        RestoreGraph(model),
        (lq, refs, mask, st),
        tmp / "old.onnx",
        ["lq", "refs", "ref_mask", "strength"],
        ["image"],
        [True, True, True, False],
        {},
    )
    names = cache_input_names(layout)
    cached = _export(
        CachedRestoreGraph(model, layout),
        (lq, mask, st, *EncoderGraph(model, layout)(refs, mask)),
        tmp / "old.cached.onnx",
        ["lq", "ref_mask", "strength", *names],
        ["image"],
        [True, True, False] + [True] * len(names),
        {},
    )
    return full, cached


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, info = load_restoration_model(None, device="cpu", allow_untrained=False)
    gen = torch.Generator().manual_seed(0)
    s = model.config.out_size
    lq, refs = torch.rand(1, 3, s, s, generator=gen) * 2 - 1, torch.rand(1, 3, 3, s, s, generator=gen) * 2 - 1
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        tmp = Path(tmp)
        t0 = time.time()
        export_model(model, tmp / "new.onnx", 3, cached=True)
        t_new = time.time() - t0
        old_full, old_cached = image_only_files(model, tmp)
        new = OnnxBackend(tmp / "new.onnx", threads=a.threads)
        new_full = OnnxBackend(tmp / "new.onnx", threads=a.threads)
        new_full.encoder = new_full.cached = None
        old_f, old_c = (
            ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (old_full, old_cached)
        )
        onnx_cache, torch_cache = new.encode_references(refs), model.encode_references(refs)
        x, r, m, st = lq.numpy(), refs.numpy(), np.ones((1, 3), bool), np.asarray(1.0, np.float32)
        cfeeds = {"lq": x, "ref_mask": m, "strength": st}
        for n, (res, key) in zip(cache_input_names(new.layout), new.layout):
            cfeeds[n] = onnx_cache.features[int(res)][key].numpy()
        # sanity: the new graph's image equals the old one's, its shares PyTorch's
        same = float(np.abs(new.restore(lq, onnx_cache).image.numpy() - old_c.run(["image"], cfeeds)[0]).max())
        dshare = float(
            (
                new.restore(lq, onnx_cache, return_contributions=True).contributions
                - model.restore(lq, torch_cache, return_contributions=True).contributions
            )
            .abs()
            .max()
        )
        cases = {
            "cached: image-only graph (before)": lambda: old_c.run(["image"], cfeeds),
            "cached: new graph, shares not asked": lambda: new.restore(lq, onnx_cache),
            "cached: new graph, shares asked": lambda: new.restore(lq, onnx_cache, return_contributions=True),
            "cached: PyTorch": lambda: model.restore(lq, torch_cache),
            "cached: PyTorch, shares asked": lambda: model.restore(lq, torch_cache, return_contributions=True),
            "full: image-only graph (before)": lambda: old_f.run(
                ["image"], {"lq": x, "refs": r, "ref_mask": m, "strength": st}
            ),
            "full: new graph, shares not asked": lambda: new_full(lq, refs),
            "full: new graph, shares asked": lambda: new_full(lq, refs, return_contributions=True),
        }
        for fn in cases.values():
            fn()
            fn()
        times = {k: [] for k in cases}
        for _ in range(a.rounds):
            for k, fn in cases.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "model": info.source,
                "threads": a.threads,
                "rounds": a.rounds,
                "export_s": round(t_new, 1),
                "image_diff_new_vs_old": same,
                "shares_diff_vs_pytorch": dshare,
                "onnxruntime": ort.__version__,
                "torch": torch.__version__,
            }
        )
    )
    for k, v in times.items():
        print(f"{k:<40} {1000 * statistics.median(v):8.1f} ms  (min {1000 * min(v):.1f})")


if __name__ == "__main__":
    main()
