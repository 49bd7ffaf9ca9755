"""Contract tests run for every registered decoder (and each of its variants).

Each test builds a tiny model with a matching text encoder and checks the
invariants decoding relies on: cached == uncached, reorder, padding, shapes,
tying, attention weights.
"""

from __future__ import annotations

import pytest
import torch

from transduce import registry
from transduce.config import ModelConfig
from transduce.models import DecoderState, EncoderOutput, build_model, fast_linear
from transduce.models.rnn import RecurrentDecoder
from transduce.models.transformer import TransformerDecoder

SRC_V, TGT_V, PAD = 11, 13, 0
RNN_VARIANTS = [
    ("none", True),
    ("bahdanau", True),
    ("additive", True),
    ("dot", True),
    ("dot", False),
    ("general", True),
    ("general", False),
]
TEXT_ENCODERS = {
    "lstm": {"type": "lstm", "embed_dim": 16, "hidden_size": 8, "layers": 2, "dropout": 0.1},
    "gru": {"type": "gru", "embed_dim": 16, "hidden_size": 8, "layers": 2, "dropout": 0.1},
    "rnn": {
        "type": "rnn",
        "cell": "rnn",
        "embed_dim": 16,
        "hidden_size": 16,
        "layers": 1,
        "bidirectional": False,
    },
    "transformer": {"type": "transformer", "d_model": 16, "heads": 2, "ff_dim": 32, "layers": 2},
}


def decoder_cases() -> list:
    """(decoder section, matching encoder name) for every registered decoder variant."""
    cases = []
    for name in sorted(registry.DECODERS):
        cls = registry.DECODERS[name][0]
        if issubclass(cls, RecurrentDecoder):
            enc = "gru" if name == "gru" else "lstm"
            for attention, feed in RNN_VARIANTS:
                section = {
                    "type": name,
                    "embed_dim": 16,
                    "hidden_size": 16,
                    "layers": 2,
                    "dropout": 0.1,
                    "attention": attention,
                    "input_feed": feed,
                }
                cid = f"{name}-{attention}" + ("" if feed else "-nofeed")
                cases.append(pytest.param(section, enc, id=cid))
        elif issubclass(cls, TransformerDecoder):
            for norm_first in (True, False):
                for positions in ("sinusoidal", "learned"):
                    section = {
                        "type": name,
                        "d_model": 16,
                        "heads": 2,
                        "ff_dim": 32,
                        "layers": 2,
                        "dropout": 0.1,
                        "norm_first": norm_first,
                        "positions": positions,
                        "max_positions": 32,
                    }
                    cid = f"{name}-{'pre' if norm_first else 'post'}-{positions}"
                    cases.append(pytest.param(section, "transformer", id=cid))
        else:  # decoders added later by others: their defaults, a Transformer encoder
            cases.append(pytest.param({"type": name}, "transformer", id=name))
    return cases


CASES = decoder_cases()


def make_model(dec: dict, enc: str, **model_kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=dict(TEXT_ENCODERS[enc]), decoder=dict(dec), **model_kwargs)
    return build_model(cfg, SRC_V, TGT_V, PAD).eval()


def make_batch(B: int = 4, S: int = 6, T: int = 5) -> tuple[torch.Tensor, ...]:
    """Sources of lengths 6, 3, 5, 1 (right padded) and unpadded targets."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([6, 3, 5, 1])[:B]
    mask = torch.arange(S)[None, :] < lengths[:, None]
    src = torch.randint(1, SRC_V, (B, S), generator=g).masked_fill(~mask, PAD)
    tgt = torch.randint(1, TGT_V, (B, T), generator=g)
    return src, mask, tgt


def tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors(v)]
    if isinstance(value, DecoderState):
        return tensors(value.entries())
    return []


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dec,enc", CASES)
@torch.no_grad()
def test_incremental_equals_full(dec: dict, enc: str) -> None:
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    enc_out = model.encode(src, mask)
    full, _, full_attn = model.decode(tgt, enc_out)
    # One token at a time.
    state, steps, attns = None, [], []
    for t in range(tgt.size(1)):
        logits, state, attn = model.decode(tgt[:, t : t + 1], enc_out, state)
        steps.append(logits)
        attns.append(attn)
    close(torch.cat(steps, 1), full)
    if full_attn is not None:
        close(torch.cat(attns, 1), full_attn)
    # Several new tokens per call, after a prefix.
    _, state, _ = model.decode(tgt[:, :2], enc_out)
    rest, _, _ = model.decode(tgt[:, 2:], enc_out, state)
    close(rest, full[:, 2:])


# beam-style: rows repeated and permuted, once or twice in a row (reorders compose;
# the Transformer's cache picks its rows only when it next grows)
REORDERS = [[[2, 0, 0, 3, 1]], [[2, 0, 0, 3, 1], [4, 4, 1, 0, 2]]]


@pytest.mark.parametrize("dec,enc", CASES)
@pytest.mark.parametrize("reorders", REORDERS, ids=["once", "twice"])
@torch.no_grad()
def test_reorder_then_continue(dec: dict, enc: str, reorders: list[list[int]]) -> None:
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    k = 2
    enc_out = model.encode(src, mask)
    _, state, _ = model.decode(tgt[:, :k], enc_out)
    before = [t.clone() for t in tensors(state)]
    index, moved = torch.arange(src.size(0)), state
    for rows in map(torch.tensor, reorders):
        index, moved = index[rows], moved.reorder(rows)
    cont, new_state, _ = model.decode(tgt[index, k:], enc_out.reorder(index), moved)
    ref, _ = model(src[index], mask[index], tgt[index])
    close(cont, ref[:, k:])
    # The old state was not modified in place (beam search may keep it).
    for a, b in zip(before, tensors(state)):
        assert torch.equal(a, b)
    assert all(t.size(0) == len(index) for t in tensors(new_state))


def test_lazy_entries_resolve_like_eager_ones() -> None:
    x = torch.arange(12.0).view(4, 3)
    state = DecoderState(lazy=("a",), a=x, b=x.clone(), c=[x.clone()])
    moved = state.reorder(torch.tensor([3, 3, 0])).reorder(torch.tensor([2, 0]))
    assert moved.a is x  # nothing copied yet
    assert torch.equal(moved.order, torch.tensor([0, 3]))
    assert torch.equal(moved.resolved("a"), moved.b)
    assert torch.equal(moved.resolved("c")[0], moved.b)  # eager entries as before
    assert DecoderState(a=x).reorder(torch.tensor([1])).order is None  # nothing lazy


@pytest.mark.parametrize("dec,enc", CASES)
@torch.no_grad()
def test_padding_is_masked(dec: dict, enc: str) -> None:
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    enc_out = model.encode(src, mask)
    logits, _, attn = model.decode(tgt, enc_out)
    for i in range(src.size(0)):
        n = int(mask[i].sum())
        alone = model.encode(src[i : i + 1, :n], mask[i : i + 1, :n])
        close(enc_out.memory[i, :n], alone.memory[0])
        alone_logits, _, alone_attn = model.decode(tgt[i : i + 1], alone)
        close(logits[i], alone_logits[0])
        if attn is not None:
            close(attn[i, :, :n], alone_attn[0])
    # Other ids at padded positions change nothing.
    noise = torch.randint(1, SRC_V, src.shape, generator=torch.Generator().manual_seed(5))
    src2 = torch.where(mask, src, noise)
    enc2 = model.encode(src2, mask)
    close(enc2.memory[mask], enc_out.memory[mask])
    close(model.decode(tgt, enc2)[0], logits)


@pytest.mark.parametrize("dec,enc", CASES)
@torch.no_grad()
def test_shapes_and_attention_weights(dec: dict, enc: str) -> None:
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    B, S = src.shape
    T = tgt.size(1)
    logits, attn = model(src, mask, tgt)
    assert logits.shape == (B, T, TGT_V)
    assert isinstance(model.decode(tgt, model.encode(src, mask))[1], DecoderState)
    if attn is None:
        assert dec.get("attention") == "none"
        return
    assert attn.shape == (B, T, S)
    close(attn.sum(-1), torch.ones(B, T))
    assert torch.all(attn.masked_select(~mask[:, None, :].expand(B, T, S)) == 0)


@pytest.mark.parametrize("dec,enc", CASES)
def test_tied_and_shared_embeddings(dec: dict, enc: str) -> None:
    model = make_model(dec, enc, tie_embeddings=True)
    assert model.decoder.output_projection.weight is model.decoder.embedding.weight
    assert model.decoder.embedding.padding_idx == PAD
    assert model.encoder.embedding.padding_idx == PAD
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=dict(TEXT_ENCODERS[enc]), decoder=dict(dec), share_embeddings=True)
    shared = build_model(cfg, TGT_V, TGT_V, PAD)
    assert shared.encoder.embedding is shared.decoder.embedding
    names = [n for n, _ in shared.named_parameters()]
    assert len(names) == len(set(id(p) for p in shared.parameters()))
    untied = make_model(dec, enc, tie_embeddings=False)
    assert untied.decoder.output_projection.weight is not untied.decoder.embedding.weight


@pytest.mark.parametrize("enc", sorted(TEXT_ENCODERS))
@pytest.mark.parametrize("dec,_", CASES)
@torch.no_grad()
def test_any_text_encoder_pairs_with_any_decoder(dec: dict, _: str, enc: str) -> None:
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    enc_out = model.encode(src, mask)
    full, _, _ = model.decode(tgt, enc_out)
    assert full.shape == (*tgt.shape, TGT_V)
    _, state, _ = model.decode(tgt[:, :1], enc_out)
    rest, _, _ = model.decode(tgt[:, 1:], enc_out, state)
    close(rest, full[:, 1:])


@pytest.mark.parametrize("dec,_", CASES)
@torch.no_grad()
def test_decoder_reads_any_encoder_output(dec: dict, _: str) -> None:
    """A memory of another width with no final state (as from an image encoder)."""
    dec = dict(dec)
    if "hidden_size" in dec:
        dec["hidden_size"] = 12  # 'dot' needs hidden_size == memory width
    torch.manual_seed(0)
    ctx = registry.BuildContext(tgt_vocab_size=TGT_V, pad_id=PAD, memory_dim=12)
    decoder = registry.build_decoder(dec, ctx).eval()
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    enc_out = EncoderOutput(memory=torch.randn(2, 7, 12), mask=mask)
    tgt = torch.randint(1, TGT_V, (2, 4))
    full, _, attn = decoder(tgt, enc_out)
    assert full.shape == (2, 4, TGT_V)
    state, steps = None, []
    for t in range(4):
        logits, state, _ = decoder(tgt[:, t : t + 1], enc_out, state)
        steps.append(logits)
    close(torch.cat(steps, 1), full)
    if attn is not None:
        assert torch.all(attn[1, :, 4:] == 0)


@pytest.mark.parametrize("dec,enc", CASES)
@torch.no_grad()
def test_hypotheses_per_sentence_equal_expanded_rows(dec: dict, enc: str) -> None:
    """G rows per encoded sentence (per-sentence cross keys/values, beam search's layout)
    give the logits of the memory copied G times, through reorders and dropped sentences."""
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    g = 3
    rows = torch.arange(4).repeat_interleave(g)  # row r continues sentence r // g
    enc_out = model.encode(src, mask)
    expanded = enc_out.reorder(rows)
    tgt = tgt[rows]
    full, _, full_attn = model.decode(tgt, enc_out)
    ref_full, _, ref_attn = model.decode(tgt, expanded)
    close(full, ref_full)
    if ref_attn is not None:
        close(full_attn, ref_attn)
    # Step by step, hypotheses reordered within their sentences, then sentence 1 leaves.
    _, state, _ = model.decode(tgt[:, :2], enc_out)
    _, ref_state, _ = model.decode(tgt[:, :2], expanded)
    assert state.groups == g
    within = torch.tensor([2, 2, 0, 3, 4, 3, 8, 6, 7, 9, 9, 11])
    step, state, _ = model.decode(tgt[within, 2:3], enc_out, state.reorder(within))
    ref_step, ref_state, _ = model.decode(tgt[within, 2:3], expanded, ref_state.reorder(within))
    close(step, ref_step)
    kept = torch.tensor([0, 2, 3])
    drop = torch.tensor([1, 0, 0, 7, 8, 6, 9, 10, 11])  # rows of sentences 0, 2, 3
    step, _, _ = model.decode(
        tgt[within][drop, 3:4], enc_out.reorder(kept), state.reorder(drop, sentences=kept)
    )
    ref_step, _, _ = model.decode(
        tgt[within][drop, 3:4], expanded.reorder(drop), ref_state.reorder(drop)
    )
    close(step, ref_step)


@pytest.mark.parametrize("dec,enc", CASES[:1] + CASES[-1:])
@torch.no_grad()
def test_attention_only_on_demand(dec: dict, enc: str) -> None:
    """need_attention=False gives the same logits; a Transformer then skips the weights."""
    model = make_model(dec, enc)
    src, mask, tgt = make_batch()
    enc_out = model.encode(src, mask)
    with_w, _, attn = model.decode(tgt, enc_out, need_attention=True)
    without, _, no_attn = model.decode(tgt, enc_out, need_attention=False)
    close(without, with_w)
    if isinstance(model.decoder, TransformerDecoder):
        assert attn is not None and no_attn is None


@pytest.mark.parametrize("dec,enc", [CASES[0], CASES[-1]])
def test_vocab_projection_follows_the_weight(dec: dict, enc: str) -> None:
    """Decoding's cached packed output weight equals ``output_projection`` and is
    rebuilt when the weight is written in place (an optimizer step, load_state_dict)
    or replaced."""
    decoder = make_model(dec, enc).decoder
    proj = decoder.output_projection
    x = torch.randn(3, 2, proj.in_features)
    with torch.inference_mode():
        close(decoder.project_to_vocab(x), proj(x))
        if fast_linear.AVAILABLE:
            assert fast_linear._CACHE in proj.__dict__  # the fast path was taken
    with torch.no_grad():
        proj.weight.mul_(-2.0)  # in place, as an optimizer step
        close(decoder.project_to_vocab(x), proj(x))
    proj.weight = torch.nn.Parameter(torch.randn_like(proj.weight))
    with torch.inference_mode():
        close(decoder.project_to_vocab(x), proj(x))
    y = decoder.project_to_vocab(x)  # with autograd: the module itself, gradients flow
    assert y.requires_grad and not any("packed" in k for k in decoder.state_dict())
