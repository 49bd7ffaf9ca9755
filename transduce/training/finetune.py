"""Fine-tuning: start from a saved model folder (``model.init_from``), freeze parts of it.

``model.init_from: DIR`` (any transduce model folder, e.g. one written by
``transduce import whisper``): the run takes the folder's tokenizers instead of
training new ones, its model architecture (the run's ``model.encoder`` /
``model.decoder`` sections may list only the keys to change, such as dropout), and
its weights as the starting point. A resumed run continues from its own checkpoint,
never from ``init_from`` again, so resume stays exact.

``train.freeze: [encoder, decoder.embedding]``: parameters whose names start with
one of the prefixes get ``requires_grad = False`` and are left out of the optimizer,
so they stay bit-identical.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from transduce.config import Config, ConfigError, ModelConfig

_DEFAULT_SECTIONS = {
    "encoder": ModelConfig().encoder,
    "decoder": ModelConfig().decoder,
}


def merge_init_config(cfg: Config, saved: Config) -> Config:
    """``cfg`` with the model architecture of ``saved`` (the init_from folder's config);
    keys the run sets in ``model.encoder``/``model.decoder`` override the saved ones."""
    sections = {}
    for part in ("encoder", "decoder"):
        ours, theirs = getattr(cfg.model, part), getattr(saved.model, part)
        if ours == _DEFAULT_SECTIONS[part]:
            sections[part] = dict(theirs)
            continue
        if ours.get("type", theirs["type"]) != theirs["type"]:
            raise ConfigError(
                f"model.{part}.type is {ours['type']!r} but model.init_from holds a "
                f"{theirs['type']!r} {part}; leave model.{part} out or change only its options"
            )
        sections[part] = {**theirs, **ours}
    model = dataclasses.replace(
        cfg.model,
        encoder=sections["encoder"],
        decoder=sections["decoder"],
        tie_embeddings=saved.model.tie_embeddings,
        share_embeddings=saved.model.share_embeddings,
    )
    tokenizer = dataclasses.replace(cfg.tokenizer, type=saved.tokenizer.type)
    return dataclasses.replace(cfg, model=model, tokenizer=tokenizer)


def init_from_dir(cfg: Config) -> Path | None:
    if not cfg.model.init_from:
        return None
    folder = Path(cfg.model.init_from)
    if not (folder / "model.safetensors").is_file():
        raise ConfigError(
            f"model.init_from: {folder} is not a transduce model folder (no model.safetensors)"
        )
    return folder


def freeze(model: nn.Module, prefixes: list) -> int:
    """Stop training the parameters under ``prefixes``; returns how many were frozen.

    A prefix that matches no parameter is an error naming it.
    """
    frozen = 0
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError(f"train.freeze: expected parameter name prefixes, got {prefix!r}")
        matched = [
            p
            for name, p in model.named_parameters()
            if name == prefix or name.startswith(prefix + ".")
        ]
        if not matched:
            top = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
            raise ConfigError(
                f"train.freeze: no parameter is named {prefix!r} or starts with it "
                f"(e.g. {', '.join(top)})"
            )
        for p in matched:
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
    return frozen


__all__ = ["freeze", "init_from_dir", "merge_init_config"]
