"""Self-attention's queries, keys and values in one product: the same values and
gradients as three products, the parameters untouched, the packed copy rebuilt when a
weight changes, and int8 layers left to their own products."""

from __future__ import annotations

import copy

import pytest
import torch

from transduce.models import fast_linear
from transduce.models.attention import QKV_INT8, MultiHeadAttention
from transduce.models.quantize import apply_precision


def separate(attn: MultiHeadAttention, x: torch.Tensor):
    return (attn._split(attn.q_proj(x)), *attn.project_kv(x))


def close(a, b) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def make(d: int = 32, heads: int = 4, kv_dim: int | None = None) -> MultiHeadAttention:
    torch.manual_seed(0)
    attn = MultiHeadAttention(d, heads, kv_dim=kv_dim)
    for m in (attn.q_proj, attn.k_proj, attn.v_proj):
        torch.nn.init.normal_(m.bias)  # distinct, non-zero biases: a mix-up shows
    return attn


def test_values_and_gradients_equal_three_products() -> None:
    attn = make()
    twin = copy.deepcopy(attn)
    x = torch.randn(3, 5, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    fused = attn.project_qkv(x)
    ref = separate(twin, x2)
    for a, b in zip(fused, ref):
        assert a.shape == (3, 4, 5, 8)
        close(a, b)
    weights = torch.randn(3, 3, 4, 5, 8)
    sum((w * t).sum() for w, t in zip(weights, fused)).backward()
    sum((w * t).sum() for w, t in zip(weights, ref)).backward()
    close(x.grad, x2.grad)
    for name in ("q_proj", "k_proj", "v_proj"):
        for p in ("weight", "bias"):
            close(getattr(getattr(attn, name), p).grad, getattr(getattr(twin, name), p).grad)
    # the parameters stay three layers: same state-dict keys as before
    assert set(attn.state_dict()) == set(twin.state_dict())


def test_self_attention_forward_takes_the_fused_product(monkeypatch) -> None:
    attn = make()
    x = torch.randn(2, 6, 32)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    want = MultiHeadAttention.attend(attn, x, *attn.project_kv(x), key_mask=mask)[0]
    calls = []
    real = fast_linear.linear_concat
    monkeypatch.setattr(
        fast_linear, "linear_concat", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    got = attn(x, x, key_mask=mask)[0]
    close(got, want)
    assert calls == [1]
    # cross-attention (keys are another tensor) keeps its own products
    attn(x, torch.randn(2, 6, 32), key_mask=mask)
    assert calls == [1]


@pytest.mark.skipif(not fast_linear.AVAILABLE, reason="no oneDNN in this torch")
def test_packed_copy_is_cached_and_rebuilt_when_a_weight_changes() -> None:
    attn = make()
    fast_linear.pack_linears(attn)
    x = torch.randn(4, 1, 32)
    with torch.inference_mode():
        first = attn.project_qkv(x)
    cached = attn.__dict__[fast_linear._CONCAT_CACHE]
    plain = copy.deepcopy(attn)
    fast_linear.unpack_linears(plain)
    for a, b in zip(first, separate(plain, x)):
        close(a, b)
    with torch.inference_mode():
        attn.project_qkv(x)
    assert attn.__dict__[fast_linear._CONCAT_CACHE] is cached  # reused
    with torch.no_grad():
        attn.v_proj.bias.add_(1.0)  # an in-place change to one of the six tensors
    with torch.inference_mode():
        q, k, v = attn.project_qkv(x)
    assert attn.__dict__[fast_linear._CONCAT_CACHE] is not cached
    close(v, first[2] + 1.0)
    close(q, first[0])
    fast_linear.unpack_linears(attn)
    assert fast_linear._CONCAT_CACHE not in attn.__dict__


def test_int8_self_attention_makes_one_int8_product() -> None:
    attn = make().eval()
    keys = set(attn.state_dict())
    x = torch.randn(2, 3, 32)
    with torch.inference_mode():
        ref = separate(attn, x)
    apply_precision(attn, "int8")
    assert type(attn.q_proj) is not torch.nn.Linear  # quantized for cross-attention use
    fused = attn.__dict__[QKV_INT8]
    calls = []
    fused.register_forward_hook(lambda *a: calls.append(1))
    with torch.inference_mode():
        got = attn.project_qkv(x)
    assert calls == [1]  # one int8 product for all three
    for a, b in zip(got, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)  # int8 rounding
    # never saved: the int8 model's state dict has the same layers as before
    assert {k.split("._packed_params")[0].rsplit(".", 1)[0] for k in attn.state_dict()} >= {
        k.rsplit(".", 1)[0] for k in keys
    }
    assert not any("qkv" in k for k in attn.state_dict())
    # autograd on: never the int8 copy (it is for decoding only)
    with torch.enable_grad():
        attn.project_qkv(x)
    assert calls == [1]
