"""Untrained tiny model folders of every task, for tests of plots, the API and the page
(what is drawn or served is under test, not the models' quality)."""

from __future__ import annotations

from pathlib import Path

import torch

from transduce.config import config_from_dict
from transduce.inference import save_model_dir
from transduce.models.seq2seq import build_model
from transduce.tasks import build_task

SPLITS = ("train", "valid", "test")
TRANSFORMER = {"d_model": 32, "heads": 4, "ff_dim": 64, "layers": 2, "dropout": 0.0}


def untrained_model_dir(raw: dict, directory: Path) -> Path:
    """A model folder with random weights: tokenizers fitted on the sample, no training."""
    cfg = config_from_dict(raw)
    task = build_task(cfg)
    task.fit(task.read_split("train"))
    torch.manual_seed(0)
    model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
    save_model_dir(directory, model, cfg, task)
    return directory


def translation_raw() -> dict:
    return {
        "task": "translation",
        "name": "tiny-translate",
        "data": {s: f"sample:ddtp-de-en/{s}.tsv" for s in SPLITS},
        "tokenizer": {"type": "sentencepiece", "vocab_size": 600, "shared": True},
        "model": {
            "encoder": {"type": "transformer", **TRANSFORMER},
            "decoder": {"type": "transformer", **TRANSFORMER},
        },
        "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 12},
    }


def summarization_raw() -> dict:
    """A pointer-generator: LSTM with attention and the copy gate."""
    return {
        "task": "summarization",
        "name": "tiny-summarize",
        "data": {s: f"sample:debian-summaries-en/{s}.tsv" for s in SPLITS},
        "tokenizer": {"type": "word", "vocab_size": 400, "shared": True},
        "model": {
            "encoder": {"type": "lstm", "embed_dim": 32, "hidden_size": 32, "bidirectional": True},
            "decoder": {
                "type": "lstm",
                "embed_dim": 32,
                "hidden_size": 32,
                "attention": "bahdanau",
                "copy": True,
            },
        },
        "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 8},
    }


def caption_raw() -> dict:
    return {
        "task": "captioning",
        "name": "tiny-caption",
        "data": {s: f"sample:emoji/{s}.jsonl" for s in SPLITS},
        "image": {"size": 32},
        "tokenizer": {"type": "word", "vocab_size": 500},
        "model": {
            "encoder": {"type": "resnet", "widths": [8, 16], "depths": [1, 1], "d_model": 32},
            "decoder": {"type": "lstm", "embed_dim": 32, "hidden_size": 32, "attention": "dot"},
        },
        "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 6},
    }


def speech_raw(mode: str = "joint") -> dict:
    layer = {"d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1, "dropout": 0.0}
    return {
        "task": "speech",
        "name": "tiny-asr",
        "data": {s: f"sample:speech-tts/{s}.jsonl" for s in SPLITS},
        "tokenizer": {"type": "char"},
        "model": {
            "encoder": {"type": "conformer", "subsampling_channels": 8, **layer},
            "decoder": {"type": "transformer", **layer},
        },
        "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 8, "mode": mode},
    }
