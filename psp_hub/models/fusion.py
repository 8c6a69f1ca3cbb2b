"""Attention-based fusion of reference features F_p into the input's features F_LR (paper 3.1.3, eq. 3).

Two directions, chosen by `PSPGANConfig.fusion_direction`:
- "reference_query" (the paper): Attention(Q=F_p, K=F_LR, V=F_LR) per reference, with the usual residual on
  the query stream (F_p), then a masked mean over the references; the result lies on the references'
  grid, which for FFHQ-aligned faces is the input's grid.
- "input_query": Attention(Q=F_LR, K=F_p, V=F_p) over the tokens of all references at once.
With `PSPGANConfig.reference_selection`, per-reference weights (models/selection.py) replace the equal mean of
"reference_query" and add log(weight / equal weight) to every key of that reference in "input_query".
Either way the block adds a zero-initialised projection to F_LR, so with no references (or at init) the
fused features are exactly F_LR, and the reference order cannot change the result. At low resolutions
attention is global (with 2-D sinusoidal positions); at higher ones it is restricted to a w x w window
around each position (with a learned relative bias), which keeps the cost linear in the pixel count.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_MASKED = -1e4  # finite, so a row with every key masked stays finite; such rows are zeroed afterwards


def sinusoidal_positions(size: int, channels: int, device, dtype) -> torch.Tensor:
    """2-D sine/cosine position codes (size*size, channels): half the channels for y, half for x."""
    quarter = max(1, channels // 4)
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))
    coord = torch.arange(size, device=device, dtype=torch.float32)
    angles = coord[:, None] * freq[None]  # (size, quarter)
    enc_1d = torch.cat([angles.sin(), angles.cos()], dim=1)  # (size, 2*quarter)
    y = enc_1d[:, None, :].expand(size, size, -1)
    x = enc_1d[None, :, :].expand(size, size, -1)
    pe = torch.cat([y, x], dim=-1).reshape(size * size, -1)
    pe = F.pad(pe, (0, max(0, channels - pe.shape[1])))[:, :channels]
    return pe.to(dtype)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) -> (..., H*W, C)."""
    return x.flatten(-2).transpose(-1, -2)


class CrossAttentionFusion(nn.Module):
    """Fuses the references into the input's features at one resolution (global or windowed attention)."""

    def __init__(self, channels: int, dim: int, heads: int, direction: str, window: int | None):
        super().__init__()
        self.channels, self.dim, self.heads, self.direction, self.window = channels, dim, heads, direction, window
        self.norm_input = nn.LayerNorm(channels)
        self.norm_ref = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, dim)
        self.k = nn.Linear(channels, dim)
        self.v = nn.Linear(channels, dim)
        if direction == "reference_query":
            self.ref_residual = nn.Linear(channels, dim)
        self.out = nn.Linear(dim, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if window is not None:
            self.rel_bias = nn.Parameter(torch.zeros(heads, window * window))

    # -- the reference side, computed once and cacheable ------------------------------------------
    def prepare(self, ref_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reference features (B, K, C, r, r) -> the projected reference tokens this direction needs."""
        size = ref_feats.shape[-1]
        t = self.norm_ref(_tokens(ref_feats))  # (B, K, N, C)
        if self.direction == "input_query":
            kin = t + self._pe(size, t) if self.window is None else t
            return {"k": self.k(kin), "v": self.v(t)}
        qin = t + self._pe(size, t) if self.window is None else t
        return {"q": self.q(qin), "res": self.ref_residual(t)}

    def _pe(self, size: int, like: torch.Tensor) -> torch.Tensor:
        return sinusoidal_positions(size, self.channels, like.device, like.dtype)

    # -- the input side ---------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        prepared: dict[str, torch.Tensor],
        mask: torch.Tensor,
        strength: float | torch.Tensor = 1.0,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C, r, r) + prepared reference tokens + mask (B, K) -> fused features (B, C, r, r).

        `weights` (B, K), summing to 1 over a sample's valid references: the reference selection's weights (None:
        references count equally)."""
        b, _, size, _ = x.shape
        t = self.norm_input(_tokens(x))  # (B, N, C)
        mask = mask.to(torch.bool)
        has_ref = mask.any(dim=1)
        if self.direction == "input_query":
            bias = None if weights is None else _log_ratio_to_uniform(weights, mask)
            delta = self._input_query(t, size, prepared, mask, has_ref, bias)
        else:
            delta = self._reference_query(t, size, prepared, mask, weights)
        delta = self.out(delta)  # (B, N, C)
        delta = delta * (has_ref[:, None, None].to(delta.dtype) * strength)
        return x + delta.transpose(1, 2).reshape(b, self.channels, size, size).to(x.dtype)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(..., N, dim) -> (..., heads, N, dim/heads)."""
        return t.unflatten(-1, (self.heads, self.dim // self.heads)).transpose(-2, -3)

    def _merge_heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.transpose(-2, -3).flatten(-2)

    def _input_query(self, t, size, prepared, mask, has_ref, bias=None):
        """`bias` (B, K): log-weight added to the logits of every token of a reference (None: no bias)."""
        b, n, _ = t.shape
        k_tok, v_tok = prepared["k"], prepared["v"]  # (B, K, N, dim)
        kcount = k_tok.shape[1]
        if self.window is None:
            q = self._split_heads(self.q(t + self._pe(size, t)))  # (B, h, N, d)
            k = self._split_heads(k_tok.reshape(b, kcount * n, self.dim))  # (B, h, K*N, d)
            v = self._split_heads(v_tok.reshape(b, kcount * n, self.dim))
            key_ok = mask[:, :, None].expand(b, kcount, n).reshape(b, kcount * n)
            key_ok = key_ok | ~has_ref[:, None]  # rows without references attend anywhere; zeroed later
            attn_mask = key_ok[:, None, None, :]
            if bias is not None:  # 0 on rows without references: their keys stay equal
                per_key = bias[:, :, None].expand(b, kcount, n).reshape(b, kcount * n)
                attn_mask = per_key.to(q.dtype).masked_fill(~key_ok, float("-inf"))[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            return self._merge_heads(out)
        # windowed: every query sees the w x w neighbourhood of its position in every reference
        w2 = self.window**2
        d = self.dim // self.heads
        q = self.q(t).transpose(1, 2).reshape(b, self.heads, d, n)  # (B, h, d, N)
        k = self._unfold(k_tok, size).reshape(b, kcount, self.heads, d, w2, n)
        v = self._unfold(v_tok, size).reshape(b, kcount, self.heads, d, w2, n)
        logits = torch.einsum("bhdn,bkhdwn->bhkwn", q.float(), k.float()) / math.sqrt(d)
        logits = logits + self.rel_bias.float()[None, :, None, :, None]
        if bias is not None:
            logits = logits + bias[:, None, :, None, None]
        valid = self._window_valid(size, t.device)[None, None, None] & mask[:, None, :, None, None]
        logits = logits.masked_fill(~valid, _MASKED)
        attn = logits.flatten(2, 3).softmax(dim=2).view_as(logits).to(v.dtype)
        out = torch.einsum("bhkwn,bkhdwn->bhdn", attn, v)  # (B, h, d, N)
        return out.reshape(b, self.dim, n).transpose(1, 2)

    def _reference_query(self, t, size, prepared, mask, weights=None):
        """Each reference attends to the input; the per-reference results are mixed by `weights` (None: the
        masked mean)."""
        if self.window is None:
            per_ref = self._per_reference_global(t, size, prepared["q"])
        else:
            per_ref = self._per_reference_windowed(t, size, prepared["q"])
        per_ref = per_ref + prepared["res"]  # (B, K, N, dim)
        counts = mask.to(per_ref.dtype)[:, :, None, None]
        mean = (per_ref * counts).sum(1) / counts.sum(1).clamp_min(1.0)
        if weights is None:
            return mean
        # sum_k w_k per_ref_k written as the mean plus the weights' departure from uniform: uniform weights (an
        # untrained selection) add exactly 0, so the model computes what it did without selection, bit for bit
        departure = (weights - _uniform(mask)).to(per_ref.dtype)[:, :, None, None]
        return mean + (per_ref * departure).sum(1)

    def _per_reference_global(self, t, size, q_tok):
        """Each reference's queries q_tok (B, K, N, dim) attend to all input tokens -> (B, K, N, dim)."""
        b, kcount = q_tok.shape[:2]
        k = self._split_heads(self.k(t + self._pe(size, t)))  # (B, h, N, d)
        v = self._split_heads(self.v(t))
        q = self._split_heads(q_tok)  # (B, K, h, N, d)
        kk = k[:, None].expand(-1, kcount, -1, -1, -1)
        vv = v[:, None].expand(-1, kcount, -1, -1, -1)
        out = F.scaled_dot_product_attention(q.flatten(0, 1), kk.flatten(0, 1), vv.flatten(0, 1))
        return self._merge_heads(out.unflatten(0, (b, kcount)))

    def _per_reference_windowed(self, t, size, q_tok):
        """Each reference position's query attends to the input's w x w neighbourhood around it -> (B, K, N, dim).
        Two forms of the same arithmetic: on an H200 (psp-256, batch 32, fwd + bwd) the shifted products took 2.1 and
        3.3 ms compiled at 64 and 128 px where the einsums over unfolded windows took 10.4 and 37.1 (eager 15.6 / 30.7
        against 16.5 / 54.0), and the whole generator's step fell from 121 to 55.5 ms
        (benchmarks/train_levers.py); elsewhere (CPU inference, ONNX export) the einsums stay."""
        if t.is_cuda:
            return self._per_reference_shifted(t, size, q_tok)
        return self._per_reference_unfolded(t, size, q_tok)

    def _per_reference_unfolded(self, t, size, q_tok):
        """`_per_reference_windowed` as einsums over each position's unfolded neighbourhood (per-position GEMMs)."""
        b, n, _ = t.shape
        kcount, w2, d = q_tok.shape[1], self.window**2, self.dim // self.heads
        k = self._unfold(self.k(t)[:, None], size).reshape(b, self.heads, d, w2, n)
        v = self._unfold(self.v(t)[:, None], size).reshape(b, self.heads, d, w2, n)
        q = q_tok.transpose(2, 3).reshape(b, kcount, self.heads, d, n)
        logits = torch.einsum("bkhdn,bhdwn->bkhwn", q.float(), k.float()) / math.sqrt(d)
        attn = self._window_softmax(logits, size, t.device).to(v.dtype)
        out = torch.einsum("bkhwn,bhdwn->bkhdn", attn, v)  # (B, K, h, d, N)
        return out.reshape(b, kcount, self.dim, n).transpose(2, 3)

    def _per_reference_shifted(self, t, size, q_tok):
        """`_per_reference_windowed` as nine shifted products summed over the head width (elementwise work and
        reductions that inductor fuses, no per-position GEMMs)."""
        b, n, _ = t.shape
        kcount, d, w, r = q_tok.shape[1], self.dim // self.heads, self.window, self.window // 2
        grid = (b, self.heads, d, size, size)
        kp = F.pad(self.k(t).transpose(1, 2).reshape(grid), (r, r, r, r))  # zeros outside, as F.unfold's
        vp = F.pad(self.v(t).transpose(1, 2).reshape(grid), (r, r, r, r))
        q = q_tok.transpose(2, 3).reshape(b, kcount, self.heads, d, size, size).float()
        shifts = [(dy, dx) for dy in range(w) for dx in range(w)]  # F.unfold's order: row by row
        products = [(q * kp[:, None, :, :, dy : dy + size, dx : dx + size].float()).sum(3) for dy, dx in shifts]
        logits = torch.stack(products, dim=3).flatten(-2) / math.sqrt(d)  # (B, K, h, w2, N)
        attn = self._window_softmax(logits, size, t.device).to(vp.dtype).unflatten(-1, (size, size))
        windows = [vp[:, None, :, :, dy : dy + size, dx : dx + size] for dy, dx in shifts]
        out = sum(attn[:, :, :, i, None] * v_shift for i, v_shift in enumerate(windows))  # (B, K, h, d, H, W)
        return out.reshape(b, kcount, self.dim, n).transpose(2, 3)

    def _window_softmax(self, logits: torch.Tensor, size: int, device) -> torch.Tensor:
        """(B, K, h, w2, N) scores -> attention over each window, with the relative bias, outside positions masked."""
        logits = logits + self.rel_bias.float()[None, None, :, :, None]
        logits = logits.masked_fill(~self._window_valid(size, device)[None, None, None], _MASKED)
        return logits.softmax(dim=3)

    # -- which reference the input draws on (only when asked: training never calls this) ----------
    @torch.no_grad()
    def reference_mass(self, x: torch.Tensor, prepared: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """(B, K) attention mass per reference, read from the input's side: at every input position the
        query-key scores over all references' tokens are normalised jointly (softmax over references and tokens),
        and each reference's share is averaged over positions and heads. For "input_query" this is exactly the
        fusion's attention; for "reference_query", whose softmax runs per reference (so its mass per reference is
        uniform by construction), it is the same scores seen from the input. Sums to 1 over valid references."""
        size = x.shape[-1]
        t = self.norm_input(_tokens(x))
        mask = mask.to(torch.bool)
        logits, inside = self._mass_logits(t, size, prepared)  # (B, h, K, M, N), (M, N) or None
        valid = mask[:, None, :, None, None]
        if inside is not None:
            valid = valid & inside[None, None, None]
        logits = logits.float().masked_fill(~valid, _MASKED)
        kcount, m = logits.shape[2], logits.shape[3]
        p = logits.flatten(2, 3).softmax(dim=2).unflatten(2, (kcount, m))
        mass = p.sum(dim=3).mean(dim=(1, 3)) * mask  # (B, K)
        return mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def _mass_logits(self, t, size, prepared) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores (B, h, K, M, N) between each input position n and the M reference tokens it can meet."""
        b, n, _ = t.shape
        d = self.dim // self.heads
        if self.direction == "input_query":
            ref_tok = prepared["k"]
            q_in = self.q(t + self._pe(size, t)) if self.window is None else self.q(t)
        else:
            ref_tok = prepared["q"]
            q_in = self.k(t + self._pe(size, t)) if self.window is None else self.k(t)
        kcount = ref_tok.shape[1]
        q_in = q_in.transpose(1, 2).reshape(b, self.heads, d, n).float()  # (B, h, d, N)
        if self.window is None:
            r = ref_tok.transpose(2, 3).reshape(b, kcount, self.heads, d, n).float()  # (B, K, h, d, M=N)
            return torch.einsum("bkhdm,bhdn->bhkmn", r, q_in) / math.sqrt(d), None
        w2 = self.window**2
        if self.direction == "input_query":  # the input's query meets the references' window around it
            r = self._unfold(ref_tok, size).reshape(b, kcount, self.heads, d, w2, n).float()
            logits = torch.einsum("bhdn,bkhdwn->bhkwn", q_in, r) / math.sqrt(d)
        else:  # each reference token's window over the input, grouped by the reference position
            k_win = self._unfold(self.k(t)[:, None], size).reshape(b, self.heads, d, w2, n).float()
            r = ref_tok.transpose(2, 3).reshape(b, kcount, self.heads, d, n).float()
            logits = torch.einsum("bkhdn,bhdwn->bhkwn", r, k_win) / math.sqrt(d)
        bias = self.rel_bias.float()[None, :, None, :, None]
        return logits + bias, self._window_valid(size, t.device)

    def _unfold(self, tokens: torch.Tensor, size: int) -> torch.Tensor:
        """(B, K, N, dim) tokens -> (B, K, dim*w*w, N) neighbourhoods (zero outside the image)."""
        b, kcount, n, dim = tokens.shape
        maps = tokens.transpose(2, 3).reshape(b * kcount, dim, size, size)
        cols = F.unfold(maps, self.window, padding=self.window // 2)  # (B*K, dim*w2, N)
        return cols.reshape(b, kcount, dim * self.window**2, n)

    def _window_valid(self, size: int, device) -> torch.Tensor:
        """(w*w, N) bool: which neighbourhood positions fall inside the image."""
        ones = torch.ones(1, 1, size, size, device=device)
        return F.unfold(ones, self.window, padding=self.window // 2)[0] > 0.5


def _uniform(mask: torch.Tensor) -> torch.Tensor:
    """(B, K) equal weights over each sample's valid references (0 on empty slots and rows)."""
    m = mask.to(torch.float32)
    return m / m.sum(dim=1, keepdim=True).clamp_min(1.0)


def _log_ratio_to_uniform(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, K) log(w / uniform) on valid slots, 0 elsewhere: added to a reference's attention logits it scales that
    reference's attention mass by its weight (up to the softmax's normalisation), and uniform weights add exactly 0."""
    tiny = torch.finfo(torch.float32).tiny  # a weight that underflowed to 0 gives a large finite bias, not -inf/NaN
    ratio = weights.float().clamp_min(tiny).log() - _uniform(mask).clamp_min(tiny).log()
    return ratio * mask
