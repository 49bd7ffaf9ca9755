"""Reduced-precision inference: dynamic int8 quantization of a trained model.

``quantize_int8(model)`` swaps every ``nn.Linear`` (attention projections,
feed-forward, the output projection to the vocabulary, RNN attention layers)
and every ``nn.LSTM`` / ``nn.GRU`` for PyTorch's dynamically quantized
counterparts (``torch.ao.quantization.quantize_dynamic``): weights are stored
as int8 with one scale per tensor, activations are quantized on the fly per
call, and the matrix products run on int8 kernels (fbgemm / oneDNN, which use
VNNI where the CPU has it). Embeddings, LayerNorms, convolutions and plain
``nn.RNN`` layers stay float32. A tied output projection gets its own int8
copy of the shared weight; the embedding keeps the float one.

Measured on this project's CPU (1 thread, machine shared with other jobs), one
``(32, 512) x (512, 32000)`` output projection: 10 ms int8 against 74 ms float32
(the float one reads 64 MB of weights per step). CPU only: PyTorch has no dynamic int8
kernels for CUDA.

``fp32`` inference packs every ``nn.Linear``'s weight for oneDNN once
(:mod:`transduce.models.fast_linear`): the same results, decoding about 1.3-2x faster
on the CPU than MKL's per-call packing.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from transduce.config import ConfigError
from transduce.models.fast_linear import concat_bias, pack_linears, unpack_linears

PRECISIONS = ("fp32", "int8")


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamically quantize ``model``'s Linear/LSTM/GRU layers to int8, in place; returns it.

    The model must be on the CPU; call it after loading the weights and ``eval()``.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ConfigError(f"int8 inference runs on the CPU only, the model is on {device}")
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the API works as documented.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        unpack_linears(model)  # quantize_dynamic swaps plain nn.Linear layers only
        _fuse_self_attention_int8(model, quantize_dynamic)
        return quantize_dynamic(
            model, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8, inplace=True
        )


def _fuse_self_attention_int8(model: nn.Module, quantize_dynamic) -> None:
    """Give every multi-head attention an int8 copy of its q/k/v weights side by side,
    so self-attention quantizes its input once and makes one int8 product instead of
    three (:meth:`~transduce.models.attention.MultiHeadAttention.project_qkv`). One
    scale per output row (per-channel), as the three weights' ranges may differ. The copy
    is a plain attribute, not a submodule: it is never saved; the float ``q_proj``,
    ``k_proj``, ``v_proj`` are quantized as before for cross-attention."""
    from transduce.models.attention import QKV_INT8, MultiHeadAttention

    for name, m in model.named_modules():
        if not isinstance(m, MultiHeadAttention) or name.endswith("cross_attn"):
            continue  # cross-attention projects queries and memory apart
        layers = (m.q_proj, m.k_proj, m.v_proj)
        if not all(type(lin) is nn.Linear for lin in layers):
            continue
        if len({lin.in_features for lin in layers}) != 1:
            continue
        fused = nn.Linear(layers[0].in_features, sum(lin.out_features for lin in layers))
        with torch.no_grad():
            fused.weight.copy_(torch.cat([lin.weight for lin in layers]))
            bias = concat_bias([lin.weight for lin in layers], [lin.bias for lin in layers])
            if bias is None:  # no layer has a bias: the fused one adds nothing either
                fused.bias.zero_()
            else:
                fused.bias.copy_(bias)
        holder = quantize_dynamic(
            nn.Sequential(fused),
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
        m.__dict__[QKV_INT8] = holder[0]


def apply_precision(model: nn.Module, precision: str) -> nn.Module:
    """``fp32``: the same model, its linear layers packed for oneDNN
    (:func:`~transduce.models.fast_linear.pack_linears`); ``int8``: :func:`quantize_int8`.
    In place; returns ``model``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return quantize_int8(model) if precision == "int8" else pack_linears(model)


__all__ = ["PRECISIONS", "apply_precision", "quantize_int8"]
