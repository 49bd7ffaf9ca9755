"""Fine-tuning: model.init_from starts from a saved folder's weights and tokenizers;
train.freeze keeps the named parameters bit-identical through the updates."""

from __future__ import annotations

import pytest
import torch

from tests.integration.conftest import tiny_config
from transduce.config import ConfigError
from transduce.inference import Predictor
from transduce.training.trainer import Trainer


def test_init_from_loads_weights_and_freeze_keeps_them(trained_model, data_dir, tmp_path):
    run, _ = trained_model
    start = Predictor.load(run / "best").model.state_dict()
    # Only the keys to change are given; the architecture comes from the folder.
    cfg = tiny_config(data_dir, {}, max_steps=6, valid_every=1000, warmup_steps=1)
    cfg.model.init_from = str(run / "best")
    cfg.train.freeze = ["encoder"]
    trainer = Trainer(cfg, tmp_path / "ft")
    trainer._prepare()
    loaded = trainer.model.state_dict()
    assert all(torch.equal(loaded[k].cpu(), start[k]) for k in start)  # starts from the folder
    assert trainer.task.tgt_vocab_size == Predictor.load(run / "best").task.tgt_vocab_size

    cfg2 = tiny_config(data_dir, {}, max_steps=6, valid_every=1000, warmup_steps=1)
    cfg2.model.init_from = str(run / "best")
    cfg2.train.freeze = ["encoder"]
    Trainer(cfg2, tmp_path / "ft2").fit()
    tuned = Predictor.load(tmp_path / "ft2" / "last").model.state_dict()
    encoder = [k for k in start if k.startswith("encoder.")]
    decoder = [k for k in start if k.startswith("decoder.layers.")]
    assert encoder and all(torch.equal(tuned[k], start[k]) for k in encoder)
    assert any(not torch.equal(tuned[k], start[k]) for k in decoder)  # the rest trained


def test_freeze_of_an_unknown_prefix_is_one_clear_error(data_dir, tmp_path):
    from tests.integration.conftest import TINY_TRANSFORMER

    cfg = tiny_config(data_dir, TINY_TRANSFORMER, max_steps=2)
    cfg.train.freeze = ["encodr"]
    with pytest.raises(ConfigError, match="encodr"):
        Trainer(cfg, tmp_path / "x").fit()
