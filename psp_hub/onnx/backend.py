"""Run an exported PSP-GAN in onnxruntime behind the model calls the pipeline makes.

`OnnxBackend` answers `model(lq, refs, mask)`, `encode_references(refs, mask)` and `restore(lq, cache,
strength=...)` with torch tensors in and `PSPGANOutput` out, and has the `config.out_size` /
`config.max_references` / `parameters()` / `eval()` the pipeline reads, so `RestorationPipeline(OnnxBackend(...))`
runs on ONNX. With the `--cached` files the references are encoded once into a ReferenceCache of ONNX outputs;
without them the cache holds the references themselves and every restore reruns the full graph. References of any
size are resized once, straight to the size the graphs' `refs` input has (the model's reference_input_size).
`restore(..., return_contributions=True)` fills `contributions` (B, K), the per-reference shares the pipeline reports,
from the restore graphs' output of that name (None from files exported before the graphs had it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from psp_hub.common.images import resize_to
from psp_hub.models import PSPGANOutput, ReferenceCache
from psp_hub.onnx.export import META_PREFIX, SHARES_FLAG, SHARES_OUTPUT, sibling_paths
from psp_hub.onnx.graphs import cache_input_names


@dataclass(frozen=True)
class OnnxModelConfig:
    """The sizes the pipeline reads from `model.config`; `max_references` is the K the graphs were exported with,
    `reference_input_size` the size of their `refs` input (out_size, or the model's smaller reference_size)."""

    out_size: int
    max_references: int
    model_config: dict
    reference_input_size: int


@dataclass
class RawReferences:
    """The 'cache' of a backend without the cached graphs: the padded references and their mask (B, K)."""

    refs: np.ndarray
    mask: np.ndarray


def _meta(session: ort.InferenceSession) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(META_PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}


def _reference_size(session: ort.InferenceSession, out_size: int) -> int:
    """The side of the graph's `refs` input (B, K, 3, S, S): what references are resized to; out_size without one."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    return int(shapes["refs"][-1]) if "refs" in shapes else out_size


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def _run(session: ort.InferenceSession, feeds: dict, shares: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Run a restore graph -> (image, contributions or None). The contributions are fetched when asked and the graph
    has them; its `return_contributions` input, where it has one, switches their extra work on only then."""
    names = {i.name for i in session.get_inputs()}
    shares = shares and SHARES_OUTPUT in {o.name for o in session.get_outputs()}
    if SHARES_FLAG in names:
        feeds = {**feeds, SHARES_FLAG: np.asarray(shares)}
    outs = session.run(["image", SHARES_OUTPUT] if shares else ["image"], feeds)
    return outs[0], (outs[1] if shares else None)


class OnnxBackend:
    """PSP-GAN in onnxruntime (CPU by default), exposing the PyTorch model's inference calls."""

    training = False

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        path = Path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        providers = providers or ["CPUExecutionProvider"]

        def session(p: Path) -> ort.InferenceSession:
            return ort.InferenceSession(str(p), sess_options=opts, providers=providers)

        self.full = session(path)
        meta = _meta(self.full)
        self.k = int(meta["references"])
        out_size = int(meta["config"]["out_size"])
        self.config = OnnxModelConfig(out_size, self.k, meta["config"], _reference_size(self.full, out_size))
        enc, cached = sibling_paths(path)
        self.encoder = session(enc) if enc.is_file() and self.k > 0 else None
        self.cached = session(cached) if cached.is_file() and self.k > 0 else None
        self.layout = [tuple(x) for x in _meta(self.cached)["cache_layout"]] if self.cached else []
        self.fingerprint = meta.get("model_hash")  # the exported PyTorch model's, so profiles' caches carry over

    # -- what the pipeline reads ------------------------------------------------------------------
    def eval(self) -> OnnxBackend:
        return self

    def parameters(self):
        """One CPU placeholder: the pipeline reads the model's device from its first parameter."""
        yield torch.empty(0)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    # -- the model calls --------------------------------------------------------------------------
    def _pad(self, refs: torch.Tensor, ref_mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """References (B, k, 3, H, W) with k <= K -> K slots at the reference size, the empty ones zero and masked."""
        b, k = refs.shape[:2]
        if k > self.k:
            raise ValueError(f"{k} references given; this ONNX export takes at most {self.k}")
        mask = np.ones((b, k), bool) if ref_mask is None else _np(ref_mask).astype(bool)
        s = self.config.reference_input_size
        out = np.zeros((b, self.k, 3, s, s), np.float32)
        out[:, :k] = _np(resize_to(refs.float(), s))
        full_mask = np.zeros((b, self.k), bool)
        full_mask[:, :k] = mask
        return out, full_mask

    def encode_references(self, refs: torch.Tensor | None, ref_mask: torch.Tensor | None = None):
        """References -> a ReferenceCache of the encoder graph's outputs (or RawReferences without it)."""
        if refs is None or refs.shape[1] == 0:
            return None
        if self.k == 0:
            raise ValueError("this ONNX export takes no references (exported with --refs 0)")
        padded, mask = self._pad(refs, ref_mask)
        if self.encoder is None:
            return RawReferences(padded, mask)
        outs = self.encoder.run(cache_input_names(self.layout), {"refs": padded, "ref_mask": mask})
        features: dict[int, dict[str, torch.Tensor]] = {}
        for (r, key), arr in zip(self.layout, outs):
            features.setdefault(int(r), {})[key] = torch.from_numpy(arr)
        return ReferenceCache(features, torch.from_numpy(mask))

    def restore(
        self,
        lq: torch.Tensor,
        cache=None,
        *,
        strength: float = 1.0,
        return_contributions: bool = False,
        **_ignored,
    ) -> PSPGANOutput:
        """Degraded aligned faces (B, 3, S, S) in [-1, 1] + a cache from `encode_references` -> PSPGANOutput, with
        each reference slot's share in `contributions` when asked (as PyTorch: (B, 0) without references)."""
        x = _np(resize_to(lq.float(), self.config.out_size))
        b = x.shape[0]
        st = np.asarray(strength, np.float32)
        if self.k == 0:
            image = self.full.run(["image"], {"lq": x, "strength": st})[0]
            shares = np.zeros((b, 0), np.float32) if return_contributions else None
        elif isinstance(cache, ReferenceCache) and self.cached is not None:
            cache = self._pad_cache(cache.for_batch(b))
            feeds = {"lq": x, "ref_mask": _np(cache.mask).astype(bool), "strength": st}
            for name, (r, key) in zip(cache_input_names(self.layout), self.layout):
                feeds[name] = np.ascontiguousarray(_np(cache.features[int(r)][key]))
            image, shares = _run(self.cached, feeds, return_contributions)
        else:
            refs, mask = self._blind_or_raw(cache, b)
            feeds = {"lq": x, "refs": refs, "ref_mask": mask, "strength": st}
            image, shares = _run(self.full, feeds, return_contributions)
            if cache is None and shares is not None:
                shares = shares[:, :0]
        contributions = None if shares is None else torch.from_numpy(np.ascontiguousarray(shares)).to(lq.device)
        return PSPGANOutput(image=torch.from_numpy(image).to(lq.device), contributions=contributions)

    def _pad_cache(self, cache: ReferenceCache) -> ReferenceCache:
        """A cache of k < K references (e.g. a profile's, encoded by PyTorch) -> K slots, the extra ones masked out."""
        k = cache.mask.shape[1]
        if k == self.k:
            return cache
        if k > self.k:
            raise ValueError(f"the cache holds {k} references; this ONNX export takes at most {self.k}")
        pad = lambda t: torch.cat([t, t.new_zeros(t.shape[0], self.k - k, *t.shape[2:])], dim=1)
        features = {r: {key: pad(t) for key, t in d.items()} for r, d in cache.features.items()}
        return ReferenceCache(features, pad(cache.mask))

    def _blind_or_raw(self, cache, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Full-graph reference inputs: the raw references broadcast to the batch, or empty masked slots (blind)."""
        s = self.config.reference_input_size
        if cache is None:
            return np.zeros((batch, self.k, 3, s, s), np.float32), np.zeros((batch, self.k), bool)
        if not isinstance(cache, RawReferences):
            raise TypeError(f"cache of type {type(cache).__name__} needs the cached graphs (export with --cached)")
        refs, mask = cache.refs, cache.mask
        if refs.shape[0] != batch:
            refs = np.ascontiguousarray(np.broadcast_to(refs, (batch, *refs.shape[1:])))
            mask = np.ascontiguousarray(np.broadcast_to(mask, (batch, mask.shape[1])))
        return refs, mask

    def __call__(
        self,
        lq: torch.Tensor,
        refs: torch.Tensor | None = None,
        ref_mask: torch.Tensor | None = None,
        *,
        strength: float = 1.0,
        return_contributions: bool = False,
        **_ignored,
    ) -> PSPGANOutput:
        cache = self.encode_references(refs, ref_mask)
        return self.restore(lq, cache, strength=strength, return_contributions=return_contributions)
