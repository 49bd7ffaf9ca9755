"""Transformer encoder and decoder (Vaswani et al. 2017), pre- or post-norm.

The decoder decodes incrementally with a key/value cache kept in the
:class:`DecoderState` (never on the module), all batch first:

* ``self_k``, ``self_v``: per layer ``(B, heads, T_so_far, d_head)``: the
  self-attention keys/values of every target position read so far. Its length
  ``T_so_far`` is the positional offset of the next token. They are ``lazy``
  entries: a search's reorder only records the row order, and the next step picks
  the rows in the copy that grows the cache by the new token (one copy, not two).
* ``cross_k``, ``cross_v``: per layer ``(A, heads, S, d_head)``: the
  memory projected once per *sentence*, at the first call, and carried along
  (per-sentence state: with ``G`` hypotheses per sentence, ``B = G * A``, the
  ``G`` queries of a sentence attend over one copy, never ``G`` copies).

The cross-attention projects the memory from ``ctx.memory_dim`` to ``d_model``
itself, so the decoder pairs with encoders of any width (an RNN, CNN or
audio encoder).

``copy: true`` on the decoder adds a copy distribution over source tokens
(:mod:`transduce.models.copy`): the last layer's cross-attention averaged over
heads, scattered onto the source ids and mixed with the vocabulary distribution
by a learned gate ``p_gen = sigmoid(w [h_t; x_t])`` from the final hidden state
and the input embedding. The decoder then returns log-probabilities
``(B, T, V + n_ext)`` in place of logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from transduce.config import ConfigError
from transduce.models import fast_linear
from transduce.models.attention import MultiHeadAttention
from transduce.models.base import (
    Decoder,
    DecoderState,
    Encoder,
    EncoderOutput,
    fold_rows,
    hypotheses_per_sentence,
    unfold_rows,
)
from transduce.models.copy import check_copy_vocab, copy_log_probs, in_vocab, source_ids_of
from transduce.models.dropout import Dropout
from transduce.models.embeddings import (
    build_positions,
    build_token_embedding,
    embed_tokens,
    embedding_scale,
)
from transduce.models.fast_linear import PackedLinear
from transduce.registry import BuildContext, register_decoder, register_encoder

KV = tuple[Tensor, Tensor]


@dataclass
class TransformerEncoderConfig:
    d_model: int = 512
    heads: int = 8
    ff_dim: int = 2048
    layers: int = 6
    dropout: float = 0.1  # on embeddings, sublayer outputs and inside the feed-forward
    attention_dropout: float = 0.0  # on attention weights
    activation_dropout: float | None = None  # inside the feed-forward; None = dropout
    activation: str = "relu"  # relu | gelu
    norm_first: bool = True  # pre-norm (with a final LayerNorm); false = post-norm
    positions: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 1024  # learned positions stop here; sinusoidal ones extend
    embed_scale: bool = True  # multiply token embeddings by sqrt(d_model)


@dataclass
class TransformerDecoderConfig(TransformerEncoderConfig):
    copy: bool = False  # copy source tokens (pointer-generator style; needs a shared vocab)
    output_bias: bool = True  # a bias on the output projection (Whisper has none)


def _validate(cfg: TransformerEncoderConfig, where: str) -> None:
    for name in ("d_model", "heads", "ff_dim", "layers", "max_positions"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{where}.{name} must be positive, got {getattr(cfg, name)}")
    if cfg.d_model % cfg.heads != 0:
        raise ConfigError(
            f"{where}.d_model ({cfg.d_model}) must be divisible by {where}.heads ({cfg.heads})"
        )
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        if getattr(cfg, name) is not None and not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"{where}.{name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.activation not in ("relu", "gelu"):
        raise ConfigError(f"{where}.activation must be relu or gelu, got {cfg.activation!r}")
    if cfg.positions not in ("sinusoidal", "learned"):
        raise ConfigError(f"{where}.positions must be sinusoidal or learned, got {cfg.positions!r}")


def activation_dropout(cfg: TransformerEncoderConfig) -> float:
    """The feed-forward's inner dropout: ``activation_dropout``, or ``dropout`` when unset."""
    return cfg.dropout if cfg.activation_dropout is None else cfg.activation_dropout


class FeedForward(nn.Module):
    """Position-wise ``Linear(d, ff) -> act -> dropout -> Linear(ff, d)``."""

    def __init__(self, d_model: int, ff_dim: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, ff_dim)
        self.fc2 = nn.Linear(ff_dim, d_model)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if type(self.fc1) is PackedLinear and isinstance(self.act, nn.ReLU) and not self.training:
            # float32 decoding: ReLU inside the packed product (dropout is off in eval)
            return self.fc2(fast_linear.linear(self.fc1, x, self.fc1.weight, self.fc1.bias, "relu"))
        h = self.act(self.fc1(x))
        return self.fc2(self.dropout(h) if self.dropout.active else h)


def _identity(x: Tensor) -> Tensor:
    return x


class _Residual(nn.Module):
    """A sublayer's residual connection with its LayerNorm before (pre) or after (post)."""

    def __init__(self, d_model: int, norm_first: bool, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.norm_first = norm_first
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        # (dropout is skipped, not called, when it is off: decoding calls this 18 times a
        # step in a 6-layer decoder, and each module call costs about a microsecond)
        drop = self.dropout if self.dropout.active else _identity
        if self.norm_first:
            return x + drop(fn(self.norm(x)))
        return self.norm(x + drop(fn(x)))


class TransformerEncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerEncoderConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.heads, cfg.attention_dropout)
        self.ff = FeedForward(d, cfg.ff_dim, cfg.activation, activation_dropout(cfg))
        self.res_attn = _Residual(d, cfg.norm_first, cfg.dropout)
        self.res_ff = _Residual(d, cfg.norm_first, cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x ``(B, S, D)``, mask ``(B, S)`` -> ``(B, S, D)``."""
        x = self.res_attn(x, lambda h: self.self_attn(h, h, key_mask=mask)[0])
        return self.res_ff(x, self.ff)


class TransformerDecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerEncoderConfig, memory_dim: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = MultiHeadAttention(d, cfg.heads, cfg.attention_dropout)
        self.cross_attn = MultiHeadAttention(d, cfg.heads, cfg.attention_dropout, memory_dim)
        self.ff = FeedForward(d, cfg.ff_dim, cfg.activation, activation_dropout(cfg))
        self.res_self = _Residual(d, cfg.norm_first, cfg.dropout)
        self.res_cross = _Residual(d, cfg.norm_first, cfg.dropout)
        self.res_ff = _Residual(d, cfg.norm_first, cfg.dropout)

    def forward(
        self,
        x: Tensor,
        self_cache: KV | None,
        cross_kv: KV,
        memory_mask: Tensor,
        need_weights: bool,
        groups: int = 1,
        order: Tensor | None = None,
    ) -> tuple[Tensor, KV, Tensor | None]:
        """x ``(B, T_new, D)`` -> x, the grown self-attention cache, cross weights ``(B, T, S)``.

        cross_kv ``(A, heads, S, d_head)`` and memory_mask ``(A, S)`` are per sentence,
        ``B = groups * A``. order: the cache's pending row order (``DecoderState.order``).
        """
        grown: list[KV] = []
        weights: list[Tensor | None] = [None]

        def self_block(h: Tensor) -> Tensor:
            # The new tokens' keys/values join the cache before attending, so each
            # token also sees itself; the causal mask hides later tokens.
            q, k, v = self.self_attn.project_qkv(h)
            k, v = self.self_attn.append_kv(h, self_cache, order, k, v)
            grown.append((k, v))
            return self.self_attn.attend(h, k, v, causal=True, q=q)[0]

        def cross_block(h: Tensor) -> Tensor:
            out, w = self.cross_attn.attend(
                fold_rows(h, groups), *cross_kv, key_mask=memory_mask, need_weights=need_weights
            )
            weights[0] = unfold_rows(w, groups) if w is not None else None
            return unfold_rows(out, groups)

        x = self.res_self(x, self_block)
        x = self.res_cross(x, cross_block)
        x = self.res_ff(x, self.ff)
        return x, grown[0], weights[0]


@register_encoder("transformer", TransformerEncoderConfig)
class TransformerEncoder(Encoder):
    """Token embedding + positions + a stack of self-attention layers.

    memory: ``(B, S, d_model)``, zero at padding; final_state: None.
    """

    def __init__(self, cfg: TransformerEncoderConfig, ctx: BuildContext) -> None:
        super().__init__()
        _validate(cfg, "model.encoder")
        d = cfg.d_model
        self.output_dim = d
        self.scale = embedding_scale(d, cfg.embed_scale)
        self.embedding = build_token_embedding(ctx.src_vocab_size, d, ctx.pad_id, std=d**-0.5)
        self.positions = build_positions(cfg.positions, d, cfg.max_positions)
        self.dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(TransformerEncoderLayer(cfg) for _ in range(cfg.layers))
        # Pre-norm leaves the residual stream un-normalised; normalise it once at the end.
        self.final_norm = nn.LayerNorm(d) if cfg.norm_first else nn.Identity()

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        """src ``(B, S)`` ids, src_mask ``(B, S)`` -> memory ``(B, S, d_model)``."""
        ids = in_vocab(src, self.embedding.num_embeddings)  # extended ids read as <unk>
        x = self.dropout(self.positions(embed_tokens(self.embedding, ids, self.scale)))
        for layer in self.layers:
            x = layer(x, src_mask)
        memory = self.final_norm(x).masked_fill(~src_mask.unsqueeze(-1), 0.0)
        return EncoderOutput(memory=memory, mask=src_mask, final_state=None, source_ids=src)


@register_decoder("transformer", TransformerDecoderConfig)
class TransformerDecoder(Decoder):
    """Causal self-attention + cross-attention over any memory; cached incremental decoding.

    Returns cross-attention weights of the last layer averaged over heads.
    """

    def __init__(self, cfg: TransformerDecoderConfig, ctx: BuildContext) -> None:
        super().__init__()
        _validate(cfg, "model.decoder")
        if ctx.memory_dim <= 0:
            raise ConfigError("a Transformer decoder needs the encoder's output width (memory_dim)")
        d = cfg.d_model
        self.vocab_size = ctx.tgt_vocab_size
        self.scale = embedding_scale(d, cfg.embed_scale)
        self.embedding = build_token_embedding(ctx.tgt_vocab_size, d, ctx.pad_id, std=d**-0.5)
        self.positions = build_positions(cfg.positions, d, cfg.max_positions)
        self.dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(cfg, ctx.memory_dim) for _ in range(cfg.layers)
        )
        self.final_norm = nn.LayerNorm(d) if cfg.norm_first else nn.Identity()
        self.output_projection = nn.Linear(d, ctx.tgt_vocab_size, bias=cfg.output_bias)
        self.copy_gate = None
        if cfg.copy:
            check_copy_vocab(ctx)
            self.copy_gate = nn.Linear(2 * d, 1)  # p_gen from [final hidden; input embedding]

    def init_state(self, enc_out: EncoderOutput, groups: int = 1) -> DecoderState:
        """Project the memory once per sentence for every layer's cross-attention;
        empty self-attention caches for ``groups`` hypotheses per sentence."""
        # Made contiguous once here: the projection's (B, heads, S, d_head) is a transposed
        # view, and beam search's few-query products over it (k transposed, then v) had
        # to copy both for every layer at every step (base, beam 4, 32 sentences: 0.36 +
        # 0.15 ms a layer-step).
        cross = [
            tuple(t.contiguous() for t in layer.cross_attn.project_kv(enc_out.memory))
            for layer in self.layers
        ]
        B = enc_out.memory.size(0) * groups
        empty = [
            enc_out.memory.new_zeros(B, layer.self_attn.heads, 0, layer.self_attn.d_head)
            for layer in self.layers
        ]
        return DecoderState(
            per_sentence=("cross_k", "cross_v"),
            lazy=("self_k", "self_v"),
            groups=groups,
            self_k=list(empty),
            self_v=list(empty),
            cross_k=[k for k, _ in cross],
            cross_v=[v for _, v in cross],
        )

    def forward(
        self,
        tgt_in: Tensor,
        enc_out: EncoderOutput,
        state: DecoderState | None = None,
        need_attention: bool = True,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tgt_in ``(B, T)`` -> logits ``(B, T, V)``, new state, attention ``(B, T, S)``.

        ``B`` may be ``G`` hypotheses per sentence of ``enc_out``; the attention
        (last layer, averaged over heads) is None unless ``need_attention``.
        """
        groups = hypotheses_per_sentence(tgt_in.size(0), enc_out.memory.size(0))
        if state is None:
            state = self.init_state(enc_out, groups)
        offset = state.self_k[0].size(2)  # target positions already read
        if self.copy_gate is not None:
            tgt_in = in_vocab(tgt_in, self.vocab_size)
        emb = embed_tokens(self.embedding, tgt_in, self.scale)
        x = self.dropout(self.positions(emb, offset))  # (B, T, D)
        self_k, self_v, attn = [], [], None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            # An empty cache is passed as None so the first keys keep the autocast dtype.
            cache = (state.self_k[i], state.self_v[i]) if offset > 0 else None
            x, (k, v), w = layer(
                x,
                cache,
                (state.cross_k[i], state.cross_v[i]),
                enc_out.mask,
                need_weights=i == last and (need_attention or self.copy_gate is not None),
                groups=groups,
                order=state.order,
            )
            self_k.append(k)
            self_v.append(v)
            attn = w if w is not None else attn
        x = self.final_norm(x)
        logits = self.project_to_vocab(x)
        if self.copy_gate is not None:
            p_gen = torch.sigmoid(self.copy_gate(torch.cat([x, emb], -1)))  # (B, T, 1)
            source_ids = source_ids_of(enc_out).repeat_interleave(groups, dim=0)
            logits = copy_log_probs(logits, attn, p_gen, source_ids, self.vocab_size)
        new_state = DecoderState(
            per_sentence=("cross_k", "cross_v"),
            lazy=("self_k", "self_v"),
            groups=groups,
            self_k=self_k,
            self_v=self_v,
            cross_k=state.cross_k,
            cross_v=state.cross_v,
        )
        return logits, new_state, attn


__all__ = [
    "TransformerDecoder",
    "TransformerDecoderConfig",
    "TransformerEncoder",
    "TransformerEncoderConfig",
]
