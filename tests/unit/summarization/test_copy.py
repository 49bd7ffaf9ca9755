"""The copy distribution: normalized over the extended vocabulary, cached == uncached."""

from __future__ import annotations

import pytest
import torch

from transduce.config import ConfigError, ModelConfig
from transduce.decoding import beam_search, greedy_search
from transduce.models import EncoderOutput, build_model
from transduce.models.copy import LOG_FLOOR, copy_log_probs, extended_width, in_vocab
from transduce.training.loss import label_smoothed_nll

V = 13
LSTM_ENC = {"type": "lstm", "embed_dim": 16, "hidden_size": 8, "layers": 2}
TF_ENC = {"type": "transformer", "d_model": 16, "heads": 2, "ff_dim": 32, "layers": 2}
DECODERS = [
    pytest.param({"type": "lstm", "attention": "bahdanau"}, LSTM_ENC, id="lstm-bahdanau"),
    pytest.param({"type": "gru", "attention": "general"}, LSTM_ENC, id="gru-general"),
    pytest.param(
        {"type": "lstm", "attention": "dot", "input_feed": False}, LSTM_ENC, id="lstm-dot-nofeed"
    ),
    pytest.param({"type": "transformer", "d_model": 16, "heads": 2}, TF_ENC, id="transformer"),
]


def make_model(dec: dict, enc: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    dec = {**dec, "copy": True, "layers": 2, "dropout": 0.1}
    if dec["type"] == "transformer":
        dec["ff_dim"] = 32
    else:
        dec.update(embed_dim=16, hidden_size=16)
    enc = {**enc, "type": "gru"} if dec["type"] == "gru" else enc
    return build_model(ModelConfig(encoder=dict(enc), decoder=dec), V, V).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sources with extended ids (13, 14 = per-example OOV words) and padding."""
    src = torch.tensor([[5, 13, 6, 14, 7], [8, 13, 9, 0, 0], [4, 4, 0, 0, 0]])
    tgt = torch.tensor([[13, 14, 6, 2], [13, 5, 6, 7], [1, 4, 5, 6]])
    return src, src.ne(0), tgt


@pytest.mark.parametrize("dec,enc", DECODERS)
@torch.no_grad()
def test_copy_distribution_sums_to_one_over_extended_vocab(dec, enc):
    model = make_model(dec, enc)
    src, mask, tgt = batch()
    log_probs, attn = model(src, mask, tgt)
    assert log_probs.shape == (3, 4, 15)  # V + 2 extended ids
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 4), atol=1e-5, rtol=0)
    # log_softmax leaves them unchanged: searches and the loss can treat them as logits
    torch.testing.assert_close(torch.log_softmax(log_probs, -1), log_probs, atol=1e-5, rtol=0)
    # row 2 has no OOV words: its extended columns are impossible
    assert torch.all(log_probs[2, :, V:] == LOG_FLOOR)
    # an extended id gets exactly the copy mass of its source positions
    assert torch.all(log_probs[0, :, 13] > LOG_FLOOR)


@pytest.mark.parametrize("dec,enc", DECODERS)
@torch.no_grad()
def test_cached_equals_uncached_and_reorder(dec, enc):
    model = make_model(dec, enc)
    src, mask, tgt = batch()
    enc_out = model.encode(src, mask)
    full, _, _ = model.decode(tgt, enc_out)
    state, steps = None, []
    for t in range(tgt.size(1)):
        out, state, _ = model.decode(tgt[:, t : t + 1], enc_out, state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    index = torch.tensor([2, 0, 0, 1])
    _, state, _ = model.decode(tgt[:, :2], enc_out)
    cont, _, _ = model.decode(tgt[index, 2:], enc_out.reorder(index), state.reorder(index))
    ref, _ = model(src[index], mask[index], tgt[index])
    torch.testing.assert_close(cont, ref[:, 2:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dec,enc", DECODERS)
@torch.no_grad()
def test_searches_run_and_beam1_equals_greedy(dec, enc):
    model = make_model(dec, enc)
    src, mask, _ = batch()
    greedy = greedy_search(model, src, mask, max_len=6)
    beam = beam_search(model, src, mask, beam_size=1, max_len=6, len_penalty=0.0)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]
    wide = beam_search(model, src, mask, beam_size=3, max_len=6)
    for i, hyps in enumerate(wide):  # only this sentence's extended ids can be produced
        allowed = set(range(V)) | {int(t) for t in src[i] if t >= V}
        assert set(hyps[0].tokens) <= allowed


def test_loss_accepts_copy_log_probs():
    torch.manual_seed(0)
    logits, attn = torch.randn(2, 3, V), torch.softmax(torch.randn(2, 3, 4), -1)
    src = torch.tensor([[5, 13, 14, 6], [5, 6, 7, 8]])
    log_probs = copy_log_probs(logits, attn, torch.full((2, 3, 1), 0.3), src, V)
    target = torch.tensor([[13, 14, 3], [5, 0, 0]])
    loss, nll, n = label_smoothed_nll(log_probs, target, 0, 0.1)
    assert torch.isfinite(loss) and int(n) == 4
    expected = -(
        log_probs[0, 0, 13] + log_probs[0, 1, 14] + log_probs[0, 2, 3] + log_probs[1, 0, 5]
    )
    torch.testing.assert_close(nll, expected)


def test_helpers_and_config_errors():
    ids = torch.tensor([[1, 12, 13, 20]])
    assert in_vocab(ids, V).tolist() == [[1, 12, 1, 1]]
    assert extended_width(ids, V) == 21 and extended_width(torch.tensor([[4]]), V) == V
    with pytest.raises(ConfigError, match="attention"):
        make_model({"type": "lstm", "attention": "none"}, LSTM_ENC)
    cfg = ModelConfig(encoder=dict(LSTM_ENC), decoder={"type": "lstm", "copy": True})
    with pytest.raises(ConfigError, match="shared"):
        build_model(cfg, V + 1, V)
    model = make_model({"type": "lstm", "attention": "bahdanau"}, LSTM_ENC)
    enc_out = EncoderOutput(memory=torch.randn(1, 3, 16), mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="source ids"):
        model.decode(torch.tensor([[2]]), enc_out)
