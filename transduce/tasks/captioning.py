"""Image captioning: pictures in, captions out; BLEU-1..4 and CIDEr-D.

Data: the JSONL files ``transduce data prepare tuxpaint|emoji`` writes (see
:mod:`transduce.data.sources.tuxpaint`), one picture per line::

    {"id": "...", "image": "images/x.png", "captions": {"en": ["..", ".."], "de": [".."]}}

Image paths are relative to the JSONL file. ``data.caption_lang`` picks the
language; pictures without a caption in it are left out (counted in the log).
Every caption of a picture in that language is a reference; in training each
distinct caption is an example of its own.

Sources are images: ``src`` ``(B, 3, H, W)`` float in ``[0, 1]`` (``image.size``
square) and ``src_mask`` ``(B, 1)`` all True (one image per row; the encoder makes
the grid mask). There is no source vocabulary: ``src_vocab_size`` is 0. A training
batch holds at most ``train.batch_tokens`` of ``1 + target length`` per picture.
Augmentation (random resized crop, colour jitter; never a flip) happens in
``collate(train=True)`` only.

The evaluate command's baseline is a nearest neighbour: the first caption of the
training picture whose 16x16 downscaled, mean-centred pixels have the highest
cosine similarity with the test picture's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from transduce.config import ConfigError, TransduceError
from transduce.data.images import augment, load_image, to_float
from transduce.data.readers import resolve_data_path
from transduce.data.tokenizers import load_tokenizers, save_tokenizers, train_tokenizer
from transduce.evaluation.metrics import compute_metrics
from transduce.registry import register_aux_loss
from transduce.tasks.base import Batch, Example, Task, register_task, target_tensors

log = logging.getLogger(__name__)


@dataclass
class CaptionItem:
    """One picture and its reference captions in the chosen language."""

    image: Path
    refs: list[str]
    id: str = ""


@dataclass
class ImageExample(Example):
    """An :class:`Example` whose ``src`` is a ``uint8 (3, H, W)`` picture."""

    @property
    def src_len(self) -> int:
        return 1  # one picture: the batch budget counts it as one source position


def read_caption_jsonl(path: Path, lang: str) -> tuple[list[CaptionItem], set[str], int]:
    """JSONL -> (items with captions in ``lang``, languages seen, items without ``lang``)."""
    items, languages, missing = [], set(), 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise TransduceError(f"{path}: not UTF-8 ({e})") from None
    except OSError as e:
        raise TransduceError(f"cannot read {path}: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image, captions = record["image"], record["captions"]
            if not isinstance(image, str) or not isinstance(captions, dict):
                raise TypeError("'image' must be a string and 'captions' a mapping")
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise TransduceError(
                f"{path}:{n}: expected a JSON object with 'image' and 'captions' ({e})"
            ) from None
        languages.update(captions)
        refs = captions.get(lang) or []
        refs = [r.strip() for r in ([refs] if isinstance(refs, str) else refs) if r.strip()]
        if not refs:
            missing += 1
            continue
        items.append(CaptionItem(path.parent / image, refs, str(record.get("id", n))))
    return items, languages, missing


@register_task("captioning")
class CaptioningTask(Task):
    """Picture to caption. Items are :class:`CaptionItem` (path, references)."""

    metric_names = ("bleu1", "bleu2", "bleu3", "bleu4", "cider")
    higher_is_better = {name: True for name in metric_names} | {"loss": False}
    baseline_name = "nearest neighbour: caption of the most similar training image (raw pixels)"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.tok = None
        self._images: dict[Path, Tensor] = {}

    # tokenizers ----------------------------------------------------------------
    def fit(self, train_items: list[CaptionItem]) -> None:
        captions = [r for item in train_items for r in item.refs]
        self.tok = train_tokenizer(self.cfg.tokenizer, captions)

    def save(self, directory: Path) -> None:
        save_tokenizers(Path(directory), self.tok, self.tok, shared=True)

    def load(self, directory: Path) -> None:
        self.tok, _ = load_tokenizers(Path(directory))

    @property
    def src_vocab_size(self) -> int:
        return 0  # the source is pixels

    @property
    def tgt_vocab_size(self) -> int:
        return self.tok.vocab_size

    # data ----------------------------------------------------------------------
    def read_split(self, split: str) -> list[CaptionItem]:
        spec = getattr(self.cfg.data, split)
        if not spec:
            raise ConfigError(f"data.{split} is not set in the config")
        path = resolve_data_path(spec)
        lang = self.cfg.data.caption_lang
        items, languages, missing = read_caption_jsonl(path, lang)
        if not items:
            raise ConfigError(
                f"data.caption_lang: {path} has no captions in '{lang}' "
                f"(languages there: {', '.join(sorted(languages)) or 'none'})"
            )
        if missing:
            log.info("%s: %d pictures have no '%s' caption and are left out", path, missing, lang)
        return items

    def image(self, path: str | Path) -> Tensor:
        """``uint8 (3, size, size)``, read once and kept."""
        path = Path(path)
        if path not in self._images:
            self._images[path] = load_image(path, self.cfg.image.size)
        return self._images[path]

    def examples(self, items: list[CaptionItem], train: bool = False) -> list[Example]:
        max_tgt = self.cfg.data.max_tgt_len
        out: list[Example] = []
        for item in items:
            picture = self.image(item.image)
            captions = list(dict.fromkeys(item.refs)) if train else item.refs[:1]
            for caption in captions:
                ids = self.tok.encode(caption)
                if train:
                    ids = ids[:max_tgt]
                out.append(ImageExample(picture, ids, list(item.refs), str(item.image)))
        return out

    def collate(self, examples: list[Example], train: bool = False) -> Batch:
        images = to_float(torch.stack([e.src for e in examples]))  # (B, 3, H, W)
        if train:
            icfg = self.cfg.image
            images = augment(images, icfg.crop_scale, icfg.color_jitter)
        mask = torch.ones(len(examples), 1, dtype=torch.bool)
        tgt_in, tgt_out, n_tokens = target_tensors([e.tgt for e in examples])
        return Batch(images, mask, tgt_in, tgt_out, n_tokens, [e.ref for e in examples])

    def read_inputs(self, files: list[str]):
        """``transduce predict MODEL a.png b.jpg``: each file is one input."""
        yield from files

    def encode_inputs(self, inputs: list[str]) -> tuple[Tensor, Tensor]:
        images = to_float(torch.stack([load_image(p, self.cfg.image.size) for p in inputs]))
        return images, torch.ones(len(inputs), 1, dtype=torch.bool)

    def input_lengths(self, inputs: list) -> list[int]:
        return [1] * len(inputs)

    def detokenize(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def score(self, hyps: list[str], refs: list) -> dict:
        return compute_metrics(self.metric_names, hyps, refs)

    # evaluation extras -----------------------------------------------------------
    def baseline(self, examples: list[Example]) -> list[str]:
        """For each example, the first caption of the nearest training picture (cosine
        of 16x16 mean-centred pixels)."""
        train = self.read_split("train")
        bank = _pixel_codes(torch.stack([self.image(i.image) for i in train]))  # (N, F)
        query = _pixel_codes(torch.stack([e.src for e in examples]))  # (M, F)
        nearest = (query @ bank.T).argmax(dim=1)
        return [train[int(j)].refs[0] for j in nearest]

    def source_view(self, item: str) -> Tensor:
        """The picture as the encoder sees it, ``uint8 (3, size, size)``."""
        return load_image(item, self.cfg.image.size)

    def output_tokens(self, ids: list[int], source) -> list[str]:
        return [self.tok.decode([t]) or "·" for t in ids]


def _pixel_codes(images: Tensor, side: int = 16) -> Tensor:
    """``uint8 (N, 3, H, W)`` -> unit vectors of downscaled, mean-centred pixels ``(N, F)``."""
    small = F.adaptive_avg_pool2d(to_float(images), side).flatten(1)
    small = small - small.mean(dim=1, keepdim=True)
    return F.normalize(small, dim=1)


@register_aux_loss("doubly_stochastic")
def doubly_stochastic_attention(model, batch: Batch, enc_out, attn: Tensor | None) -> Tensor:
    """Show, Attend and Tell's regularizer ``sum_i (1 - sum_t a_t,i)^2`` per caption,
    summed over the batch: it pushes every grid cell to be looked at about once over
    the caption. ``attn`` ``(B, T, S)``; only real target steps count (padding is
    masked by ``batch.tgt_out``), and only real memory positions ``i``.

    Switch it on with ``train.aux_losses: {doubly_stochastic: 1.0}`` (the weight is
    lambda); the trainer divides the sum by the number of target tokens.
    """
    if attn is None:
        raise ConfigError("train.aux_losses.doubly_stochastic needs a decoder with attention")
    real = batch.tgt_out.ne(0).unsqueeze(-1)  # (B, T, 1)
    total = attn.float().masked_fill(~real, 0.0).sum(dim=1)  # (B, S): sum over t
    per_cell = (1.0 - total).pow(2).masked_fill(~enc_out.mask, 0.0)  # (B, S)
    return per_cell.sum()


__all__ = ["CaptionItem", "CaptioningTask", "ImageExample", "doubly_stochastic_attention"]
