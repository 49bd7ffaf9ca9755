"""RNN decoders in CPU training run each time step through the cell functions
(``torch.lstm_cell`` and kin) on the module's own weights: the same numbers and
gradients as the ``nn.LSTM``/``GRU``/``RNN`` module, whose one-step calls are slow."""

from __future__ import annotations

import pytest
import torch

from tests.unit.models.test_models_decoders import TEXT_ENCODERS, make_batch
from transduce.config import ModelConfig
from transduce.models import build_model
from transduce.models import rnn as rnn_module


def build(cell: str, attention: str, feed: bool, layers: int, dropout: float):
    torch.manual_seed(0)
    dec = {
        "type": cell,
        "embed_dim": 16,
        "hidden_size": 16,
        "layers": layers,
        "dropout": dropout,
        "attention": attention,
        "input_feed": feed,
    }
    enc = dict(TEXT_ENCODERS["gru" if cell == "gru" else "lstm"], dropout=0.0)
    return build_model(ModelConfig(encoder=enc, decoder=dec), 11, 13, 0).train()


def run(model) -> tuple[torch.Tensor, list[torch.Tensor]]:
    src, mask, tgt = make_batch()
    model.zero_grad(set_to_none=True)
    logits, _ = model(src, mask, tgt)
    logits.float().logsumexp(-1).sum().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention,feed", [("bahdanau", False), ("general", True)])
@pytest.mark.parametrize("layers", [1, 2])
def test_training_steps_by_cell_functions_equal_the_module(
    monkeypatch: pytest.MonkeyPatch, cell: str, attention: str, feed: bool, layers: int
) -> None:
    model = build(cell, attention, feed, layers, dropout=0.0)
    calls: list[int] = []
    one_step = rnn_module._one_step
    monkeypatch.setattr(rnn_module, "_one_step", lambda *a: calls.append(1) or one_step(*a))
    cells, cell_grads = run(model)
    assert len(calls) == make_batch()[2].size(1)  # one call per target step
    monkeypatch.setattr(rnn_module, "_cell_steps_pay", lambda rnn, x: False)
    module, module_grads = run(model)
    torch.testing.assert_close(cells, module, atol=1e-5, rtol=1e-5)
    assert len(cell_grads) == len(module_grads) == len(list(model.parameters()))
    for a, b in zip(cell_grads, module_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_dropout_between_layers_as_the_module_applies_it(monkeypatch) -> None:
    """With dropout 1 every layer but the first reads zeros, in both paths (the one
    setting where dropout draws nothing random, so the two can be compared)."""
    model = build("lstm", "general", True, 2, dropout=1.0)
    model.decoder.dropout.p = 0.0  # only the RNN's own dropout stays, between its layers
    cells, _ = run(model)
    monkeypatch.setattr(rnn_module, "_cell_steps_pay", lambda rnn, x: False)
    module, _ = run(model)
    torch.testing.assert_close(cells, module, atol=1e-5, rtol=1e-5)
    model.decoder.rnn.dropout = 0.0  # and the dropout mattered
    with pytest.raises(AssertionError):
        torch.testing.assert_close(run(model)[0], module, atol=1e-5, rtol=1e-5)


def test_decoding_and_autocast_keep_the_module(monkeypatch) -> None:
    model = build("lstm", "general", True, 1, dropout=0.0)
    calls: list[int] = []
    one_step = rnn_module._one_step
    monkeypatch.setattr(rnn_module, "_one_step", lambda *a: calls.append(1) or one_step(*a))
    src, mask, tgt = make_batch()
    with torch.no_grad():
        model(src, mask, tgt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(src, mask, tgt)
    assert not calls
