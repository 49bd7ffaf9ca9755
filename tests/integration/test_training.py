"""Tiny models trained on real DDTP pairs: they must learn, and resume must be exact."""

from __future__ import annotations

import math

import pytest
import torch

from tests.integration.conftest import TINY_LSTM, TINY_TRANSFORMER, tiny_config
from transduce.config import TransduceError
from transduce.training.checkpoint import load_checkpoint
from transduce.training.trainer import Trainer


def test_transformer_learns(trained_model):
    run, summary = trained_model
    history = summary["history"]
    assert [h["step"] for h in history] == [200, 400]
    uniform = math.log(600)  # the loss of a model that knows nothing about the vocabulary
    assert history[-1]["loss"] < 0.7 * uniform
    assert history[-1]["loss"] < history[0]["loss"]
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (run / "best" / name).is_file()
    assert (run / "last.pt").is_file() and (run / "tb").is_dir()


def test_attention_lstm_learns(data_dir, tmp_path):
    cfg = tiny_config(data_dir, TINY_LSTM, max_steps=100, valid_every=50)
    history = Trainer(cfg, tmp_path / "lstm").fit()["history"]
    assert history[-1]["loss"] < 0.7 * math.log(600)
    assert history[-1]["loss"] < history[0]["loss"]


def _final_weights(run):
    return load_checkpoint(run / "last.pt")["model"]


@pytest.mark.parametrize("model", [TINY_TRANSFORMER, TINY_LSTM], ids=["transformer", "lstm"])
def test_resume_continues_exactly(data_dir, tmp_path, model):
    """Stopping after 3 updates and resuming to 6 equals 6 updates in one go."""
    small = dict(max_steps=6, valid_every=3, batch_tokens=400, valid_max_sentences=4)
    model = {k: {**v, "dropout": 0.3} for k, v in model.items()}
    Trainer(tiny_config(data_dir, model, **small), tmp_path / "straight").fit()
    Trainer(tiny_config(data_dir, model, **{**small, "max_steps": 3}), tmp_path / "cut").fit()
    Trainer(tiny_config(data_dir, model, **small), tmp_path / "cut", resume=True).fit()
    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert state["progress"]["step"] == 6


def test_existing_run_needs_resume_flag(trained_model):
    run, _ = trained_model
    cfg = tiny_config(run.parent, TINY_TRANSFORMER)
    with pytest.raises(TransduceError, match="--resume"):
        Trainer(cfg, run).fit()


def test_gru_bahdanau_with_characters_learns(data_dir, tmp_path):
    model = {
        "encoder": {"type": "gru", "embed_dim": 48, "hidden_size": 64},
        "decoder": {"type": "gru", "embed_dim": 48, "hidden_size": 96, "attention": "bahdanau"},
    }
    cfg = tiny_config(data_dir, model, max_steps=80, valid_every=40, batch_tokens=3000)
    cfg.tokenizer.type = "char"
    summary = Trainer(cfg, tmp_path / "gru").fit()
    from transduce.data.tokenizers import load_tokenizers

    _, tgt_tok = load_tokenizers(tmp_path / "gru" / "vocab")
    uniform = math.log(tgt_tok.vocab_size)
    assert summary["history"][-1]["loss"] < 0.6 * uniform


def test_bf16_autocast_trains_without_attention(data_dir, tmp_path):
    model = {
        "encoder": {"type": "lstm", "embed_dim": 64, "hidden_size": 64},
        "decoder": {"type": "lstm", "embed_dim": 64, "hidden_size": 128, "attention": "none"},
    }
    cfg = tiny_config(data_dir, model, max_steps=60, valid_every=30, precision="bf16")
    history = Trainer(cfg, tmp_path / "bf16").fit()["history"]
    assert all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < 0.8 * math.log(600)
