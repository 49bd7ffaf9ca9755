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


class _InjectInf(Trainer):
    """Makes the gradients of update ``at`` infinite and records what the step did."""

    at = 2

    def _step(self):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.at:
            p = next(self.model.parameters())
            p.grad[0] = float("inf")
            before = {k: v.clone() for k, v in self.model.state_dict().items()}
            lr = self.scheduler.get_lr()
            super()._step()
            self.unchanged = all(
                torch.equal(before[k], v) for k, v in self.model.state_dict().items()
            )
            self.lr_unchanged = lr == self.scheduler.get_lr()
        else:
            super()._step()


def test_non_finite_gradients_skip_the_update(data_dir, tmp_path):
    cfg = tiny_config(data_dir, TINY_TRANSFORMER, max_steps=6, valid_every=6, batch_tokens=400)
    trainer = _InjectInf(cfg, tmp_path / "inf")
    summary = trainer.fit()
    assert trainer.unchanged and trainer.lr_unchanged  # weights and schedule untouched
    assert summary["skipped_updates"] == 1
    assert "update skipped (1 skipped so far)" in (tmp_path / "inf" / "train.log").read_text()
    weights = load_checkpoint(tmp_path / "inf" / "last.pt")["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_a_diverged_run_stops_with_a_clear_error(data_dir, tmp_path, monkeypatch):
    import transduce.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "MAX_SKIPS_IN_A_ROW", 3)

    class AlwaysInf(Trainer):
        def _step(self):
            next(self.model.parameters()).grad[0] = float("nan")
            super()._step()

    cfg = tiny_config(data_dir, TINY_TRANSFORMER, max_steps=10, valid_every=10, batch_tokens=400)
    with pytest.raises(TransduceError, match="3 updates in a row had NaN"):
        AlwaysInf(cfg, tmp_path / "nan").fit()
