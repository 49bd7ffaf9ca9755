"""oneDNN-packed linear layers: same results as nn.Linear, rebuilt when the weight
changes, never in a checkpoint, copyable, and out of the way of training and int8."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from tests.unit.models.test_models_decoders import make_batch, make_model
from transduce.models import fast_linear
from transduce.models.fast_linear import PackedLinear, pack_linears, unpack_linears
from transduce.models.quantize import apply_precision, quantize_int8

pytestmark = pytest.mark.skipif(not fast_linear.AVAILABLE, reason="no oneDNN in this torch")

CASES = [
    pytest.param({"type": "transformer", "d_model": 32, "heads": 2, "ff_dim": 64}, "transformer",
                 id="transformer"),
    pytest.param({"type": "lstm", "embed_dim": 16, "hidden_size": 32, "attention": "bahdanau"},
                 "lstm", id="lstm-bahdanau"),
]  # fmt: skip


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dec,enc", CASES)
def test_packed_model_equals_the_plain_one(dec: dict, enc: str) -> None:
    model = make_model(dec, enc).eval()
    plain = copy.deepcopy(model)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    assert apply_precision(model, "fp32") is model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is PackedLinear for m in linears)
    src, mask, tgt = make_batch()
    with torch.inference_mode():
        out, _ = model(src, mask, tgt)
        ref, _ = plain(src, mask, tgt)
    close(out, ref)
    assert any(fast_linear._CACHE in m.__dict__ for m in linears)  # the packed path ran
    # same parameters, same keys, nothing packed in the state dict
    state = model.state_dict()
    assert state.keys() == keys.keys()
    assert all(torch.equal(state[k], v) for k, v in keys.items())


def test_each_row_is_the_same_in_any_batch() -> None:
    torch.manual_seed(0)
    layer = pack_linears(torch.nn.Sequential(torch.nn.Linear(48, 80)))[0]
    x = torch.randn(33, 48)
    with torch.inference_mode():
        full = layer(x)
        rows = torch.cat([layer(x[i : i + 1]) for i in range(len(x))])
        three_d = layer(x.view(3, 11, 48))
    assert torch.equal(full, rows)  # exactly: the packed product is batch-invariant
    assert torch.equal(three_d.reshape(33, 80), full)
    close(full, F.linear(x, layer.weight, layer.bias))


def test_the_packed_copy_follows_the_weight() -> None:
    torch.manual_seed(0)
    layer = pack_linears(torch.nn.Sequential(torch.nn.Linear(16, 24)))[0]
    x = torch.randn(5, 16)

    def check() -> None:
        with torch.inference_mode():
            close(layer(x), F.linear(x, layer.weight, layer.bias))

    check()
    with torch.no_grad():
        layer.weight.mul_(-3.0)  # in place, as an optimizer step
    check()
    layer.load_state_dict({"weight": torch.randn(24, 16), "bias": torch.randn(24)})
    check()
    layer.weight = torch.nn.Parameter(torch.randn(24, 16))  # another tensor
    check()
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).square().sum().backward()
    opt.step()
    check()


@pytest.mark.parametrize("dec,enc", CASES)
def test_a_model_built_under_inference_mode_decodes(dec: dict, enc: str) -> None:
    """Weights made under ``torch.inference_mode`` have no version counter, so their
    layers cannot keep a packed copy (it could go stale unseen): they take F.linear, and
    such a model decodes (it raised "Inference tensors do not track version counter"),
    giving the same output as the same weights made normally, and follows an in-place
    write to its weights."""
    from transduce.decoding import greedy_search

    torch.manual_seed(0)
    normal = pack_linears(make_model(dec, enc).eval())
    with torch.inference_mode():
        made = pack_linears(make_model(dec, enc).eval())
        made.load_state_dict(normal.state_dict())
        src, mask, tgt = make_batch()
        out, _ = made(src, mask, tgt)
        ref, _ = normal(src, mask, tgt)
        close(out, ref)
        hyps = greedy_search(made, src, mask, max_len=5)
        assert [h[0].tokens for h in hyps] == [
            h[0].tokens for h in greedy_search(normal, src, mask, max_len=5)
        ]
        for p in made.parameters():
            p.mul_(0.5)  # in place, where no version counter sees it
        with torch.no_grad():
            for p in normal.parameters():
                p.mul_(0.5)
        close(made(src, mask, tgt)[0], normal(src, mask, tgt)[0])
    assert not any(fast_linear._CACHE in m.__dict__ for m in made.modules())


def test_training_takes_the_plain_product_and_gradients_flow() -> None:
    torch.manual_seed(0)
    layer = pack_linears(torch.nn.Sequential(torch.nn.Linear(16, 24)))[0]
    x = torch.randn(5, 16, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, F.linear(x, layer.weight, layer.bias))
    y.sum().backward()
    assert layer.weight.grad is not None and x.grad is not None
    assert fast_linear._CACHE not in layer.__dict__  # nothing packed with autograd on
    with torch.inference_mode():  # float64: not packed either
        dbl = torch.nn.Linear(4, 3).double()
        pack_linears(torch.nn.Sequential(dbl))
        z = torch.randn(2, 4, dtype=torch.float64)
        assert torch.equal(dbl(z), F.linear(z, dbl.weight, dbl.bias))


@pytest.mark.parametrize("dec,enc", CASES)
def test_a_used_packed_model_copies_saves_and_quantizes(dec: dict, enc: str) -> None:
    model = apply_precision(make_model(dec, enc).eval(), "fp32")
    src, mask, tgt = make_batch()
    with torch.inference_mode():
        ref, _ = model(src, mask, tgt)  # packs every layer
    twin = copy.deepcopy(model)  # the packed copies cannot be copied: dropped, rebuilt
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    with torch.inference_mode():
        close(twin(src, mask, tgt)[0], ref)
        close(loaded(src, mask, tgt)[0], ref)
    q = quantize_int8(model)  # unpacks first, so every linear becomes int8
    assert not any(isinstance(m, (torch.nn.Linear, PackedLinear)) for m in q.modules())


def test_unpack_and_missing_onednn(monkeypatch) -> None:
    model = pack_linears(make_model(*CASES[0].values).eval())
    unpack_linears(model)
    assert not any(type(m) is PackedLinear for m in model.modules())
    assert not any(fast_linear._CACHE in m.__dict__ for m in model.modules())
    monkeypatch.setattr(fast_linear, "AVAILABLE", False)
    pack_linears(model)
    assert not any(type(m) is PackedLinear for m in model.modules())
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with torch.inference_mode():
        assert torch.equal(fast_linear.linear(layer, x, layer.weight, layer.bias), layer(x))
    assert fast_linear._CACHE not in layer.__dict__


def test_feed_forward_relu_runs_inside_the_packed_product(monkeypatch) -> None:
    from transduce.models.transformer import FeedForward

    torch.manual_seed(0)
    ff = FeedForward(48, 96, "relu", 0.1).eval()
    plain = copy.deepcopy(ff)
    pack_linears(ff)
    seen = []
    real = fast_linear.linear
    monkeypatch.setattr(
        fast_linear, "linear", lambda *a, **k: seen.append(a[4:] or k) or real(*a, **k)
    )
    x = torch.randn(3, 5, 48)
    with torch.inference_mode():
        out = ff(x)
    close(out, plain(x).detach())
    assert ("relu",) in seen  # fc1 with its ReLU in one call
    ff.train()  # training keeps dropout between the activation and fc2
    seen.clear()
    torch.manual_seed(1)
    ff(x)
    assert ("relu",) not in seen
