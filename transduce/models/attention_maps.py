"""What a decoder looked at, for plots and the demo page: every layer's and head's
cross-attention and the copy gate ``p_gen``, from one teacher-forced pass.

The searches return one attention matrix per hypothesis (for the Transformer, the last
layer's cross-attention averaged over heads). Plots may ask for another layer or one
head, and copy models have a gate worth showing; neither is part of the Decoder
contract, so instead of widening it this module re-reads a finished hypothesis with
forward hooks, which are removed before it returns:

* Transformer decoders: a pre-hook on each layer's ``res_cross`` residual wraps the
  cross-attention block to catch its query; the per-head weights are then
  ``softmax(q k^T / sqrt(d_head))`` over the layer's own projected memory keys.
  :func:`decoder_maps` checks that their head average on the last layer equals the
  attention the decoder itself returns (when it returns one), so a change of the
  layer's internals fails loudly instead of drawing wrong pictures.
* Copy decoders: a hook on ``copy_gate`` (the linear layer before the sigmoid).

Teacher forcing reproduces the search's attention exactly (cached decoding equals
uncached decoding, a tested invariant).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from transduce.data.tokenizers import BOS_ID
from transduce.models.attention import masked_softmax
from transduce.models.base import EncoderOutput


@dataclass
class DecoderMaps:
    """One hypothesis re-read with teacher forcing (``T`` = its tokens, eos excluded).

    attention: ``(T, S)`` what the decoder returns (Transformer: last layer, head mean).
    heads: ``(L, H, T, S)`` every layer's and head's cross-attention (Transformer only).
    p_gen: ``(T,)`` probability of generating rather than copying (copy decoders only).
    """

    attention: Tensor | None
    heads: Tensor | None
    p_gen: Tensor | None


def _cross_layers(decoder) -> list:
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not all(
        hasattr(layer, "res_cross") and hasattr(layer, "cross_attn") for layer in layers
    ):
        return []
    return list(layers)


def has_heads(decoder) -> tuple[int, int] | None:
    """``(layers, heads)`` of a decoder with multi-head cross-attention, else None."""
    layers = _cross_layers(decoder)
    if not layers:
        return None
    return len(layers), int(layers[0].cross_attn.heads)


def decoder_maps(model, enc_out: EncoderOutput, tokens: list[int]) -> DecoderMaps:
    """Teacher-force ``tokens`` (one hypothesis, no bos/eos) over ``enc_out`` (batch of 1).

    Returns the maps of the real source positions only (``S`` = unpadded length).
    """
    decoder = model.decoder
    layers = _cross_layers(decoder)
    queries: list[Tensor | None] = [None] * len(layers)
    gates: list[Tensor] = []
    handles = []

    # Hooks live on the shared modules while this runs; a server decodes other requests
    # with the same model in other threads, whose calls must pass untouched.
    owner = threading.get_ident()

    def catch_query(i: int):
        def pre_hook(module, args):
            if threading.get_ident() != owner:
                return None
            x, block = args

            def wrapped(h: Tensor) -> Tensor:
                queries[i] = h
                return block(h)

            return (x, wrapped)

        return pre_hook

    for i, layer in enumerate(layers):
        handles.append(layer.res_cross.register_forward_pre_hook(catch_query(i)))
    gate = getattr(decoder, "copy_gate", None)
    if gate is not None:
        handles.append(
            gate.register_forward_hook(
                lambda m, a, out: gates.append(out) if threading.get_ident() == owner else None
            )
        )
    device = enc_out.memory.device
    tgt_in = torch.tensor([[BOS_ID, *tokens]], dtype=torch.long, device=device)
    try:
        with torch.inference_mode():
            _, _, attn = model.decode(tgt_in, enc_out)
            heads = None
            if layers:
                heads = torch.stack(
                    [
                        _head_weights(layer.cross_attn, q, enc_out)
                        for layer, q in zip(layers, queries, strict=True)
                    ]
                )  # (L, H, T+1, S)
    finally:
        for handle in handles:
            handle.remove()
    T = len(tokens)
    real = enc_out.mask[0]
    attention = attn[0, :T][:, real].float().cpu() if attn is not None else None
    if heads is not None:
        heads = heads[:, :, :T][..., real].float().cpu()
        if attention is not None and not torch.allclose(heads[-1].mean(0), attention, atol=1e-4):
            raise RuntimeError(
                "attention_maps: the per-head weights do not average to the decoder's own "
                "attention; TransformerDecoderLayer changed, update decoder_maps"
            )
        if attention is None:
            attention = heads[-1].mean(0)
    p_gen = torch.sigmoid(gates[0][0, :T, 0].float()).cpu() if gates else None
    return DecoderMaps(attention=attention, heads=heads, p_gen=p_gen)


def _head_weights(mha, query: Tensor | None, enc_out: EncoderOutput) -> Tensor:
    """Per-head weights ``(H, T, S)`` of multi-head attention ``mha`` for ``query``
    ``(1, T, D)`` over ``enc_out.memory``, as in ``MultiHeadAttention.attend``."""
    if query is None:
        raise RuntimeError("attention_maps: a decoder layer did not run its cross-attention")
    k, _ = mha.project_kv(enc_out.memory)  # (1, H, S, dh)
    q = mha._split(mha.q_proj(query))  # (1, H, T, dh)
    scores = q @ k.transpose(-2, -1) * mha.d_head**-0.5  # (1, H, T, S)
    return masked_softmax(scores.float(), enc_out.mask[:, None, None, :])[0]


def select(maps: DecoderMaps, layer: int | None = None, head: int | None = None) -> Tensor | None:
    """The ``(T, S)`` weights to draw: ``layer`` (negative counts from the end; default the
    last) and ``head`` (default: the mean over heads). Raises ValueError when out of range."""
    if layer is None and head is None:
        return maps.attention
    if maps.heads is None:
        raise ValueError(
            "--attention-layer/--attention-head need a Transformer decoder "
            "(this decoder has one attention)"
        )
    L, H = maps.heads.shape[:2]
    layer = L - 1 if layer is None else layer
    if not -L <= layer < L:
        raise ValueError(f"--attention-layer {layer}: the decoder has {L} layers (0..{L - 1})")
    if head is None:
        return maps.heads[layer].mean(0)
    if not -H <= head < H:
        raise ValueError(f"--attention-head {head}: the decoder has {H} heads (0..{H - 1})")
    return maps.heads[layer, head]


__all__ = ["DecoderMaps", "decoder_maps", "has_heads", "select"]
