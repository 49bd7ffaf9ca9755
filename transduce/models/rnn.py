"""RNN / LSTM / GRU encoder and decoder.

Encoders (``rnn`` with a ``cell`` field, ``lstm``, ``gru``) embed tokens and run a
(bi)directional RNN over packed sequences, so padding changes neither the
memory nor the final state.

Decoders (same three names) follow one of three classic designs, picked by
``attention``:

* ``none`` (Sutskever et al. 2014, with Cho et al.'s fixed context): the
  encoder summary initialises the decoder through a bridge and is fed, with the
  token embedding, at every step.
* ``bahdanau`` / ``additive`` (Bahdanau et al. 2015): the previous top hidden
  state attends over the memory; the context joins the input embedding.
* ``dot`` / ``general`` (Luong et al. 2015): attention after the RNN step from
  the top hidden state; ``h~ = tanh(W [c; h])``, fed into the next step when
  ``input_feed`` is true.

A pre-output layer maps to ``embed_dim`` so ``output_projection`` can be tied to
the embedding. Decoder state (all batch first): ``h`` ``(B, layers, H)``, ``c``
(LSTM) ``(B, layers, H)`` else None, ``feed`` ``(B, H)`` (Luong input feeding)
else None, ``keys_proj`` ``(B, S, A)`` (the attention's key projection) else None,
``context`` ``(B, D)`` (``none``: the fixed context) else None.

``copy: true`` (attention decoders only) makes it a pointer-generator (See et al.
2017, :mod:`transduce.models.copy`): ``p_gen = sigmoid(w [c_t; s_t; x_t])`` from the
attention context, the top RNN output and the input embedding mixes the vocabulary
distribution with the attention scattered onto the source ids, and the decoder
returns log-probabilities ``(B, T, V + n_ext)`` in place of logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from transduce.config import ConfigError
from transduce.models import fast_linear
from transduce.models.attention import build_rnn_attention
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
from transduce.models.dropout import Dropout, dropout
from transduce.models.embeddings import build_token_embedding
from transduce.registry import BuildContext, register_decoder, register_encoder

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
_ATTENTIONS = ("none", "bahdanau", "additive", "dot", "general")


def _cell_class(cell: str, where: str) -> type[nn.RNNBase]:
    if cell not in _CELLS:
        raise ConfigError(f"{where}.cell: unknown cell {cell!r} (one of: lstm, gru, rnn)")
    return _CELLS[cell]


def _layer_params(rnn: nn.RNNBase, layer: int) -> tuple:
    """``(w_ih, w_hh, b_ih, b_hh)`` of one layer; the biases are None when bias=False."""
    return (
        getattr(rnn, f"weight_ih_l{layer}"),
        getattr(rnn, f"weight_hh_l{layer}"),
        getattr(rnn, f"bias_ih_l{layer}", None),
        getattr(rnn, f"bias_hh_l{layer}", None),
    )


def _step_layers(rnn: nn.RNNBase, x: Tensor, hx: Any, cell: Any) -> tuple[Tensor, Any]:
    """One time step ``x`` ``(B, 1, I)`` through ``rnn``'s layers, each by
    ``cell(layer, input, h, c) -> (h, c)`` (``c`` None but for an LSTM); dropout between
    layers as the module applies it (training only). Returns ``(out (B, 1, H), hx)`` as
    the module."""
    lstm = isinstance(hx, tuple)
    h0, c0 = hx if lstm else (hx, None)
    inp = x.squeeze(1)
    hs, cs = [], []
    for layer in range(rnn.num_layers):
        h, c = cell(layer, inp, h0[layer], c0[layer] if lstm else None)
        hs.append(h)
        cs.append(c)
        last = layer == rnn.num_layers - 1
        inp = h if last or not rnn.training else dropout(h, rnn.dropout, True)
    h_n = torch.stack(hs)
    return hs[-1].unsqueeze(1), ((h_n, torch.stack(cs)) if lstm else h_n)


def _one_step(rnn: nn.RNNBase, x: Tensor, hx: Any) -> tuple[Tensor, Any]:
    """``rnn(x, hx)`` for one time step ``x`` ``(B, 1, I)``, layer by layer with
    ``torch.lstm_cell`` / ``gru_cell`` / ``rnn_*_cell`` on ``rnn``'s own weights.

    Decoders that attend or feed back between steps call their RNN once per target
    token. In CPU training, a sequence of one through ``nn.LSTM`` (oneDNN's RNN
    primitive) costs twice the cell functions forward and backward: 14 steps of an
    LSTM of 512 over 110 rows, forward and backward, 366 against 189 ms (2 threads).
    Same parameters, same results to float rounding; dropout between layers as the
    module applies it (training only). Returns ``(out (B, 1, H), hx)`` as the module.
    """

    def cell(layer: int, inp: Tensor, h: Tensor, c: Tensor | None) -> tuple:
        params = _layer_params(rnn, layer)
        if c is not None:
            return torch.lstm_cell(inp, (h, c), *params)
        if isinstance(rnn, nn.GRU):
            return torch.gru_cell(inp, h, *params), None
        if rnn.nonlinearity == "relu":
            return torch.rnn_relu_cell(inp, h, *params), None
        return torch.rnn_tanh_cell(inp, h, *params), None

    return _step_layers(rnn, x, hx, cell)


def _packed_step(rnn: nn.RNNBase, x: Tensor, hx: Any) -> tuple[Tensor, Any]:
    """``rnn(x, hx)`` for one time step ``x`` ``(B, 1, I)`` in decoding, each layer's
    gates one oneDNN product on packed weights (:func:`fast_linear.linear_joined`:
    ``[x; h]`` against ``[W_ih, W_hh]``, packed once; GRU: two, its new gate needs
    ``W_hh h`` alone).

    One step of ``nn.LSTM`` in decoding is oneDNN's RNN primitive set up for a sequence
    of one. Measured on this project's CPU (2 threads, input 768, hidden 512, one
    layer): 1.03 against 0.40 ms at 1 row, 1.06 against 0.41 at 5 rows (a beam), 4.3
    against 3.4 at 160 rows, 7.6-9.1 against 7.2-7.5 at 320. The same results to float
    rounding (about 1e-6). Returns ``(out (B, 1, H), hx)`` as the module.
    """
    H = rnn.hidden_size

    def cell(layer: int, inp: Tensor, h: Tensor, c: Tensor | None) -> tuple:
        w_ih, w_hh, b_ih, b_hh = _layer_params(rnn, layer)
        if isinstance(rnn, nn.GRU):  # reset, update, new; h' = n + z (h - n)
            gi = fast_linear.linear_joined(rnn, [inp], [w_ih], [b_ih], f"ih{layer}")
            gh = fast_linear.linear_joined(rnn, [h], [w_hh], [b_hh], f"hh{layer}")
            reset_update = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
            n = torch.tanh(gi[:, 2 * H :] + reset_update[:, :H] * gh[:, 2 * H :])
            return n + reset_update[:, H:] * (h - n), None
        g = fast_linear.linear_joined(rnn, [inp, h], [w_ih, w_hh], [b_ih, b_hh], str(layer))
        if c is None:  # a plain RNN
            return (torch.relu(g) if rnn.nonlinearity == "relu" else torch.tanh(g)), None
        # an LSTM; gates in torch's order: input, forget, cell, output
        in_forget = torch.sigmoid(g[:, : 2 * H])
        c = in_forget[:, H:] * c + in_forget[:, :H] * torch.tanh(g[:, 2 * H : 3 * H])
        return torch.sigmoid(g[:, 3 * H :]) * torch.tanh(c), c

    return _step_layers(rnn, x, hx, cell)


def _steps_by_layer(rnn: nn.Module) -> bool:
    """Whether a step can run layer by layer on ``rnn``'s own weights: a unidirectional,
    batch-first ``nn.LSTM``/``GRU``/``RNN`` without projection (not torch's quantized
    RNNs, which are no ``nn.RNNBase``)."""
    return (
        isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN))
        and not rnn.bidirectional
        and rnn.batch_first
        and getattr(rnn, "proj_size", 0) == 0
    )


def _cell_steps_pay(rnn: nn.Module, x: Tensor) -> bool:
    """Whether :func:`_one_step` runs a step: CPU training in float32 (other devices and
    autocast keep the module, which was not measured slower there)."""
    return (
        _steps_by_layer(rnn)
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def _packed_steps_pay(rnn: nn.Module, x: Tensor) -> bool:
    """Whether :func:`_packed_step` runs a step: float32 decoding
    (:func:`fast_linear.applies`) on an RNN :func:`fast_linear.pack_linears` marked."""
    return (
        isinstance(rnn, fast_linear.PACKED_RNNS)
        and _steps_by_layer(rnn)
        and fast_linear.applies(x, rnn.weight_ih_l0)
    )


def _check_positive(where: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if value <= 0:
            raise ConfigError(f"{where}.{name} must be positive, got {value}")


# ----------------------------------------------------------------------------- encoder


@dataclass
class LSTMEncoderConfig:
    embed_dim: int = 256
    hidden_size: int = 256  # per direction
    layers: int = 1
    bidirectional: bool = True  # output_dim = 2 * hidden_size
    dropout: float = 0.0  # on embeddings, between layers and on the outputs


@dataclass
class GRUEncoderConfig(LSTMEncoderConfig):
    pass


@dataclass
class RNNEncoderConfig(LSTMEncoderConfig):
    cell: str = "lstm"  # lstm | gru | rnn (Elman, tanh)


class RecurrentEncoder(Encoder):
    """Token embedding + (bi)RNN over packed sequences.

    memory: ``(B, S, output_dim)``, zero at padding. final_state: for LSTM a tuple
    ``(h, c)``, for GRU/RNN the tensor ``h``; each ``(B, layers, output_dim)`` with
    the forward and backward final states of a layer concatenated.
    """

    cell = "lstm"

    def __init__(self, cfg: LSTMEncoderConfig, ctx: BuildContext) -> None:
        super().__init__()
        cell = getattr(cfg, "cell", self.cell)
        rnn_cls = _cell_class(cell, "model.encoder")
        _check_positive("model.encoder", **_sizes(cfg))
        self.cell = cell
        self.embedding = build_token_embedding(ctx.src_vocab_size, cfg.embed_dim, ctx.pad_id)
        self.dropout = Dropout(cfg.dropout)
        self.rnn = rnn_cls(
            cfg.embed_dim,
            cfg.hidden_size,
            num_layers=cfg.layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.layers = cfg.layers
        self.directions = 2 if cfg.bidirectional else 1
        self.output_dim = cfg.hidden_size * self.directions

    def _batch_first(self, h: Tensor) -> Tensor:
        """``(layers * dirs, B, H)`` -> ``(B, layers, dirs * H)``: fwd and bwd side by side."""
        _, B, H = h.shape
        h = h.view(self.layers, self.directions, B, H).permute(2, 0, 1, 3)
        return h.reshape(B, self.layers, self.directions * H)

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        """src ``(B, S)`` ids, src_mask ``(B, S)`` -> memory ``(B, S, output_dim)``.

        Extended ids (``>= V``, out-of-vocabulary words numbered per example) are
        embedded as ``<unk>`` and passed on as ``source_ids`` for copy decoders.
        """
        S = src.size(1)
        x = self.dropout(self.embedding(in_vocab(src, self.embedding.num_embeddings)))
        # An empty source still gets one (padding) step rather than crashing packing.
        lengths = src_mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, hx = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=S)
        memory = self.dropout(memory)
        if isinstance(hx, tuple):
            final: Any = (self._batch_first(hx[0]), self._batch_first(hx[1]))
        else:
            final = self._batch_first(hx)
        return EncoderOutput(memory=memory, mask=src_mask, final_state=final, source_ids=src)


def _sizes(cfg: Any) -> dict[str, int]:
    return {k: getattr(cfg, k) for k in ("embed_dim", "hidden_size", "layers")}


@register_encoder("rnn", RNNEncoderConfig)
class RNNEncoder(RecurrentEncoder):
    """``type: rnn``: the cell is chosen by ``cell``."""


@register_encoder("lstm", LSTMEncoderConfig)
class LSTMEncoder(RecurrentEncoder):
    cell = "lstm"


@register_encoder("gru", GRUEncoderConfig)
class GRUEncoder(RecurrentEncoder):
    cell = "gru"


# ----------------------------------------------------------------------------- decoder


@dataclass
class LSTMDecoderConfig:
    embed_dim: int = 256
    hidden_size: int = 256
    layers: int = 1
    dropout: float = 0.0  # on embeddings, between layers and before the output layer
    attention: str = "bahdanau"  # none | bahdanau | additive | dot | general
    input_feed: bool = True  # dot/general: feed h~ into the next step (Luong)
    bridge: bool = True  # init from the encoder's final state when it has one, else zeros
    copy: bool = False  # pointer-generator: copy source tokens (needs attention, shared vocab)


@dataclass
class GRUDecoderConfig(LSTMDecoderConfig):
    pass


@dataclass
class RNNDecoderConfig(LSTMDecoderConfig):
    cell: str = "lstm"  # lstm | gru | rnn (Elman, tanh)


def _split_final(final_state: Any) -> tuple[Tensor | None, Tensor | None]:
    """An encoder's final_state -> ``(h, c)``; c is None unless it is an LSTM pair."""
    if final_state is None:
        return None, None
    if isinstance(final_state, Tensor):
        return final_state, None
    h = final_state[0]
    return h, (final_state[1] if len(final_state) > 1 else None)


class RecurrentDecoder(Decoder):
    """RNN decoder with no, additive or multiplicative attention; see the module doc."""

    cell = "lstm"

    def __init__(self, cfg: LSTMDecoderConfig, ctx: BuildContext) -> None:
        super().__init__()
        cell = getattr(cfg, "cell", self.cell)
        rnn_cls = _cell_class(cell, "model.decoder")
        _check_positive("model.decoder", **_sizes(cfg))
        if cfg.attention not in _ATTENTIONS:
            raise ConfigError(
                f"model.decoder.attention: unknown attention {cfg.attention!r} "
                f"(one of: {', '.join(_ATTENTIONS)})"
            )
        if ctx.memory_dim <= 0:
            raise ConfigError("an RNN decoder needs the encoder's output width (memory_dim)")
        E, H, D, L = cfg.embed_dim, cfg.hidden_size, ctx.memory_dim, cfg.layers
        self.cell, self.kind = cell, cfg.attention
        self.luong = cfg.attention in ("dot", "general")
        self.input_feed = self.luong and cfg.input_feed
        self.layers, self.hidden_size, self.memory_dim = L, H, D
        self.vocab_size = ctx.tgt_vocab_size
        self.embedding = build_token_embedding(ctx.tgt_vocab_size, E, ctx.pad_id)
        self.dropout = Dropout(cfg.dropout)
        self.attention = build_rnn_attention(cfg.attention, H, D)
        # What joins the embedding at every step: fixed context (none), attention
        # context (Bahdanau) or the previous attentional vector h~ (Luong input feeding).
        extra = {"none": D, "bahdanau": D, "additive": D}.get(cfg.attention, 0)
        extra = H if self.input_feed else extra
        self.rnn = rnn_cls(
            E + extra, H, num_layers=L, batch_first=True, dropout=cfg.dropout if L > 1 else 0.0
        )
        if self.luong:
            self.combine = nn.Linear(D + H, H)  # h~ = tanh(W [c; h])
            self.pre_output = nn.Linear(H, E)
        else:
            self.pre_output = nn.Linear(H + D, E)  # tanh(W [h; c]) with c attended or fixed
        self.bridge_h = nn.Linear(D, H) if cfg.bridge else None
        self.bridge_c = nn.Linear(D, H) if cfg.bridge and cell == "lstm" else None
        self.output_projection = nn.Linear(E, ctx.tgt_vocab_size)
        self.copy = cfg.copy
        self.copy_gate = None
        if cfg.copy:
            if cfg.attention == "none":
                raise ConfigError("model.decoder.copy: true needs attention (not 'none')")
            check_copy_vocab(ctx)
            self.copy_gate = nn.Linear(D + H + E, 1)  # p_gen from [context; state; input]

    # -- state -------------------------------------------------------------------------

    def _bridge(self, linear: nn.Linear | None, x: Tensor | None, B: int, like: Tensor) -> Tensor:
        """Encoder final ``(B, L_enc, D)`` -> ``tanh(W x)`` ``(B, layers, H)``, or zeros."""
        if linear is None or x is None:
            return like.new_zeros(B, self.layers, self.hidden_size)
        if x.size(-1) != self.memory_dim:
            raise ConfigError(
                f"the encoder's final state has width {x.size(-1)} but its output width is "
                f"{self.memory_dim}; set bridge: false in the decoder config"
            )
        if x.size(1) != self.layers:
            # Layer counts differ: every decoder layer starts from the top encoder layer.
            x = x[:, -1:].expand(-1, self.layers, -1)
        return torch.tanh(linear(x))

    def init_state(self, enc_out: EncoderOutput, groups: int = 1) -> DecoderState:
        """The state before the first target token, ``groups`` hypotheses per sentence.

        ``keys_proj`` and ``context`` depend only on the source: per sentence.
        """
        memory, mask = enc_out.memory, enc_out.mask
        B = memory.size(0)
        fh, fc = _split_final(enc_out.final_state)
        h = self._bridge(self.bridge_h, fh, B, memory).repeat_interleave(groups, dim=0)
        c = None
        if self.cell == "lstm":
            c = self._bridge(self.bridge_c, fc, B, memory).repeat_interleave(groups, dim=0)
        context = None
        if self.kind == "none":
            if fh is not None and fh.size(-1) == self.memory_dim:
                context = fh[:, -1]  # top layer's final state (B, D)
            else:  # e.g. Transformer or image encoders: the mean of the real memory
                m = mask.unsqueeze(-1).to(memory.dtype)
                context = (memory * m).sum(1) / m.sum(1).clamp(min=1.0)
        keys_proj = self.attention.project_keys(memory) if self.attention is not None else None
        feed = memory.new_zeros(B * groups, self.hidden_size) if self.input_feed else None
        return DecoderState(
            per_sentence=("keys_proj", "context"),
            groups=groups,
            h=h,
            c=c,
            feed=feed,
            keys_proj=keys_proj,
            context=context,
        )

    def _attend(
        self, query: Tensor, enc_out: EncoderOutput, keys_proj: Tensor | None, groups: int
    ) -> tuple[Tensor, Tensor]:
        """query ``(G * A, T, H)`` over the per-sentence memory -> context, weights."""
        memory, mask = enc_out.memory, enc_out.mask
        ctx, w = self.attention(fold_rows(query, groups), memory, memory, mask, keys_proj)
        return unfold_rows(ctx, groups), unfold_rows(w, groups)

    def _hx(self, state: DecoderState) -> Any:
        h = state.h.transpose(0, 1).contiguous()  # (L, B, H) for nn.RNN
        return (h, state.c.transpose(0, 1).contiguous()) if self.cell == "lstm" else h

    def _top(self, hx: Any) -> Tensor:
        """Top layer's hidden state ``(B, H)``."""
        return (hx[0] if isinstance(hx, tuple) else hx)[-1]

    def _rnn_step(self, x: Tensor, hx: Any) -> tuple[Tensor, Any]:
        """One time step of the decoder's RNN: ``x`` ``(B, 1, I)`` (see :func:`_one_step`)."""
        if _cell_steps_pay(self.rnn, x):
            return _one_step(self.rnn, x, hx)
        if _packed_steps_pay(self.rnn, x):
            return _packed_step(self.rnn, x, hx)
        return self.rnn(x, hx)

    # -- forward -----------------------------------------------------------------------

    def forward(
        self,
        tgt_in: Tensor,
        enc_out: EncoderOutput,
        state: DecoderState | None = None,
        need_attention: bool = True,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tgt_in ``(B, T)`` -> logits ``(B, T, V)``, new state, attention ``(B, T, S)``|None.

        ``B`` may be ``G`` hypotheses per sentence of ``enc_out``. The weights feed the
        context anyway, so they are returned whatever ``need_attention`` says.
        """
        groups = hypotheses_per_sentence(tgt_in.size(0), enc_out.memory.size(0))
        if state is None:
            state = self.init_state(enc_out, groups)
        if self.copy:
            tgt_in = in_vocab(tgt_in, self.vocab_size)
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        T = emb.size(1)
        hx = self._hx(state)
        feed, attn = state.feed, None
        out = ctx = None  # top RNN output (B, T, H) and attention context (B, T, D)
        if self.kind == "none":
            context = state.context.repeat_interleave(groups, dim=0)
            ctx = context.unsqueeze(1).expand(-1, T, -1)  # (B, T, D)
            out, hx = self.rnn(torch.cat([emb, ctx], -1), hx)  # (B, T, H)
            pre = torch.tanh(self.pre_output(torch.cat([out, ctx], -1)))
        elif not self.luong:
            # Bahdanau: the query at step t is the top hidden state *before* the step.
            outs, ctxs, attns = [], [], []
            for t in range(T):
                c_t, w_t = self._attend(
                    self._top(hx).unsqueeze(1), enc_out, state.keys_proj, groups
                )
                o_t, hx = self._rnn_step(torch.cat([emb[:, t : t + 1], c_t], -1), hx)
                outs.append(o_t)
                ctxs.append(c_t)
                attns.append(w_t)
            out, ctx, attn = torch.cat(outs, 1), torch.cat(ctxs, 1), torch.cat(attns, 1)
            pre = torch.tanh(self.pre_output(torch.cat([out, ctx], -1)))
        elif self.input_feed:
            # Luong with input feeding: h~_{t-1} joins the input, so steps run one by one.
            tildes, attns, outs, ctxs = [], [], [], []
            for t in range(T):
                x_t = torch.cat([emb[:, t : t + 1], feed.unsqueeze(1)], -1)
                o_t, hx = self._rnn_step(x_t, hx)
                c_t, w_t = self._attend(o_t, enc_out, state.keys_proj, groups)
                tilde = torch.tanh(self.combine(torch.cat([c_t, o_t], -1)))  # (B, 1, H)
                feed = tilde.squeeze(1)
                tildes.append(tilde)
                attns.append(w_t)
                outs.append(o_t)
                ctxs.append(c_t)
            pre = self.pre_output(torch.cat(tildes, 1))
            attn, out, ctx = torch.cat(attns, 1), torch.cat(outs, 1), torch.cat(ctxs, 1)
        else:
            # Luong without input feeding: all steps in one RNN call, then attention.
            out, hx = self.rnn(emb, hx)
            ctx, attn = self._attend(out, enc_out, state.keys_proj, groups)
            pre = self.pre_output(torch.tanh(self.combine(torch.cat([ctx, out], -1))))
        logits = self.project_to_vocab(self.dropout(pre))
        if self.copy_gate is not None:
            p_gen = torch.sigmoid(self.copy_gate(torch.cat([ctx, out, emb], -1)))  # (B, T, 1)
            source_ids = source_ids_of(enc_out).repeat_interleave(groups, dim=0)
            logits = copy_log_probs(logits, attn, p_gen, source_ids, self.vocab_size)
        if isinstance(hx, tuple):
            h, c = hx[0].transpose(0, 1), hx[1].transpose(0, 1)
        else:
            h, c = hx.transpose(0, 1), None
        new_state = DecoderState(
            per_sentence=("keys_proj", "context"),
            groups=groups,
            h=h,
            c=c,
            feed=feed,
            keys_proj=state.keys_proj,
            context=state.context,
        )
        return logits, new_state, attn


@register_decoder("rnn", RNNDecoderConfig)
class RNNDecoder(RecurrentDecoder):
    """``type: rnn``: the cell is chosen by ``cell``."""


@register_decoder("lstm", LSTMDecoderConfig)
class LSTMDecoder(RecurrentDecoder):
    cell = "lstm"


@register_decoder("gru", GRUDecoderConfig)
class GRUDecoder(RecurrentDecoder):
    cell = "gru"


__all__ = [
    "GRUDecoder",
    "GRUDecoderConfig",
    "GRUEncoder",
    "GRUEncoderConfig",
    "LSTMDecoder",
    "LSTMDecoderConfig",
    "LSTMEncoder",
    "LSTMEncoderConfig",
    "RNNDecoder",
    "RNNDecoderConfig",
    "RNNEncoder",
    "RNNEncoderConfig",
    "RecurrentDecoder",
    "RecurrentEncoder",
]
