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
