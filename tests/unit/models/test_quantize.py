"""Dynamic int8 inference: layers swapped, outputs close to float32, bad use refused."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.unit.models.test_models_decoders import make_batch, make_model
from transduce.config import ConfigError
from transduce.models.quantize import apply_precision, quantize_int8

CASES = [
    pytest.param({"type": "transformer", "d_model": 32, "heads": 2, "ff_dim": 64}, "transformer",
                 id="transformer"),
    pytest.param({"type": "lstm", "embed_dim": 16, "hidden_size": 32, "attention": "bahdanau"},
                 "lstm", id="lstm-bahdanau"),
    pytest.param({"type": "gru", "embed_dim": 16, "hidden_size": 32, "attention": "general"},
                 "gru", id="gru-general"),
]  # fmt: skip


@pytest.mark.parametrize("dec,enc", CASES)
@torch.no_grad()
def test_int8_swaps_layers_and_stays_close(dec: dict, enc: str) -> None:
    model = make_model(dec, enc)
    q = quantize_int8(copy.deepcopy(model))
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds)
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    assert not any(type(m) in (torch.nn.LSTM, torch.nn.GRU) for m in q.modules())
    src, mask, tgt = make_batch()
    ref, _ = model(src, mask, tgt)
    out, _ = q(src, mask, tgt)
    ref_lp, out_lp = ref.log_softmax(-1), out.log_softmax(-1)
    # int8 rounding moves the log-probs a little, never a lot
    assert (ref_lp - out_lp).abs().max() < 0.1
    assert not torch.equal(ref, out)  # it really ran int8 kernels


def test_precision_names() -> None:
    model = make_model(*CASES[0].values)
    assert apply_precision(model, "fp32") is model
    with pytest.raises(ConfigError, match="precision"):
        apply_precision(model, "int4")


@pytest.mark.skipif(
    "onednn" not in torch.backends.quantized.supported_engines, reason="torch built without oneDNN"
)
@torch.no_grad()
def test_int8_linear_takes_onednn_for_many_outputs_and_agrees(monkeypatch) -> None:
    """Int8Linear holds the weight packed for fbgemm and for oneDNN; calls with many
    outputs (rows x out, out wide enough) take oneDNN, the rest fbgemm, and the two give
    the same numbers up to float rounding."""
    import transduce.models.quantize as quantize
    from transduce.models.quantize import _ONEDNN, Int8Linear

    torch.manual_seed(0)
    lin = torch.nn.Linear(48, Int8Linear.MIN_OUT_FEATURES)
    narrow = torch.nn.Linear(48, Int8Linear.MIN_OUT_FEATURES // 2)
    q, q_narrow = quantize_int8(torch.nn.Sequential(lin, narrow))  # type: ignore[misc]
    assert type(q) is Int8Linear and type(q_narrow) is Int8Linear
    assert q.__dict__[_ONEDNN] is not None
    engine_before = torch.backends.quantized.engine
    calls = []
    real = quantize._LINEAR_DYNAMIC  # the operator every int8 call goes through

    class Spy:
        def __call__(self, x, packed, *a, **k):
            ours = (q.__dict__[_ONEDNN], q_narrow.__dict__[_ONEDNN])
            calls.append("onednn" if any(packed is p for p in ours) else "default")
            return real(x, packed, *a, **k)

    monkeypatch.setattr(quantize, "_LINEAR_DYNAMIC", Spy())
    rows = Int8Linear.MIN_OUTPUTS // Int8Linear.MIN_OUT_FEATURES
    assert rows >= Int8Linear.MIN_ROWS
    few = torch.randn(2, 3, 48)  # 6 rows
    many = torch.randn(2, rows // 2, 48)
    y_few, y_many = q(few), q(many)
    assert calls == ["default", "onednn"]
    assert y_few.shape == (2, 3, lin.out_features) and y_many.shape[:2] == many.shape[:2]
    calls.clear()
    q(many[:, :-1])  # one row short of the output count
    q_narrow(torch.randn(64, 48).repeat(8, 1))  # 512 rows, but a narrow layer
    assert calls == ["default", "default"]
    # the same input through the other packing (the input is quantized per tensor, so
    # it must be the same tensor): the same numbers, to float rounding
    calls.clear()
    monkeypatch.setattr(q, "MIN_ROWS", 10**9)
    fbgemm_many = q(many)
    assert calls == ["default"]
    assert torch.allclose(y_many, fbgemm_many, atol=1e-5, rtol=0)
    # and both stay close to float32
    assert (y_many - lin(many)).abs().max() < 0.05
    assert torch.backends.quantized.engine == engine_before  # packing restored the engine


@torch.no_grad()
def test_int8_linear_equals_torchs_dynamic_linear_at_few_rows() -> None:
    """Int8Linear calls the int8 operator by its overload (less dispatch per call); the
    result is torch's own dynamically quantized Linear's, bit for bit, with or without a
    bias."""
    from transduce.models.quantize import Int8Linear

    torch.manual_seed(0)
    for bias in (True, False):
        q = quantize_int8(torch.nn.Sequential(torch.nn.Linear(64, 96, bias=bias)))[0]
        assert type(q) is Int8Linear
        for x in (torch.randn(1, 1, 64), torch.randn(3, 64), torch.randn(2, 5, 64)):
            y = q(x)
            want = torch.ao.nn.quantized.dynamic.Linear.forward(q, x)
            assert y.dtype == x.dtype and torch.equal(y, want)


@pytest.mark.skipif(
    "onednn" not in torch.backends.quantized.supported_engines, reason="torch built without oneDNN"
)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@torch.no_grad()
def test_int8_rnn_takes_onednn_for_large_batches_and_agrees(monkeypatch, kind: str) -> None:
    """Int8LSTM / Int8GRU: batches whose gate products have MIN_OUTPUTS outputs or more
    run on the oneDNN packing, smaller ones on the default; both give the float model's
    result to int8 rounding
    and each other's to float rounding (but for an int8 rounding step where the second
    layer's input lands on one), on plain and packed (encoder) inputs, with and
    without a given hidden state."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from transduce.models.quantize import _ONEDNN, Int8GRU, Int8LSTM

    torch.manual_seed(0)
    cls, qcls = (torch.nn.LSTM, Int8LSTM) if kind == "lstm" else (torch.nn.GRU, Int8GRU)
    rnn = cls(12, 16, num_layers=2, batch_first=True, bidirectional=True)
    q = quantize_int8(torch.nn.Sequential(copy.deepcopy(rnn)))[0]
    assert type(q) is qcls
    onednn = q.__dict__[_ONEDNN]
    assert len(onednn) == 4  # 2 layers x 2 directions
    op_name = "quantized_lstm" if kind == "lstm" else "quantized_gru"
    real = getattr(torch, op_name)
    calls = []

    def spy(*args, **kwargs):
        params = next(a for a in args if isinstance(a, list))
        calls.append("onednn" if params is onednn else "default")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, op_name, spy)
    rows = -(-qcls.MIN_OUTPUTS // (qcls.GATES * 16))  # the fewest rows that take oneDNN
    x = torch.randn(rows, 5, 12)
    lengths = torch.randint(1, 6, (rows,))
    lengths[0] = 5
    h0 = torch.randn(4, rows, 16)
    hx = (h0, torch.randn(4, rows, 16)) if kind == "lstm" else h0
    inputs = [
        (x, None),
        (x, hx),
        (pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), None),
    ]
    many = [q(inp, h) for inp, h in inputs]
    assert calls == ["onednn"] * 3
    few = q(x[:3])
    assert calls[-1] == "default" and few[0].shape == (3, 5, 32)
    q(x[:-1])  # one row short
    assert calls[-1] == "default"
    monkeypatch.setattr(q, "MIN_ROWS", 10**9)
    calls.clear()
    default = [q(inp, h) for inp, h in inputs]
    assert calls == ["default"] * 3
    for (out_a, h_a), (out_b, h_b), (inp, h) in zip(many, default, inputs):
        out_f, _ = rnn(inp, h)
        if isinstance(out_a, torch.nn.utils.rnn.PackedSequence):
            out_a, out_b, out_f = out_a.data, out_b.data, out_f.data
        # float rounding, except where the second layer's input, one packing's output,
        # lands on an int8 rounding step: then one step of it (about 1e-3 here)
        diff = (out_a - out_b).abs()
        assert (diff > 1e-5).float().mean() < 0.005 and diff.max() < 0.01
        assert (out_a - out_f).abs().max() < 0.05
        for a, b in zip(*((h_a, h_b) if kind == "lstm" else ((h_a,), (h_b,)))):
            assert ((a - b).abs() > 1e-5).float().mean() < 0.005 and (a - b).abs().max() < 0.01


@pytest.mark.skipif(
    "onednn" not in torch.backends.quantized.supported_engines, reason="torch built without oneDNN"
)
@torch.inference_mode()
def test_int8_layers_give_the_same_results_from_several_threads() -> None:
    """`serve` decodes in a thread pool. torch's oneDNN int8 kernels race on a shared
    packed weight (without the lock: 2-21 wrong results in 1,600 calls, off by up to
    1.3); every call from 4 threads at once must equal the same call alone."""
    import threading

    from transduce.models.quantize import Int8Linear, Int8LSTM

    torch.manual_seed(0)
    model = quantize_int8(
        torch.nn.Sequential(
            torch.nn.Linear(64, 512),
            torch.nn.ReLU(),
            torch.nn.Linear(512, 1024),
            torch.nn.LSTM(1024, 256, batch_first=True),
        )
    )
    xs = [torch.randn(128, 1, 64) * (i + 1) for i in range(8)]
    assert 128 * 512 >= Int8Linear.MIN_OUTPUTS and 128 * 4 * 256 >= Int8LSTM.MIN_OUTPUTS
    alone = [model(x)[0] for x in xs]
    wrong: list[tuple[int, float]] = []

    def work(k: int) -> None:
        with torch.inference_mode():
            for rep in range(300):
                i = (k + rep) % len(xs)
                y = model(xs[i])[0]
                if not torch.equal(y, alone[i]):
                    wrong.append((i, float((y - alone[i]).abs().max())))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
