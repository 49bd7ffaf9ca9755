"""Attention modules: exact numbers against references, masking, cached projections."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transduce.config import ConfigError
from transduce.models import attention
from transduce.models.attention import (
    AdditiveAttention,
    MultiHeadAttention,
    MultiplicativeAttention,
    build_rnn_attention,
)

B, T, S = 3, 4, 6


def inputs(dq: int = 8, dk: int = 8) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    q, k = torch.randn(B, T, dq), torch.randn(B, S, dk)
    v = torch.randn(B, S, 5)
    mask = torch.arange(S)[None, :] < torch.tensor([6, 2, 4])[:, None]
    return q, k, v, mask


def check_weights(w: torch.Tensor, mask: torch.Tensor) -> None:
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    assert torch.all(w.masked_select(~mask[:, None, :].expand_as(w)) == 0)


def test_additive_matches_formula_and_cached_keys() -> None:
    q, k, v, mask = inputs(7, 9)
    att = AdditiveAttention(7, 9, 10)
    ctx, w = att(q, k, v, mask)
    scores = att.energy(torch.tanh(att.query_proj(q)[:, :, None] + att.key_proj(k)[:, None]))
    ref = torch.softmax(scores.squeeze(-1).masked_fill(~mask[:, None], float("-inf")), -1)
    torch.testing.assert_close(w, ref)
    torch.testing.assert_close(ctx, ref @ v)
    check_weights(w, mask)
    ctx2, w2 = att(q, k, v, mask, keys_proj=att.project_keys(k))
    torch.testing.assert_close(ctx2, ctx)
    torch.testing.assert_close(w2, w)


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_multiplicative(kind: str) -> None:
    q, k, v, mask = inputs()
    att = MultiplicativeAttention(8, 8, kind)
    ctx, w = att(q, k, v, mask)
    keys = att.key_proj(k) if kind == "general" else k
    ref = torch.softmax((q @ keys.transpose(1, 2)).masked_fill(~mask[:, None], -1e9), -1)
    torch.testing.assert_close(w, ref)
    torch.testing.assert_close(ctx, ref @ v)
    check_weights(w, mask)
    ctx2, _ = att(q, k, v, mask, keys_proj=att.project_keys(k))
    torch.testing.assert_close(ctx2, ctx)


def test_rnn_attention_config_errors() -> None:
    with pytest.raises(ConfigError, match="dot"):
        MultiplicativeAttention(8, 16, "dot")
    with pytest.raises(ConfigError, match="unknown attention"):
        build_rnn_attention("luong", 8, 8)
    assert build_rnn_attention("none", 8, 8) is None


def test_multihead_matches_torch_reference() -> None:
    q, k, _, mask = inputs(16, 16)
    mha = MultiHeadAttention(16, 4).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    out, w = mha(q, k, key_mask=mask, need_weights=True)
    ref_out, ref_w = ref(q, k, k, key_padding_mask=~mask, need_weights=True)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    check_weights(w, mask)


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_fast_path_equals_weights_path(causal: bool) -> None:
    x, _, _, mask = inputs(16, 16)
    mha = MultiHeadAttention(16, 4).eval()
    key_mask = torch.ones(B, T, dtype=torch.bool) if causal else None
    slow, w = mha(x, x, key_mask=key_mask, causal=causal, need_weights=True)
    fast, none = mha(x, x, key_mask=key_mask, causal=causal)
    assert none is None
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    if causal:  # nothing after the query's own position
        assert torch.all(w.triu(diagonal=1) == 0)


def spy_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one on every call of the fused attention kernel."""
    calls: list[int] = []
    fused_kernel = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(
        attention.F,
        "scaled_dot_product_attention",
        lambda *a, **k: calls.append(1) or fused_kernel(*a, **k),
    )
    return calls


@pytest.mark.parametrize("queries", [2, 5, 8])
@pytest.mark.parametrize("masked,causal", [(False, False), (True, False), (True, True)])
def test_multihead_few_queries_path_equals_fused(
    queries: int, masked: bool, causal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At inference 2-8 queries take two batched products instead of the fused kernel."""
    calls = spy_fused_kernel(monkeypatch)
    torch.manual_seed(queries)
    mha = MultiHeadAttention(16, 4).eval()
    keys = torch.randn(3, 9, 16)
    q = keys[:, -queries:] if causal else torch.randn(3, queries, 16)
    key_mask = torch.tensor([[True] * 9, [True] * 9, [True] * 6 + [False] * 3]) if masked else None
    with torch.inference_mode():
        few, _ = mha(q, keys, key_mask=key_mask, causal=causal)
        _, w = mha(q, keys, key_mask=key_mask, causal=causal, need_weights=True)
    assert not calls  # neither inference call took the fused kernel
    fused, _ = mha(q, keys, key_mask=key_mask, causal=causal)  # autograd on: the fused kernel
    assert len(calls) == 1
    torch.testing.assert_close(few, fused, atol=1e-6, rtol=1e-5)
    if masked:
        assert torch.all(w[2, :, 6:] == 0)  # padded keys get no weight
    if causal:  # query i sees keys up to 9 - queries + i
        assert torch.all(w.triu(diagonal=9 - queries + 1) == 0)


def test_additive_key_mask_is_built_once_per_mask_and_follows_writes() -> None:
    """Cross-attention's float mask: 0 on real keys, the lowest value on padding, None
    when nothing is padded; the same mask tensor asked again (every layer, every step)
    gets the same answer without rebuilding it, and a write to the mask rebuilds it."""
    mask = torch.tensor([[True, True, False], [True, True, True]])
    first = attention.additive_key_mask(mask, torch.float32)
    assert first is not None and first.shape == (2, 1, 1, 3)
    low = torch.finfo(torch.float32).min
    assert first[:, 0, 0].tolist() == [[0.0, 0.0, low], [0.0, 0.0, 0.0]]
    assert attention.additive_key_mask(mask, torch.float32) is first  # not rebuilt
    assert attention.additive_key_mask(mask, torch.bfloat16).dtype == torch.bfloat16
    mask[0, 2] = True  # written in place: now nothing is padded
    assert attention.additive_key_mask(mask, torch.float32) is None
    other = mask.clone()
    other[1, 0] = False
    again = attention.additive_key_mask(other, torch.float32)
    assert again is not None and again[1, 0, 0, 0] == low
    with torch.inference_mode():  # inference tensors have no version counter
        made = torch.tensor([[True, False]])
        assert attention.additive_key_mask(made, torch.float32)[0, 0, 0].tolist() == [0.0, low]
    # off the CPU the mask is always built: no device-to-host wait to learn whether
    # anything is padded (a meta tensor stands in for a GPU one: reading it raises)
    elsewhere = torch.ones(2, 3, dtype=torch.bool, device="meta")
    assert attention.additive_key_mask(elsewhere, torch.float32).shape == (2, 1, 1, 3)


def test_cross_attention_without_padding_equals_an_all_true_mask_exactly() -> None:
    """An all-True key mask gives SDPA no mask at all: the same numbers, bit for bit."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    q, keys = torch.randn(3, 1, 16), torch.randn(3, 7, 16)
    k, v = mha.project_kv(keys)
    with torch.inference_mode():
        none, _ = mha.attend(q, k, v)
        all_true, _ = mha.attend(q, k, v, key_mask=torch.ones(3, 7, dtype=torch.bool))
        padded = torch.ones(3, 7, dtype=torch.bool)
        padded[2, 5:] = False
        cut, _ = mha.attend(q[2:], k[2:, :, :5], v[2:, :, :5])
        masked, _ = mha.attend(q, k, v, key_mask=padded)
    assert torch.equal(none, all_true)
    torch.testing.assert_close(masked[2:], cut, atol=1e-6, rtol=1e-5)


def test_multihead_cache_equals_full_causal() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    full, _ = mha(x, x, causal=True)
    cache, steps = None, []
    for t in range(5):
        new_cache = mha.append_kv(x[:, t : t + 1], cache)
        if cache is not None:  # the old cache is not modified
            assert cache[0].size(2) == t
        cache = new_cache
        steps.append(mha.attend(x[:, t : t + 1], *cache, causal=True)[0])
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=1e-5)
    assert cache[0].shape == (2, 2, 5, 8)


def test_multihead_cross_attention_other_width() -> None:
    mha = MultiHeadAttention(16, 4, kv_dim=12)
    k, v = mha.project_kv(torch.randn(2, 7, 12))
    assert k.shape == v.shape == (2, 4, 7, 4)
    out, w = mha.attend(torch.randn(2, 3, 16), k, v, need_weights=True)
    assert out.shape == (2, 3, 16) and w.shape == (2, 3, 7)
    with pytest.raises(ConfigError, match="divisible"):
        MultiHeadAttention(10, 4)


def test_fully_masked_row_stays_finite() -> None:
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    mask = torch.zeros(1, 3, dtype=torch.bool)
    assert torch.isfinite(mha(x, x, key_mask=mask)[0]).all()
    assert torch.isfinite(mha(x, x, key_mask=mask, need_weights=True)[0]).all()


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_training_takes_the_products_path_over_short_keys(
    causal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training under bf16 autocast on the CPU: two products and a softmax up to
    TRAIN_PRODUCTS_MAX_KEYS keys, the fused kernel beyond; the same values and gradients
    either way. fp32 training keeps the fused kernel."""
    calls = spy_fused_kernel(monkeypatch)
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4).train()
    x = torch.randn(3, 10, 32)
    key_mask = torch.tensor([[True] * 10, [True] * 7 + [False] * 3, [True] * 10])

    def run(limit: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(attention, "TRAIN_PRODUCTS_MAX_KEYS", limit)
        mha.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = mha(x, x, key_mask=None if causal else key_mask, causal=causal)
        out.float().square().sum().backward()
        return out.float(), [p.grad.clone() for p in mha.parameters()]

    products, grads_products = run(512)
    assert not calls
    fused, grads_fused = run(9)  # 10 keys: past the limit
    assert len(calls) == 1
    torch.testing.assert_close(products, fused, atol=0.01, rtol=0.01)
    for a, b in zip(grads_products, grads_fused):
        torch.testing.assert_close(a, b, atol=0.1, rtol=0.02)
    mha(x, x, causal=causal)[0].sum().backward()  # fp32 training: the fused kernel
    assert len(calls) == 2
