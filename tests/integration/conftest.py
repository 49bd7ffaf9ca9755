"""Shared fixtures: tiny configs over a slice of the embedded DDTP sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from transduce.config import config_from_dict
from transduce.data.readers import read_parallel_tsv, resolve_data_path

TINY_TRANSFORMER = {
    "encoder": {"type": "transformer", "d_model": 64, "heads": 4, "ff_dim": 128, "layers": 2},
    "decoder": {"type": "transformer", "d_model": 64, "heads": 4, "ff_dim": 128, "layers": 2},
}
TINY_LSTM = {
    "encoder": {"type": "lstm", "embed_dim": 64, "hidden_size": 64, "bidirectional": True},
    "decoder": {"type": "lstm", "embed_dim": 64, "hidden_size": 128, "attention": "general"},
}


def write_slice(path: Path, split: str, n: int) -> Path:
    pairs = read_parallel_tsv(resolve_data_path(f"sample:ddtp-de-en/{split}.tsv"))[:n]
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_slice(d / "train.tsv", "train", 1500)
    write_slice(d / "valid.tsv", "valid", 60)
    write_slice(d / "test.tsv", "test", 60)
    return d


def tiny_config(data_dir: Path, model: dict, **train) -> object:
    raw = {
        "task": "translation",
        "name": "tiny",
        "data": {
            "train": str(data_dir / "train.tsv"),
            "valid": str(data_dir / "valid.tsv"),
            "test": str(data_dir / "test.tsv"),
            "max_src_len": 64,
            "max_tgt_len": 64,
        },
        "tokenizer": {"type": "sentencepiece", "vocab_size": 600, "shared": True},
        "model": model,
        "train": {
            "batch_tokens": 1500,
            "lr": 3e-3,
            "warmup_steps": 20,
            "max_steps": 120,
            "valid_every": 60,
            "valid_max_sentences": 30,
            "label_smoothing": 0.0,
            "progress": False,
            "log_every": 20,
            **train,
        },
        "decode": {"beam": 2, "max_len_b": 20, "max_len_a": 1.2},
    }
    return config_from_dict(raw)


@pytest.fixture(scope="session")
def trained_model(data_dir, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny Transformer trained once for the whole session; returns (run dir, summary)."""
    from transduce.training.trainer import Trainer

    run = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = tiny_config(data_dir, TINY_TRANSFORMER, max_steps=400, valid_every=200)
    summary = Trainer(cfg, run).fit()
    return run, summary


@pytest.fixture(scope="session")
def tiny_run(trained_model) -> Path:
    """The session's trained run folder (checkpoints, best/, last/, logs), for tests that
    check what commands do with a run folder; tests never modify it (copy it first)."""
    return trained_model[0]


@pytest.fixture(scope="session")
def untrained_file_models(tmp_path_factory) -> dict[str, Path]:
    """Model folders of untrained tiny captioning and speech models (inputs are files)."""
    from tests.integration.test_serving import caption_raw, speech_raw, untrained_model_dir

    root = tmp_path_factory.mktemp("file-models")
    return {
        "caption": untrained_model_dir(caption_raw(), root / "caption"),
        "asr": untrained_model_dir(speech_raw(), root / "asr"),
    }
