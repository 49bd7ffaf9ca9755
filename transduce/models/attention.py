"""Attention: additive (Bahdanau), multiplicative (Luong dot/general), multi-head.

All modules take a ``key_mask`` ``(B, S)`` bool, True for real keys, and give
padded keys exactly zero weight. The RNN attentions let a decoder project the
keys once per source (``project_keys``) and pass the result back as
``keys_proj`` on every step. :class:`MultiHeadAttention` likewise exposes
``project_kv`` (cross-attention: once per source) and ``append_kv``
(self-attention: grow a cache by the new tokens' keys and values).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transduce.config import ConfigError
from transduce.models import fast_linear


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last dim where ``mask`` (broadcastable, True = keep) is False -> 0.

    A large finite negative instead of ``-inf`` keeps a fully masked row finite
    (uniform) rather than NaN, so one empty sequence cannot poison a batch.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015): ``score(q, k) = v^T tanh(W q + U k)``.

    query_dim: width of the query (the decoder hidden state).
    key_dim: width of the keys (the encoder memory).
    hidden_dim: width of the tanh layer.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim)
        self.energy = nn.Linear(hidden_dim, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """keys ``(B, S, Dk)`` -> ``U k`` ``(B, S, A)``; compute once per source."""
        return self.key_proj(keys)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        key_mask: Tensor | None = None,
        keys_proj: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """query ``(B, T, Dq)``, keys ``(B, S, Dk)``, values ``(B, S, Dv)``, mask ``(B, S)``.

        Returns context ``(B, T, Dv)`` and weights ``(B, T, S)``.
        """
        if keys_proj is None:
            keys_proj = self.project_keys(keys)
        q = self.query_proj(query)  # (B, T, A)
        scores = self.energy(torch.tanh(q.unsqueeze(2) + keys_proj.unsqueeze(1))).squeeze(-1)
        mask = key_mask.unsqueeze(1) if key_mask is not None else None  # (B, 1, S)
        weights = masked_softmax(scores, mask)  # (B, T, S)
        return torch.bmm(weights, values), weights


class MultiplicativeAttention(nn.Module):
    """Luong et al. (2015): ``dot``: ``q . k``; ``general``: ``q . (W k)``.

    ``general`` applies ``W`` to the keys rather than the query so the product
    ``W k`` can be computed once per source and reused on every step.
    """

    def __init__(self, query_dim: int, key_dim: int, kind: str = "general") -> None:
        super().__init__()
        if kind not in ("dot", "general"):
            raise ConfigError(f"multiplicative attention is 'dot' or 'general', got {kind!r}")
        if kind == "dot" and query_dim != key_dim:
            raise ConfigError(
                f"'dot' attention needs the decoder hidden_size ({query_dim}) to equal the "
                f"encoder's output width ({key_dim}); use attention: general, or change the sizes"
            )
        self.kind = kind
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False) if kind == "general" else None

    def project_keys(self, keys: Tensor) -> Tensor:
        """keys ``(B, S, Dk)`` -> ``(B, S, Dq)`` (``W k`` for general, ``k`` for dot)."""
        return self.key_proj(keys) if self.key_proj is not None else keys

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        key_mask: Tensor | None = None,
        keys_proj: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Same signature and shapes as :meth:`AdditiveAttention.forward`."""
        if keys_proj is None:
            keys_proj = self.project_keys(keys)
        scores = torch.bmm(query, keys_proj.transpose(1, 2))  # (B, T, S)
        mask = key_mask.unsqueeze(1) if key_mask is not None else None
        weights = masked_softmax(scores, mask)
        return torch.bmm(weights, values), weights


def build_rnn_attention(kind: str, query_dim: int, key_dim: int) -> nn.Module | None:
    """The attention an RNN decoder uses: none, bahdanau/additive, dot, general."""
    if kind == "none":
        return None
    if kind in ("bahdanau", "additive"):
        return AdditiveAttention(query_dim, key_dim, query_dim)
    if kind in ("dot", "general"):
        return MultiplicativeAttention(query_dim, key_dim, kind)
    raise ConfigError(
        f"model.decoder.attention: unknown attention {kind!r} "
        "(one of: none, bahdanau, additive, dot, general)"
    )


def _grow(past: Tensor, new: Tensor, order: Tensor | None) -> Tensor:
    """``cat([past[order], new], dim=2)`` in one copy: selecting the rows straight into
    the grown tensor is 2.7x faster than a reorder followed by a ``cat`` (96 against
    259 us for a base model's cache of 20 tokens, beam 4 x 32 sentences)."""
    if order is None:
        return torch.cat([past, new], dim=2)
    if torch.is_grad_enabled() and (past.requires_grad or new.requires_grad):
        return torch.cat([past.index_select(0, order), new], dim=2)  # out= has no autograd
    T = past.size(2)
    out = past.new_empty(order.numel(), past.size(1), T + new.size(2), past.size(3))
    torch.index_select(past, 0, order, out=out[:, :, :T])
    out[:, :, T:] = new
    return out


_PLAIN_LINEAR = (nn.Linear, fast_linear.PackedLinear)
# the attribute holding the int8 copy of q/k/v side by side that
# transduce.models.quantize.quantize_int8 makes (a plain attribute, not a submodule)
QKV_INT8 = "_qkv_int8"

# Training in bf16 (or fp16) on the CPU attends over at most this many keys with two
# batched products and an explicit softmax instead of the fused kernel, whose bf16
# backward is slow: forward + backward of q, k, v (128, 4, 32, 64), 1 thread, 38 -> 9 ms
# causal; (32, 4, 128, 64) 102 -> 32 ms; (8, 4, 512, 64) 166 -> 91 ms; at 1,024 keys
# the fused kernel is as fast and does not hold the (B, heads, T, S) weights for the
# backward. The peers' small Transformer's bf16 training step: 2.25 -> 1.74 s (1 thread).
# In fp32 the two paths train at the same speed, so fp32 keeps the fused kernel.
TRAIN_PRODUCTS_MAX_KEYS = 512


# The last key mask additive_key_mask turned into a float mask: (weak reference to the
# bool mask, its version or None, dtype, the float mask or None). One entry, replaced
# whole (a thread pool sharing it at worst rebuilds the mask).
_LAST_KEY_MASK: tuple | None = None


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A bool mask (True = may attend) as an additive float mask: 0 where allowed, the
    dtype's lowest value elsewhere (finite, so fully masked rows stay finite)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
        ~mask, torch.finfo(dtype).min
    )


def additive_key_mask(key_mask: Tensor, dtype: torch.dtype) -> Tensor | None:
    """``key_mask`` ``(B, S)`` bool as SDPA's additive mask ``(B, 1, 1, S)``: 0 on real
    keys, the dtype's lowest value on padding; on the CPU, None when nothing is padded
    (then SDPA needs no mask: adding zeros changes no score).

    Cross-attention asks this for the same mask in every layer at every decoding step,
    so the last answer is kept until that mask tensor is gone or written to: building
    it took four operators a call, about 25 us per layer-step at batch 1.
    """
    global _LAST_KEY_MASK
    # an inference tensor has no version counter (and is never written to here)
    version = None if key_mask.is_inference() else key_mask._version
    last = _LAST_KEY_MASK
    if last is not None and last[0]() is key_mask and last[1] == version and last[2] == dtype:
        return last[3]
    additive = None
    # (on the CPU only: asking a GPU whether anything is padded would wait for it)
    if key_mask.device.type != "cpu" or not bool(key_mask.all()):
        additive = _additive(key_mask, dtype)[:, None, None, :]
    _LAST_KEY_MASK = (weakref.ref(key_mask), version, dtype, additive)
    return additive


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017).

    d_model: width of queries and of the output.
    heads: number of heads; ``d_model`` must divide by it.
    dropout: dropout on the attention weights (training only).
    kv_dim: width of keys/values before projection (cross-attention over a memory
        of another width); defaults to ``d_model``.

    Keys and values are kept per head as ``(B, heads, S, d_head)``.
    """

    def __init__(
        self, d_model: int, heads: int, dropout: float = 0.0, kv_dim: int | None = None
    ) -> None:
        super().__init__()
        if d_model % heads != 0:
            raise ConfigError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        kv_dim = kv_dim or d_model
        self.heads = heads
        self.d_head = d_model // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(kv_dim, d_model)
        self.v_proj = nn.Linear(kv_dim, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        """``(B, T, D)`` -> ``(B, heads, T, d_head)``."""
        B, T, _ = x.shape
        return x.view(B, T, self.heads, self.d_head).transpose(1, 2)

    def project_kv(self, keys: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """keys/values ``(B, S, kv_dim)`` -> k, v ``(B, heads, S, d_head)``."""
        values = keys if values is None else values
        return self._split(self.k_proj(keys)), self._split(self.v_proj(values))

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention: queries, keys and values of ``x`` ``(B, T, D)``, each
        ``(B, heads, T, d_head)``, from one product against the three weights side by
        side (:func:`~transduce.models.fast_linear.linear_concat`; the parameters stay
        ``q_proj``, ``k_proj``, ``v_proj``). After
        :func:`~transduce.models.quantize.quantize_int8`, the int8 copy of the three
        weights side by side that it made; layers of any other kind take one product
        each."""
        layers = (self.q_proj, self.k_proj, self.v_proj)
        int8 = self.__dict__.get(QKV_INT8)
        if int8 is not None and not torch.is_grad_enabled():
            y = int8(x)
        elif (
            all(type(m) in _PLAIN_LINEAR for m in layers) and x.size(-1) == self.k_proj.in_features
        ):
            y = fast_linear.linear_concat(
                self,
                x,
                [m.weight for m in layers],
                [m.bias for m in layers],
                packed=all(type(m) is fast_linear.PackedLinear for m in layers),
            )
        else:
            return self._split(self.q_proj(x)), *self.project_kv(x)
        B, T, _ = x.shape
        q, k, v = y.view(B, T, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def append_kv(
        self,
        x: Tensor,
        cache: tuple[Tensor, Tensor] | None = None,
        order: Tensor | None = None,
        k: Tensor | None = None,
        v: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Project new tokens ``x`` ``(B, T_new, D)`` and append them to ``cache``.

        order: ``(B,)``: row ``i`` continues the cache's row ``order[i]`` (a reorder
            not yet applied, :class:`~transduce.models.base.DecoderState` ``lazy``);
            the rows are picked in the same copy that grows the cache.
        k, v: the new tokens' keys and values when already projected
            (:meth:`project_qkv`).
        Returns new tensors ``(B, heads, T_past + T_new, d_head)``; the cache
        passed in is left untouched (beam search may still hold it).
        """
        if k is None or v is None:
            k, v = self.project_kv(x)
        if cache is not None:
            k = _grow(cache[0], k, order)
            v = _grow(cache[1], v, order)
        return k, v

    def attend(
        self,
        query: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        q: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from query ``(B, T, D)`` over projected ``k``, ``v`` ``(B, heads, S, d_head)``.

        key_mask: ``(B, S)`` bool, True for real keys.
        causal: query ``i`` sees keys ``0 .. i + (S - T)``: the last ``T`` keys are
            the queries' own positions and the first ``S - T`` come from a cache.
        q: the query already projected, ``(B, heads, T, d_head)`` (:meth:`project_qkv`).
        Returns out ``(B, T, D)`` and, if ``need_weights``, weights ``(B, T, S)``
        averaged over heads (else None).
        """
        B, T, _ = query.shape
        S = k.size(2)
        if q is None:
            q = self._split(self.q_proj(query))  # (B, h, T, dh)
        p = self.dropout if self.training else 0.0
        # Two batched products (the path that also gives the weights) for a few queries
        # at inference, beam search's hypotheses of a sentence folded onto its
        # cross-attention keys: 4x faster there than the CPU's fused kernel, which
        # blocks over queries (626 -> 155 us at q (32, 8, 4, 64) over 25 keys). One
        # query per row stays fused (as fast).
        products = (
            need_weights
            or (1 < T <= 8 and not torch.is_grad_enabled() and q.is_cpu)
            or (
                q.requires_grad
                and q.is_cpu
                and q.dtype in (torch.bfloat16, torch.float16)
                and S <= TRAIN_PRODUCTS_MAX_KEYS
            )
        )
        if causal and key_mask is None and not products and (T == 1 or T == S):
            # The common cases need no mask tensor at all: one new token sees every
            # cached key; a whole sequence from scratch is SDPA's own causal case.
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=T > 1)
            out = out.transpose(1, 2).reshape(B, T, self.heads * self.d_head)
            return self.out_proj(out), None
        mask = None  # bool, True = may attend, broadcast to (B, h, T, S)
        if key_mask is not None:
            mask = key_mask[:, None, None, :]
        if causal:
            rows = torch.arange(T, device=q.device).unsqueeze(1) + (S - T)
            allowed = torch.arange(S, device=q.device).unsqueeze(0) <= rows  # (T, S)
            mask = allowed if mask is None else mask & allowed
        if products:
            scores = q @ k.transpose(-2, -1) * self.d_head**-0.5  # (B, h, T, S)
            weights = masked_softmax(scores, mask)
            out = F.dropout(weights, p) @ v if p > 0 else weights @ v
            avg = weights.mean(dim=1) if need_weights else None
        else:
            # Fast path. An additive float mask matches masked_softmax exactly on real
            # keys and keeps fully masked rows finite, as the manual path does.
            attn_mask = None
            if key_mask is not None and not causal:
                attn_mask = additive_key_mask(key_mask, q.dtype)
            elif mask is not None:
                attn_mask = _additive(mask, q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
            avg = None
        out = out.transpose(1, 2).reshape(B, T, self.heads * self.d_head)
        return self.out_proj(out), avg

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Uncached attention: project ``keys``/``values`` ``(B, S, kv_dim)`` and attend.
        Self-attention (``keys is query``, no ``values``) projects all three at once."""
        if keys is query and values is None:
            q, k, v = self.project_qkv(query)
            return self.attend(query, k, v, key_mask, causal, need_weights, q=q)
        k, v = self.project_kv(keys, values)
        return self.attend(query, k, v, key_mask, causal, need_weights)


__all__ = [
    "AdditiveAttention",
    "MultiHeadAttention",
    "MultiplicativeAttention",
    "build_rnn_attention",
    "masked_softmax",
]
