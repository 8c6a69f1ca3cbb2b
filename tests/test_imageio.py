"""load_image: every kind of source and pixel format to RGB uint8, and a readable ImageLoadError otherwise."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from psp_hub.common.imageio import ImageLoadError, load_image, save_image, to_png_bytes


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_path(samples):
    return samples / "photos" / "whole" / "Blake_Lively.jpg"


def test_path_bytes_fileobj_pil_and_array_agree(photo_path):
    a = load_image(photo_path)
    assert a.dtype == np.uint8 and a.shape == (464, 700, 3)
    data = photo_path.read_bytes()
    np.testing.assert_array_equal(load_image(str(photo_path)), a)
    np.testing.assert_array_equal(load_image(data), a)
    np.testing.assert_array_equal(load_image(io.BytesIO(data)), a)
    np.testing.assert_array_equal(load_image(Image.open(photo_path)), a)
    np.testing.assert_array_equal(load_image(a), a)


def test_exif_orientation_is_applied(photo_path):
    im = Image.open(photo_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(buf.getvalue())
    assert out.shape == (700, 464, 3)


def test_grey_and_grey_alpha():
    grey = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (10, 1)), "L")
    out = load_image(_png(grey))
    assert out.shape == (10, 256, 3) and (out[..., 0] == out[..., 1]).all() and out[0, 200, 2] == 200
    la = Image.merge("LA", [grey, Image.new("L", grey.size, 0)])  # fully transparent -> background
    assert (load_image(_png(la)) == 255).all()


def test_rgba_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    out = load_image(_png(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)


def test_palette_with_transparency_and_cmyk():
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert tuple(load_image(_png(p))[0, 0]) == (10, 20, 30)
    p.info["transparency"] = 1
    assert tuple(load_image(_png(p, transparency=1))[0, 0]) == (255, 255, 255)
    buf = io.BytesIO()
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(buf, format="JPEG")
    r, g, b = load_image(buf.getvalue())[3, 3].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16_bit_images_are_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    out = load_image(_png(Image.fromarray(ramp)))
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert 100 < out[32, 0, 0] < 155  # mid-grey stays mid-grey (clipping would give 255)
    rgb16 = np.zeros((5, 5, 3), np.uint16)
    rgb16[..., 1] = 65535
    assert tuple(load_image(rgb16)[0, 0]) == (0, 255, 0)


def test_float_arrays_in_unit_and_symmetric_ranges():
    assert tuple(load_image(np.full((3, 3, 3), 0.5, np.float32))[0, 0]) == (128, 128, 128)
    assert tuple(load_image(np.full((3, 3, 3), -1.0, np.float32))[0, 0]) == (0, 0, 0)
    chw = np.ones((3, 8, 9), np.float32)
    assert load_image(chw).shape == (8, 9, 3)


def test_text_file_is_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo")
    with pytest.raises(ImageLoadError, match="not an image file") as err:
        load_image(p)
    assert "notes.jpg" in str(err.value) and "Traceback" not in str(err.value)


def test_truncated_file_is_corrupt(photo_path):
    data = photo_path.read_bytes()
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(data[: len(data) // 3])


def test_huge_image_is_refused_before_decoding(photo_path):
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(photo_path, max_pixels=100_000)
    big = Image.new("RGB", (6000, 6000))  # 36 MP header; refused by the cap, never decoded into an array
    with pytest.raises(ImageLoadError, match="36,000,000 pixels"):
        load_image(_png(big), max_pixels=20_000_000)


def test_missing_empty_folder_and_odd_sources(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="no image"):
        load_image(None)
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((6, 5, 7), np.uint8))
    with pytest.raises(ImageLoadError, match="cannot load"):
        load_image(12345)


def test_save_and_png_roundtrip(tmp_path, photo_path):
    a = load_image(photo_path)
    np.testing.assert_array_equal(load_image(to_png_bytes(a)), a)
    path = save_image(a, tmp_path / "sub" / "x.png")
    np.testing.assert_array_equal(load_image(path), a)
    assert save_image(a, tmp_path / "x.jpg").stat().st_size < path.stat().st_size
