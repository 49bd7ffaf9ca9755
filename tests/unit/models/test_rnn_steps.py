"""RNN decoders in CPU training run each time step through the cell functions
(``torch.lstm_cell`` and kin) on the module's own weights: the same numbers and
gradients as the ``nn.LSTM``/``GRU``/``RNN`` module, whose one-step calls are slow.
In decoding, a packed model (``fast_linear.pack_linears``) steps on packed weights:
the same numbers again."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.unit.models.test_models_decoders import TEXT_ENCODERS, make_batch
from transduce.config import ModelConfig
from transduce.models import build_model, fast_linear
from transduce.models import rnn as rnn_module
from transduce.models.fast_linear import PackedGRU, PackedLSTM, PackedRNN
from transduce.models.quantize import quantize_int8


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


# -- decoding: one-token steps on packed weights (fast_linear.pack_linears) ------------


@pytest.mark.skipif(not fast_linear.AVAILABLE, reason="no oneDNN in this torch")
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention,feed", [("bahdanau", False), ("general", True)])
@pytest.mark.parametrize("layers", [1, 2])
def test_decoding_steps_on_packed_weights_equal_the_module(
    monkeypatch: pytest.MonkeyPatch, cell: str, attention: str, feed: bool, layers: int
) -> None:
    model = build(cell, attention, feed, layers, dropout=0.0).eval()
    plain = copy.deepcopy(model)
    fast_linear.pack_linears(model)
    assert type(model.decoder.rnn) in (PackedLSTM, PackedGRU, PackedRNN)
    calls: list[int] = []
    step = rnn_module._packed_step
    monkeypatch.setattr(rnn_module, "_packed_step", lambda *a: calls.append(1) or step(*a))
    src, mask, tgt = make_batch()
    with torch.no_grad():
        packed, _ = model(src, mask, tgt)
        ref, _ = plain(src, mask, tgt)
    assert len(calls) == tgt.size(1)  # one call per target step
    torch.testing.assert_close(packed, ref, atol=1e-5, rtol=1e-5)
    with torch.enable_grad():  # training takes the cell functions, not the packed copy
        model.train()
        model(src, mask, tgt)
    assert len(calls) == tgt.size(1)


@pytest.mark.skipif(not fast_linear.AVAILABLE, reason="no oneDNN in this torch")
@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_step_equals_the_module_row_by_row(cls: type, bias: bool) -> None:
    """Odd sizes, no bias, ReLU for the plain RNN; each row as it comes out alone."""
    torch.manual_seed(1)
    kwargs = {"nonlinearity": "relu"} if cls is torch.nn.RNN else {}
    rnn = cls(7, 21, num_layers=2, bias=bias, batch_first=True, **kwargs).eval()
    plain = copy.deepcopy(rnn)
    fast_linear.pack_linears(rnn)
    x = torch.randn(5, 1, 7)
    h = torch.randn(2, 5, 21)
    hx = (h, torch.randn(2, 5, 21)) if cls is torch.nn.LSTM else h

    def rows(state, i):
        return (
            tuple(s[:, i : i + 1] for s in state)
            if isinstance(state, tuple)
            else state[:, i : i + 1]
        )

    def flat(state):
        return state if isinstance(state, tuple) else (state,)

    with torch.no_grad():
        assert rnn_module._packed_steps_pay(rnn, x)
        out, state = rnn_module._packed_step(rnn, x, hx)
        ref_out, ref_state = plain(x, hx)
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
        for a, b in zip(flat(state), flat(ref_state)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        for i in range(5):
            one, one_state = rnn_module._packed_step(rnn, x[i : i + 1], rows(hx, i))
            torch.testing.assert_close(one, out[i : i + 1], atol=1e-6, rtol=0)
            for a, b in zip(flat(one_state), flat(rows(state, i))):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.skipif(not fast_linear.AVAILABLE, reason="no oneDNN in this torch")
def test_the_packed_rnn_follows_its_weights_and_unpacks() -> None:
    model = fast_linear.pack_linears(build("lstm", "general", True, 2, dropout=0.0).eval())
    other = build("lstm", "general", True, 2, dropout=0.0).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    src, mask, tgt = make_batch()
    with torch.no_grad():
        before, _ = model(src, mask, tgt)  # packs every layer
        model.load_state_dict(other.state_dict())  # written in place: packed again
        after, _ = model(src, mask, tgt)
        ref, _ = other(src, mask, tgt)
    assert not torch.allclose(before, ref, atol=1e-3)
    torch.testing.assert_close(after, ref, atol=1e-5, rtol=1e-5)
    rnn = model.decoder.rnn
    assert any(k.startswith(fast_linear._JOINED_CACHE) for k in rnn.__dict__)
    fast_linear.unpack_linears(model)
    assert type(rnn) is torch.nn.LSTM
    assert not any(k.startswith(fast_linear._JOINED_CACHE) for k in rnn.__dict__)
    q = quantize_int8(fast_linear.pack_linears(model))  # int8 unpacks first: LSTMs too
    assert not any(type(m) in (PackedLSTM, torch.nn.LSTM) for m in q.modules())
