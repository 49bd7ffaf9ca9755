"""Alignment pictures: what a decoder attended to while writing each output token.

One module draws them all with Pillow (already a dependency for images; matplotlib
would add ~40 MB for a few rectangles and labels):

* :func:`heatmap`: text to text (translation, summarization), source tokens across the
  top, output tokens down the side, and for copy models the gate ``p_gen`` per output
  token in a bar column on the right.
* :func:`speech_figure`: the log-mel spectrogram, one row per output token with its
  attention over the encoder frames stretched under the spectrogram's time axis, and
  for CTC models the best path: which frames emit which character.
* :func:`image_figure`: captioning, one panel per word with the attention over the
  image grid laid over the picture.

Each returns a :class:`Plot`: the Pillow image plus what was drawn (labels, weights,
cell geometry), so tests can check the picture against the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch.nn.functional as F
from torch import Tensor

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (200, 200, 200)


@dataclass
class Plot:
    """A drawn picture and what it shows.

    image: the Pillow image (``.save(path)``).
    x_labels / y_labels: the axis labels drawn (text heat maps: source / output tokens).
    weights: ``(rows, cols)`` the weights drawn (each row sums to 1).
    origin: pixel ``(x, y)`` of the top-left cell; cell: its size in pixels.
    """

    image: object
    x_labels: list[str] = field(default_factory=list)
    y_labels: list[str] = field(default_factory=list)
    weights: Tensor | None = None
    origin: tuple[int, int] = (0, 0)
    cell: int = 0


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _text_width(draw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def shade(weights: Tensor) -> np.ndarray:
    """Weights in [0, 1] -> RGB ``uint8 (..., 3)``, white (0) to dark blue (1).

    The square root keeps small but real weights visible next to a peak.
    """
    v = weights.float().clamp(0, 1).sqrt().numpy()[..., None]
    white = np.array(WHITE, dtype=np.float32)
    blue = np.array((8, 48, 107), dtype=np.float32)
    return (white + (blue - white) * v).round().astype(np.uint8)


def drawable(text: str) -> str:
    """``text`` with the characters Pillow's built-in font lacks replaced: newlines,
    sentencepiece's word start ``▁`` (-> ``_``), its unknown ``⁇`` (-> ``<unk>``)."""
    return text.replace("\n", " ").replace("\u2581", "_").replace("\u2047", "<unk>")


def label(text: str, limit: int = 18) -> str:
    """A token as an axis label: a space and sentencepiece's word-start mark shown as
    ``_``, long tokens cut with ``...`` (Pillow's built-in font has no ``␣``, ``▁``, ``…``)."""
    text = drawable(text)
    if not text.strip():
        return "_" if text else "."
    return text if len(text) <= limit else text[: limit - 3] + "..."


def heatmap(
    src_labels: list[str],
    out_labels: list[str],
    weights: Tensor,
    p_gen: Tensor | None = None,
    title: str = "",
    cell: int = 16,
) -> Plot:
    """Source x output heat map. weights ``(T, S)``, one row per output token.

    Readable at any length: every cell is ``cell`` pixels (16 by default), labels are
    drawn at 11 px, source labels vertical, so 60 tokens take about 1,000 pixels.
    """
    from PIL import Image, ImageDraw

    T, S = weights.shape
    if len(out_labels) != T or len(src_labels) != S:
        raise ValueError(
            f"heatmap: {T}x{S} weights with {len(out_labels)} output and "
            f"{len(src_labels)} source labels"
        )
    font = _font(11)
    xs = [label(s) for s in src_labels]
    ys = [label(s) for s in out_labels]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 8 + max((_text_width(probe, s, font) for s in ys), default=0)
    top = 8 + max((_text_width(probe, s, font) for s in xs), default=0) + (18 if title else 0)
    gate_w = 70 if p_gen is not None else 0
    width = left + S * cell + gate_w + 8
    height = top + T * cell + 8
    title_w = _text_width(probe, drawable(title), font) + 8 if title else 0
    canvas = Image.new("RGB", (max(width, 200, title_w), height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), drawable(title), fill=BLACK, font=font)
    if T and S:  # an empty output draws the axes only
        cells = shade(weights).repeat(cell, axis=0).repeat(cell, axis=1)  # (T*cell, S*cell, 3)
        canvas.paste(Image.fromarray(cells, "RGB"), (left, top))
    for i in range(S + 1):
        draw.line([(left + i * cell, top), (left + i * cell, top + T * cell)], fill=GRID)
    for t in range(T + 1):
        draw.line([(left, top + t * cell), (left + S * cell, top + t * cell)], fill=GRID)
    for t, s in enumerate(ys):
        w = _text_width(draw, s, font)
        draw.text((left - 4 - w, top + t * cell + 2), s, fill=BLACK, font=font)
    for i, s in enumerate(xs):  # vertical labels: draw on a strip, rotate, paste
        w = _text_width(draw, s, font)
        strip = Image.new("RGB", (w + 2, cell), WHITE)
        ImageDraw.Draw(strip).text((0, 1), s, fill=BLACK, font=font)
        strip = strip.rotate(90, expand=True)
        canvas.paste(strip, (left + i * cell, top - 4 - strip.height))
    if p_gen is not None:
        x0 = left + S * cell + 6
        draw.text((x0, top - 16), "p_gen", fill=BLACK, font=font)
        for t, p in enumerate(p_gen.tolist()):
            y = top + t * cell
            draw.rectangle([x0, y + 2, x0 + int(30 * p), y + cell - 3], fill=(230, 126, 34))
            draw.text((x0 + 34, y + 2), f"{p:.2f}", fill=BLACK, font=font)
    return Plot(canvas, xs, ys, weights.float(), (left, top), cell)


def speech_figure(
    features: Tensor,
    out_labels: list[str],
    weights: Tensor | None,
    ctc_labels: list[str | None] | None = None,
    title: str = "",
    max_width: int = 1600,
) -> Plot:
    """Log-mel spectrogram with, under it, one row per output token.

    features: ``(N, n_mels)`` log-mel frames (10 ms each) of the recording.
    weights: ``(T, S)`` attention over the ``S`` encoder frames (each covers ``N / S``
        feature frames after subsampling), or None (CTC greedy decoding).
    ctc_labels: per encoder frame, the character the CTC best path emits there (None
        for blank or a repeat); drawn as a strip and as ticks over the spectrogram.
    """
    from PIL import Image, ImageDraw

    N, n_mels = features.shape
    px = max(1, min(4, max_width // max(N, 1)))
    width_t = N * px if N * px <= max_width else max_width
    font = _font(11)
    rows = list(out_labels) if weights is not None else []
    ys = [label(s) for s in rows]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 8 + max((_text_width(probe, s, font) for s in [*ys, "CTC"]), default=24)
    row_h = 14
    spec_h = 2 * n_mels
    top = 20 if title else 4
    strip_h = 18 if ctc_labels is not None else 0
    height = top + spec_h + 6 + strip_h + len(rows) * row_h + 6
    canvas = Image.new("RGB", (left + width_t + 8, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), drawable(title), fill=BLACK, font=font)
    spec = features.float()
    spec = (spec - spec.min()) / (spec.max() - spec.min()).clamp(min=1e-6)
    gray = (spec.T.flip(0).numpy() * 255).astype(np.uint8)  # low frequencies at the bottom
    canvas.paste(Image.fromarray(gray, "L").convert("RGB").resize((width_t, spec_h)), (left, top))
    draw.text((4, top + spec_h // 2 - 6), "mel", fill=BLACK, font=font)
    y = top + spec_h + 6
    drawn = None
    if ctc_labels is not None:
        S = len(ctc_labels)
        draw.text((4, y + 2), "CTC", fill=BLACK, font=font)
        for s, ch in enumerate(ctc_labels):
            if ch is None:
                continue
            x = left + int((s + 0.5) * width_t / S)
            draw.line([(x, top), (x, top + spec_h)], fill=(230, 126, 34))
            draw.text((x - 3, y + 2), label(ch, 3), fill=(160, 60, 0), font=font)
        y += strip_h
    if weights is not None and weights.numel():
        T, S = weights.shape
        row = weights.float() / weights.float().amax(dim=1, keepdim=True).clamp(min=1e-9)
        up = F.interpolate(row[None, None], size=(T, width_t), mode="nearest")[0, 0]
        cells = shade(up).repeat(row_h, axis=0)  # (T*row_h, width_t, 3)
        canvas.paste(Image.fromarray(cells, "RGB"), (left, y))
        for t, s in enumerate(ys):
            w = _text_width(draw, s, font)
            draw.text((left - 4 - w, y + t * row_h + 1), s, fill=BLACK, font=font)
        drawn = weights.float()
    xs = [c for c in (ctc_labels or []) if c is not None]
    return Plot(canvas, xs, ys, drawn, (left, y), row_h)


def image_figure(
    rows: list[tuple[Tensor, list[str], Tensor | None]],
    panel: int = 128,
    max_panels: int = 16,
) -> Plot:
    """Draw, for each generated word, the attention over the image grid on the image.

    rows: one per image: ``(image uint8 (3, H, W), words, attention (T, G*G) or None)``;
    the first panel of a row shows the image, then one panel per word.
    """
    from PIL import Image, ImageDraw

    label_h = 18
    cols = 1 + max((min(len(w), max_panels) for _, w, _ in rows), default=0)
    canvas = Image.new("RGB", (cols * panel, len(rows) * (panel + label_h)), WHITE)
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    words_drawn: list[str] = []
    for r, (image, words, attn) in enumerate(rows):
        y = r * (panel + label_h)
        base = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((panel, panel))
        canvas.paste(base, (0, y + label_h))
        draw.text((2, y + 2), "image", fill=BLACK, font=font)
        for t, word in enumerate(words[:max_panels]):
            x = (t + 1) * panel
            shown = base
            if attn is not None and t < attn.size(0):
                shown = _overlay(base, attn[t], panel)
            canvas.paste(shown, (x, y + label_h))
            draw.text((x + 2, y + 2), word[:18], fill=BLACK, font=font)
            words_drawn.append(word)
    weights = rows[0][2] if len(rows) == 1 and rows[0][2] is not None else None
    return Plot(canvas, [], words_drawn, weights, (panel, label_h), panel)


def _overlay(base, weights: Tensor, panel: int) -> object:
    """Blend a red heat map of ``weights`` (``G*G`` grid positions) over ``base``."""
    from PIL import Image

    g = int(round(math.sqrt(weights.numel())))
    if g * g != weights.numel():  # not a square grid: show it as one row
        grid = weights.view(1, -1)
    else:
        grid = weights.view(g, g)
    grid = grid.float()
    grid = grid / grid.max().clamp(min=1e-9)
    up = F.interpolate(grid[None, None], size=(panel, panel), mode="bilinear", align_corners=False)
    heat = (up[0, 0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    red = np.zeros((panel, panel, 3), dtype=np.uint8)
    red[..., 0] = 255
    dim = Image.blend(base.convert("RGB"), Image.new("RGB", base.size, BLACK), 0.55)
    mask = Image.fromarray(heat, "L")
    lit = Image.composite(base.convert("RGB"), dim, mask)
    return Image.blend(lit, Image.composite(Image.fromarray(red), lit, mask), 0.25)


def stack(images: list, gap: int = 12) -> object:
    """Pillow images one under the other, left-aligned, on white."""
    from PIL import Image

    width = max(im.width for im in images)
    height = sum(im.height for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), WHITE)
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height + gap
    return canvas


def rounded(weights: Tensor | None, digits: int = 3) -> list[list[float]] | None:
    """``(T, S)`` weights as nested lists rounded to ``digits`` (for JSON)."""
    if weights is None:
        return None
    return [[round(w, digits) for w in row] for row in weights.double().tolist()]


__all__ = ["Plot", "heatmap", "image_figure", "label", "rounded", "shade", "speech_figure", "stack"]
