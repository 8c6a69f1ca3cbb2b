"""Rebuild the celeba_7399 example: one photo of the person, degraded, as the photo; the other four as references.

python examples/build_celeba_7399.py        # reads ../shared/samples/references/celeba_7399
"""

from __future__ import annotations

from pathlib import Path

import cv2

from psp_hub.common.imageio import load_image, save_image
from psp_hub.common.paths import samples_dir

HERE = Path(__file__).resolve().parent
PHOTO = "004668.jpg"  # a frontal portrait without sunglasses; the other four become the references


def main() -> None:
    src = samples_dir() / "references" / "celeba_7399"
    image = load_image(src / PHOTO)
    blurred = cv2.GaussianBlur(image, (0, 0), 1.5)
    h, w = image.shape[:2]
    small = cv2.resize(blurred, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # 1/2 size: a small but judgeable face
    save_image(small, HERE / "photos" / "celeba_7399_lq.jpg", quality=50)
    for ref in sorted(src.glob("*.jpg")):
        if ref.name == PHOTO:
            continue
        im = load_image(ref)
        s = min(1.0, 360 / max(im.shape[:2]))
        im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
        save_image(im, HERE / "references" / "celeba_7399" / ref.name, quality=85)


if __name__ == "__main__":
    main()
