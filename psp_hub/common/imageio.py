"""Robust image loading: any path, bytes, PIL image or array to an RGB uint8 array, or a readable ImageLoadError."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from psp_hub.common.images import round_to_uint8

DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: beyond this a photo is refused before it is decoded
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".pgm", ".ppm")

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray


class ImageLoadError(ValueError):
    """An input that is not a usable image; `str(err)` is a message fit to show a user."""

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}" if source else message)


def _name(src: Any) -> str | None:
    """A short name for the source to put in messages."""
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    return getattr(src, "name", None) if not isinstance(src, (bytes, bytearray, memoryview, np.ndarray)) else None


def _check_pixels(w: int, h: int, max_pixels: int | None, name: str | None) -> None:
    """Refuse images above the pixel cap before decoding them."""
    if w < 1 or h < 1:
        raise ImageLoadError(f"the image is empty ({w}x{h} pixels)", name)
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(
            f"the image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} "
            f"({max_pixels / 1e6:g} megapixels); please downscale it first",
            name,
        )


def _array_to_rgb(
    arr: np.ndarray, name: str | None = None, background: tuple[int, int, int] = (255, 255, 255)
) -> np.ndarray:
    """Grey, grey+alpha, RGB, RGBA arrays of bool/uint8/uint16/int/float to RGB uint8 (alpha over `background`)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageLoadError(f"cannot read an array of shape {a.shape} as an image (want H x W, H x W x 1..4)", name)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.dtype != np.uint8):
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        a = round_to_uint8(a.astype(np.float64) * (255.0 / top))
    elif a.dtype.kind == "f":
        f = np.nan_to_num(a.astype(np.float64))
        if f.min(initial=0) < -1e-3:  # [-1, 1] tensors
            f = (f + 1.0) / 2.0
        scale = 255.0 if f.max(initial=0) <= 1.0 + 1e-6 else 1.0
        a = round_to_uint8(f * scale)
    elif a.dtype != np.uint8:
        raise ImageLoadError(f"unsupported pixel type {a.dtype}", name)
    c = a.shape[2]
    if c in (2, 4):
        alpha = a[..., -1:].astype(np.float32) / 255.0
        color = a[..., :-1].astype(np.float32)
        bg = np.asarray(background, dtype=np.float32)[: color.shape[2]] if c == 4 else np.float32(np.mean(background))
        a = round_to_uint8(color * alpha + bg * (1.0 - alpha))
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def _pil_to_rgb(im: Image.Image, name: str | None, max_pixels: int | None, background) -> np.ndarray:
    """Decode a PIL image: EXIF orientation, palette/CMYK/16-bit/alpha modes, to RGB uint8."""
    _check_pixels(im.width, im.height, max_pixels, name)
    try:
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im) or im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"the image file is corrupt or truncated ({exc})", name) from exc
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGB", "RGBA", "L", "LA"):
        return _array_to_rgb(np.asarray(im), name, background)
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im)
        if im.mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        elif im.mode == "I":
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        return _array_to_rgb(arr, name, background)
    try:
        return _array_to_rgb(np.asarray(im.convert("RGB")), name, background)
    except Exception as exc:
        raise ImageLoadError(f"unsupported image mode {mode}", name) from exc


def _decode_with_cv2(data: bytes, name: str | None, max_pixels: int | None, background) -> np.ndarray | None:
    """Fallback for files PIL cannot identify (e.g. some 16-bit TIFFs); None when OpenCV cannot either."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if buf.size else None
    if arr is None:
        return None
    _check_pixels(arr.shape[1], arr.shape[0], max_pixels, name)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    return _array_to_rgb(arr, name, background)


def load_image(
    src: ImageSource,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Load `src` (path, bytes, file object, PIL image or array) as an RGB uint8 (H, W, 3) array.

    EXIF orientation is applied; grey, palette, CMYK, 16-bit and float images are converted; transparency is
    composited over `background`. Anything unusable raises ImageLoadError with a message a user can read.
    """
    name = _name(src)
    if src is None:
        raise ImageLoadError("no image was given")
    if isinstance(src, np.ndarray) or type(src).__module__.startswith("torch"):
        return _load_array(src, name, max_pixels, background)
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src, name, max_pixels, background)
    data = _read_bytes(src, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            return _pil_to_rgb(im, name, max_pixels, background)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"the image is too large to decode safely ({exc})", name) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # OpenCV only for formats PIL does not know; a truncated file stays an error (OpenCV would pad it grey).
        unknown = isinstance(exc, UnidentifiedImageError)
        fallback = _decode_with_cv2(data, name, max_pixels, background) if unknown else None
        if fallback is not None:
            return fallback
        kind = (
            "not an image file (the format was not recognised)"
            if unknown
            else f"the image file is corrupt or truncated ({exc})"
        )
        raise ImageLoadError(kind, name) from exc


def _load_array(src, name: str | None, max_pixels: int | None, background) -> np.ndarray:
    """A numpy array or torch tensor (HWC, or CHW with 1, 3 or 4 channels) as RGB uint8, size-checked."""
    arr = np.asarray(src.detach().cpu().numpy() if hasattr(src, "detach") else src)
    if arr.ndim >= 2:
        chw = arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] > 4
        hw = arr.shape[1:] if chw else arr.shape[:2]
        _check_pixels(int(hw[1]), int(hw[0]), max_pixels, name)
    return _array_to_rgb(arr, name, background)


def _read_bytes(src, name: str | None) -> bytes:
    """The encoded bytes of a path, bytes-like or binary file object; readable errors otherwise."""
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ImageLoadError("file not found", str(path))
        if path.is_dir():
            raise ImageLoadError("is a folder, not an image file", str(path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageLoadError(f"cannot read the file ({exc.strerror or exc})", name) from exc
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif hasattr(src, "read"):
        data = src.read()
        if isinstance(data, str):
            raise ImageLoadError("got a text stream, not image bytes", name)
    else:
        raise ImageLoadError(f"cannot load an image from a {type(src).__name__}")
    if not data:
        raise ImageLoadError("the file is empty", name)
    return data


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the suffix is one of the image types the CLI collects from folders."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def to_png_bytes(image_rgb_uint8: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG bytes (lossless download)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image_rgb_uint8, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def save_image(
    image_rgb_uint8: np.ndarray, path: str | os.PathLike, quality: int = 95, png_compression: int = 1
) -> Path:
    """Write an RGB uint8 array; format from the suffix (PNG lossless and fast-compressed, JPEG/WebP at `quality`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(image_rgb_uint8, dtype=np.uint8))
    suffix = path.suffix.lower()
    kwargs = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    if suffix == ".png":
        kwargs = {"compress_level": png_compression}
    im.save(path, **kwargs)
    return path
