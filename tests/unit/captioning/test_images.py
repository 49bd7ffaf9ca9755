"""Reading pictures of every common kind, and the errors for files that are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from transduce.config import TransduceError
from transduce.data.images import augment, load_image


def test_rgba_composited_on_white(tmp_path):
    im = Image.new("RGBA", (40, 20), (255, 0, 0, 0))  # fully transparent red
    im.paste((0, 0, 255, 255), (0, 0, 20, 20))  # opaque blue left half
    path = tmp_path / "a.png"
    im.save(path)
    x = load_image(path, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    # letterboxed: top rows are white padding; transparent area white, not red
    assert x[:, 0, 16].tolist() == [255, 255, 255]
    assert x[:, 16, 28].tolist() == [255, 255, 255]
    assert x[:, 16, 4].tolist() == [0, 0, 255]


@pytest.mark.parametrize("mode", ["L", "LA", "P", "I;16", "CMYK"])
def test_modes(tmp_path, mode):
    rgb = Image.fromarray(np.full((30, 50, 3), 128, dtype=np.uint8))
    if mode == "P":
        im = rgb.quantize(16)
        im.info["transparency"] = 0
    elif mode == "I;16":
        im = Image.fromarray(np.full((30, 50), 1000, dtype=np.uint16))
    else:
        im = rgb.convert(mode)
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.jpg"
    im.save(path)
    x = load_image(path, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8


def test_jpeg_any_size(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), np.uint8)).save(path)
    assert load_image(path, 64).shape == (3, 64, 64)


@pytest.mark.parametrize(
    "content", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b""]
)
def test_corrupt_file_error_names_it(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(TransduceError, match="broken.png"):
        load_image(path, 32)


def test_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(TransduceError, match="cut.png"):
        load_image(path, 32)


def test_missing_file(tmp_path):
    with pytest.raises(TransduceError, match="nothere.png.*does not exist"):
        load_image(tmp_path / "nothere.png", 32)


def test_augment_keeps_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    y = augment(x, 0.6, 0.2)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(x, y)
