"""StyleGAN2's channel table: the width of the generator and discriminator layers at each resolution."""

from __future__ import annotations

# Channels per resolution at channel multiplier 1 and narrow 1 (Karras et al., config F; rosinality, basicsr and
# GFPGAN use the same table).
STYLEGAN2_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def stylegan2_channels(
    resolution: int, channel_multiplier: int = 1, narrow: float = 1.0, max_channels: int = 512
) -> int:
    """Channels at one resolution: base x channel_multiplier (from 64 px up) x narrow, capped, at least 1."""
    base = STYLEGAN2_BASE_CHANNELS[resolution] * (channel_multiplier if resolution >= 64 else 1)
    return max(1, min(max_channels, int(base * narrow)))


def stylegan2_channel_table(
    size: int, channel_multiplier: int = 1, narrow: float = 1.0, max_channels: int = 512
) -> dict[int, int]:
    """{resolution: channels} from 4 px up to `size` px."""
    return {
        res: stylegan2_channels(res, channel_multiplier, narrow, max_channels)
        for res in STYLEGAN2_BASE_CHANNELS
        if res <= size
    }
