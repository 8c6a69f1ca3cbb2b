"""Export PSP-GAN to ONNX: `python -m psp_hub.export_onnx --model ID_OR_PATH --out model.onnx [--refs K] [--cached]`.

Writes `model.onnx` (lq + K references + mask -> image); with `--cached` also `model.encoder.onnx` (references ->
cache tensors) and `model.cached.onnx` (lq + cache tensors -> image). Both restore graphs also output
`contributions` (B, K), each reference's share as `PSPGAN.restore(..., return_contributions=True)` gives it; where
that costs extra work (the attention measure of a model without reference selection) it runs only when the bool
input `return_contributions` is true (optional_output.py). Every graph has a dynamic batch, fixed
spatial sizes (lq at out_size, references at the model's reference_input_size) and K fixed at export (fewer
references: mask the unused slots). Uses torch's dynamo
exporter (needs onnxscript); the TorchScript exporter cannot trace this model, whose stages are keyed by spatial
size (traced sizes are tensors, so the dict lookups fail). The model config and graph layout are stored in the
ONNX metadata so `psp_hub.onnx.backend.OnnxBackend` can run the files without the PyTorch model.
"""

from __future__ import annotations

import argparse
import inspect
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from psp_hub.models import PSPGAN
from psp_hub.onnx.graphs import (
    BlindGraph,
    CachedRestoreGraph,
    EncoderGraph,
    RestoreGraph,
    cache_input_names,
    cache_layout,
)
from psp_hub.onnx.optional_output import gate_output
from psp_hub.profiles import model_fingerprint

# Opset 18 is the dynamo exporter's native opset in torch 2.14 (no version conversion pass runs).
OPSET = 18
META_PREFIX = "psp_gan."
# the restore graphs' optional output and the input that asks for it (named like PSPGAN.restore's argument)
SHARES_OUTPUT, SHARES_FLAG = "contributions", "return_contributions"


@dataclass
class ExportedFiles:
    """Paths written by `export_model`: the full restore graph and, with `cached`, the two cached-path graphs."""

    restore: Path
    encoder: Path | None = None
    cached: Path | None = None


def sibling_paths(out: Path) -> tuple[Path, Path]:
    """Where the encoder and cached-restore graphs of `out` live: model.onnx -> model.encoder.onnx and
    model.cached.onnx."""
    stem = out.with_suffix("") if out.suffix == ".onnx" else out
    return stem.with_name(stem.name + ".encoder.onnx"), stem.with_name(stem.name + ".cached.onnx")


def _example(model: PSPGAN, k: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Export inputs: lq at out_size, references at the reference size E_p reads (the graphs' fixed input sizes)."""
    s, rs, dev = model.config.out_size, model.config.reference_input_size, model.device
    gen = torch.Generator().manual_seed(0)
    lq = (torch.rand(batch, 3, s, s, generator=gen) * 2 - 1).to(dev)
    refs = (torch.rand(batch, k, 3, rs, rs, generator=gen) * 2 - 1).to(dev)
    return lq, refs, torch.ones(batch, k, dtype=torch.bool, device=dev)


def _group_like_signature(module: torch.nn.Module, per_arg: list) -> tuple:
    """torch.export wants dynamic shapes nested like forward's parameters: a *args parameter gets one tuple."""
    params = list(inspect.signature(module.forward).parameters.values())
    fixed = [p for p in params if p.kind != p.VAR_POSITIONAL]
    if len(fixed) == len(params):
        return tuple(per_arg)
    return (*per_arg[: len(fixed)], tuple(per_arg[len(fixed) :]))


def _export(
    module: torch.nn.Module,
    args: tuple,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    batch_inputs: list[bool],
    meta: dict,
) -> Path:
    """Export one graph with the dynamo exporter, batch dimension dynamic on the flagged inputs, then tag it (and
    gate its contributions output, if it has one, behind the `return_contributions` input)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = _group_like_signature(module, [{0: batch} if b else None for b in batch_inputs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and rename notices
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False,
            report=False,
            optimize=True,
        )
    proto = onnx.load(str(path))
    if SHARES_OUTPUT in output_names:
        gate_output(proto, SHARES_OUTPUT, SHARES_FLAG, like="ref_mask")
    for key, value in meta.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = META_PREFIX + key, json.dumps(value)
    onnx.save(proto, str(path))
    return path


def export_model(
    model: PSPGAN, out: str | Path, num_references: int | None = None, cached: bool = False
) -> ExportedFiles:
    """Export `model` (put in eval mode) to `out`, and with `cached` the encoder and cached-restore graphs beside it."""
    model = model.eval()
    k = model.config.max_references if num_references is None else int(num_references)
    if not 0 <= k <= model.config.max_references:
        raise ValueError(f"--refs must be in 0..{model.config.max_references} for this model, got {k}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"config": model.config.to_dict(), "references": k, "opset": OPSET, "model_hash": model_fingerprint(model)}
    lq, refs, mask = _example(model, k)
    strength = torch.tensor(1.0, device=model.device)
    with torch.no_grad():
        if k == 0:
            files = ExportedFiles(
                _export(
                    BlindGraph(model),
                    (lq, strength),
                    out,
                    ["lq", "strength"],
                    ["image"],
                    [True, False],
                    {**meta, "graph": "restore"},
                )
            )
        else:
            files = ExportedFiles(
                _export(
                    RestoreGraph(model, contributions=True),
                    (lq, refs, mask, strength),
                    out,
                    ["lq", "refs", "ref_mask", "strength"],
                    ["image", SHARES_OUTPUT],
                    [True, True, True, False],
                    {**meta, "graph": "restore"},
                )
            )
        if cached and k > 0:
            files.encoder, files.cached = _export_cached(model, out, (lq, refs, mask, strength), meta)
    return files


def _export_cached(model: PSPGAN, out: Path, example: tuple, meta: dict) -> tuple[Path, Path]:
    """The reference-encoder graph and the restore-from-cache graph, beside `out`."""
    lq, refs, mask, strength = example
    layout = cache_layout(model)
    names = cache_input_names(layout)
    meta = {**meta, "cache_layout": [[r, key] for r, key in layout]}
    enc_path, cached_path = sibling_paths(out)
    encoder = EncoderGraph(model, layout)
    enc_file = _export(
        encoder, (refs, mask), enc_path, ["refs", "ref_mask"], names, [True, True], {**meta, "graph": "encoder"}
    )
    tensors = encoder(refs, mask)
    cached_file = _export(
        CachedRestoreGraph(model, layout, contributions=True),
        (lq, mask, strength, *tensors),
        cached_path,
        ["lq", "ref_mask", "strength", *names],
        ["image", SHARES_OUTPUT],
        [True, True, False] + [True] * len(names),
        {**meta, "graph": "restore_cached"},
    )
    return enc_file, cached_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m psp_hub.export_onnx", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Hub id or folder (default: PSP_MODEL, else the bundled model)")
    parser.add_argument("--out", required=True, help="output .onnx path")
    parser.add_argument(
        "--refs", type=int, default=None, help="reference slots K in the graph (default: the model's max)"
    )
    parser.add_argument(
        "--cached", action="store_true", help="also export the reference encoder and the cached restore"
    )
    args = parser.parse_args(argv)
    from psp_hub.pipeline.model_loading import load_restoration_model

    model, info = load_restoration_model(args.model, device="cpu", allow_untrained=False)
    files = export_model(model, args.out, args.refs, args.cached)
    for path in (files.restore, files.encoder, files.cached):
        if path is not None:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opset {OPSET})")
    print(f"model: {info.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
