"""Reading images into tensors, training-time augmentation and attention figures.

Any file Pillow reads is accepted: PNG (with or without alpha), JPEG, GIF, BMP,
WebP; RGB, RGBA, grayscale (L, LA, I;16), palette (P, with or without
transparency), CMYK. Transparent pixels are composited on white (stamps and
emoji are drawn for a white page), then the picture is letterboxed to a square
on white and resized to ``size x size``. A file that is missing, corrupt or not
an image raises one :class:`TransduceError` naming it.

Tensors are ``uint8 (3, H, W)`` when stored (4x smaller than float) and
``float32`` in ``[0, 1]`` once collated; the encoder normalizes them itself.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from transduce.config import LimitError, TransduceError

WHITE = (255, 255, 255)
MAX_PIXELS = 50_000_000  # load_image refuses larger pictures (from the header, before decoding)


def check_image_header(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Refuse, before decoding, a picture of more than ``max_pixels``; returns (w, h).

    Pillow reads only the header when it opens a file; decoding happens on ``load()``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
    except UnidentifiedImageError:
        raise TransduceError(
            f"'{path}' is not an image Pillow can read (PNG, JPEG, GIF, BMP, WebP...)"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise TransduceError(f"image file '{path}' is corrupt or truncated: {e}") from None
    if w * h > max_pixels:
        raise LimitError(
            f"image file '{path}' is {w} x {h} = {w * h:,} pixels, more than the limit of "
            f"{max_pixels:,}; scale it down first"
        )
    return w, h


def to_rgb(image) -> object:
    """A Pillow image of any mode -> RGB, transparency composited on white."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, WHITE + (255,))
        page.alpha_composite(rgba)
        return page.convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits rather than clipping at 255
        array = np.asarray(image, dtype=np.float64)
        top = max(float(array.max()), 1.0)
        image = Image.fromarray((array * (255.0 / top)).astype(np.uint8), "L")
    return image.convert("RGB")


def square(image, size: int) -> object:
    """Letterbox an RGB image on white to a square, then resize to ``size x size``."""
    from PIL import Image

    w, h = image.size
    side = max(w, h)
    if w != h:
        page = Image.new("RGB", (side, side), WHITE)
        page.paste(image, ((side - w) // 2, (side - h) // 2))
        image = page
    if side != size:
        image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return image


def load_image(path: str | Path, size: int) -> Tensor:
    """Read ``path`` -> ``uint8 (3, size, size)``; TransduceError naming the file on failure."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise TransduceError(f"image file '{path}' {what}")
    check_image_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. palette-with-transparency notices
            with Image.open(path) as im:
                im.load()
                rgb = square(to_rgb(im), size)
    except UnidentifiedImageError:
        raise TransduceError(
            f"'{path}' is not an image Pillow can read (PNG, JPEG, GIF, BMP, WebP...)"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise TransduceError(f"image file '{path}' is corrupt or truncated: {e}") from None
    array = np.asarray(rgb, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def to_float(images: Tensor) -> Tensor:
    """``uint8 (B, 3, H, W)`` -> ``float32`` in ``[0, 1]``."""
    return images.float().div_(255.0)


# ----------------------------------------------------------------------------- augmentation


def random_resized_crop(
    image: Tensor,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Crop a random box of ``scale`` of the area and ``ratio`` aspect, resize back.

    image: ``float (3, H, W)``; returns the same shape. No horizontal flip: captions
    such as "arrow pointing left" or text in the picture would become wrong.
    """
    _, H, W = image.shape
    area = H * W
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale, generator=generator))
        log_r = torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
        r = math.exp(float(log_r))
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= W and 0 < h <= H:
            top = int(torch.randint(0, H - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, W - w + 1, (1,), generator=generator))
            crop = image[:, top : top + h, left : left + w].unsqueeze(0)
            return F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False)[0]
    return image


def color_jitter(
    image: Tensor,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Scale brightness, contrast and saturation by random factors in ``[1-x, 1+x]``.

    image: ``float (3, H, W)`` in ``[0, 1]``; returns the same shape, clamped.
    """

    def factor(x: float) -> float:
        return float(torch.empty(1).uniform_(1 - x, 1 + x, generator=generator))

    gray_weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    image = image * factor(brightness)
    gray = (image * gray_weights).sum(0, keepdim=True)  # (1, H, W)
    image = gray.mean() + (image - gray.mean()) * factor(contrast)
    gray = (image * gray_weights).sum(0, keepdim=True)
    image = gray + (image - gray) * factor(saturation)
    return image.clamp_(0.0, 1.0)


def augment(images: Tensor, crop_scale: float = 0.6, jitter: float = 0.2) -> Tensor:
    """Training augmentation of a float batch ``(B, 3, H, W)``, image by image.

    Uses torch's global random generator, which training checkpoints capture, so a
    resumed run sees the same augmentations.
    """
    out = []
    for image in images:
        if crop_scale < 1.0:
            image = random_resized_crop(image, (crop_scale, 1.0))
        if jitter > 0:
            image = color_jitter(image, jitter, jitter, jitter)
        out.append(image)
    return torch.stack(out)


__all__ = [
    "augment",
    "color_jitter",
    "load_image",
    "random_resized_crop",
    "square",
    "to_float",
    "to_rgb",
]
