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

Each int8 ``Linear``, ``LSTM`` and ``GRU`` holds its weight packed twice, for fbgemm
and for oneDNN (:class:`Int8Linear`, :class:`Int8LSTM`, :class:`Int8GRU`), and picks
per call: the two quantize the same way and give the same integers (outputs agree to
float rounding, about 1e-7), but oneDNN is up to 3x faster on calls with many outputs
(a beam-4 batch of 32 is 128 rows: the output projection to 32,000 words 10 -> 3.6 ms
on 2 threads) while fbgemm is faster on a few rows (batch 1) and narrow layers.

``fp32`` inference packs every ``nn.Linear``'s weight for oneDNN once
(:mod:`transduce.models.fast_linear`): the same results, decoding about 1.3-2x faster
on the CPU than MKL's per-call packing.
"""

from __future__ import annotations

import threading
import warnings

import torch
from torch import nn

from transduce.config import ConfigError
from transduce.models.fast_linear import concat_bias, pack_linears, unpack_linears

PRECISIONS = ("fp32", "int8")

_ONEDNN = "_onednn_packed"
# torch 2.13's oneDNN dynamic int8 kernels are not safe to run on one packed weight from
# several threads at once (`serve` decodes in a thread pool): measured, 4 threads x 200
# calls of the same layers gave 2-21 results that differed from the same call alone by
# up to 1.3, where fbgemm gave none. One lock around every oneDNN int8 call; the calls
# use all the CPU's threads anyway, and fbgemm's calls still run side by side.
_ONEDNN_LOCK = threading.Lock()
_LINEAR_DYNAMIC = torch.ops.quantized.linear_dynamic.default  # (x, packed, reduce_range)


def _onednn_available() -> bool:
    return "onednn" in torch.backends.quantized.supported_engines


def _on_onednn(build):
    """``build()`` with the quantized engine set to oneDNN, so that the weights it packs
    are packed for oneDNN; None where torch has no oneDNN engine or already uses it."""
    engine = torch.backends.quantized.engine
    if not _onednn_available() or engine == "onednn":
        return None
    torch.backends.quantized.engine = "onednn"
    try:
        return build()
    finally:
        torch.backends.quantized.engine = engine


class Int8Linear(torch.ao.nn.quantized.dynamic.Linear):
    """PyTorch's dynamically quantized ``Linear`` with a second packing of the same int8
    weight for oneDNN, used for calls with many outputs.

    Measured on this project's CPU (2 threads, ``(rows, in) x (in, out)``), oneDNN
    against fbgemm: faster from about 65,536 outputs (rows x out) when ``out`` is 512 or
    more (128 x 512 -> 32,000 3.6 against 10 ms; 800 x 512 -> 2,048 0.9 against 2.0;
    128 x 256 -> 1,024 159 against 227 us; 32 x 512 -> 2,048 78 against 113 us), slower
    below it (64 x 512 -> 512, 128 x 256 -> 256) and for narrow outputs whatever the
    rows (320 x 512 -> 256, a copy gate's 1,280 -> 1), and 20-40 us slower per call at
    a few rows (batch 1). Both quantize the input the same way (per tensor, 7-bit
    range), so the choice changes no result beyond float rounding."""

    MIN_ROWS = 16
    MIN_OUT_FEATURES = 512
    MIN_OUTPUTS = 65_536

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        qlinear = super().from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)
        if qlinear._packed_params.dtype == torch.qint8:
            weight, bias = qlinear._weight_bias()
            # a plain attribute: never saved, rebuilt by quantize_int8
            qlinear.__dict__[_ONEDNN] = _on_onednn(
                lambda: torch.ops.quantized.linear_prepack(weight, bias)
            )
        return qlinear

    def forward(self, x):
        params = self._modules["_packed_params"]
        if params.dtype != torch.qint8 or self.version is None or self.version < 4:
            return super().forward(x)  # float16 weights, or an old saved layer
        # The same operator as torch's forward, called by its overload: a decoding step
        # makes dozens of these calls at a few rows, where torch's generic operator
        # dispatch from Python (argument checks per call) is a visible share of the call.
        packed = self.__dict__.get(_ONEDNN)
        if packed is not None and self._many_outputs(x):
            with _ONEDNN_LOCK:
                y = _LINEAR_DYNAMIC(x, packed, True)
        else:
            y = _LINEAR_DYNAMIC(x, params._packed_params, True)  # fbgemm's packing
        return y if y.dtype == x.dtype else y.to(x.dtype)

    def _many_outputs(self, x) -> bool:
        """Whether a call on ``x`` is one oneDNN is faster on (see the class doc)."""
        if self.out_features < self.MIN_OUT_FEATURES or not x.numel():
            return False
        rows = x.numel() // x.size(-1)
        return rows >= self.MIN_ROWS and rows * self.out_features >= self.MIN_OUTPUTS

    def _get_name(self):
        return "Int8Linear"


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
            model,
            {nn.Linear, nn.LSTM, nn.GRU},
            dtype=torch.qint8,
            mapping=_int8_mapping(),
            inplace=True,
        )


class _Int8RNN:
    """The same second packing for PyTorch's dynamically quantized LSTM and GRU: a call
    whose gate products have :attr:`MIN_OUTPUTS` outputs or more (batch rows x gates x
    hidden size: a beam step over a batch, the encoder over a batch) runs on the oneDNN
    copy, as :class:`Int8Linear` does. Measured on this project's CPU (2 threads, one
    step of one layer, fbgemm against oneDNN): LSTM 1,024 -> 512 at 8 rows 268 against
    350 us, 32 rows (65,536 gate outputs) 580 against 566, 64 rows 1,050 against 891,
    160 rows 1,706 against 1,167; LSTM 512 -> 256 at 32 rows 249 against 291, 160 rows
    917 against 804; GRU 512 -> 256 at 64 rows (49,152) 304 against 341, 160 rows 666
    against 604. Same integers, so one layer's output is the same to float rounding; a
    stacked layer quantizes that output again, and where a value lies on a rounding step
    the two differ by one step (about 1e-3), which the recurrence carries on."""

    MIN_ROWS = Int8Linear.MIN_ROWS  # the same rule as Int8Linear's
    MIN_OUTPUTS = Int8Linear.MIN_OUTPUTS
    GATES = 4

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        rnn = super().from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)
        # torch's RNNBase.from_float builds its own LSTM/GRU class, not ``cls``; this
        # subclass adds methods only, so the instance can take it as its class
        assert isinstance(rnn, cls.__mro__[2]), type(rnn)
        rnn.__class__ = cls
        if rnn.dtype == torch.qint8:
            default = rnn._all_weight_values
            weights = rnn._weight_bias()

            def pack():  # torch's own packing of the same int8 weights, under oneDNN
                rnn.set_weight_bias({**weights["weight"], **weights["bias"]})
                return [m.param for m in rnn._all_weight_values]

            try:
                rnn.__dict__[_ONEDNN] = _on_onednn(pack)
            finally:
                rnn._all_weight_values = default
        return rnn

    def _params(self, rows: int):
        """The oneDNN cell parameters for ``rows`` rows, or None for the default ones."""
        onednn = self.__dict__.get(_ONEDNN)
        if onednn is None or rows < self.MIN_ROWS:
            return None
        return onednn if rows * self.GATES * self.hidden_size >= self.MIN_OUTPUTS else None

    def _zeros(self, input: torch.Tensor, rows: int) -> torch.Tensor:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return input.new_zeros(layers, rows, self.hidden_size)


class Int8LSTM(_Int8RNN, torch.ao.nn.quantized.dynamic.LSTM):
    """Dynamically quantized ``nn.LSTM`` with the oneDNN copy (:class:`_Int8RNN`)."""

    def forward_impl(self, input, hx, batch_sizes, max_batch_size, sorted_indices):
        params = self._params(max_batch_size)
        if params is None:
            return super().forward_impl(input, hx, batch_sizes, max_batch_size, sorted_indices)
        if hx is None:
            hx = (self._zeros(input, max_batch_size),) * 2
        else:
            hx = self.permute_hidden(hx, sorted_indices)
        self.check_forward_args(input, hx, batch_sizes)
        rest = (params, self.bias, self.num_layers, float(self.dropout), self.training)
        with _ONEDNN_LOCK:
            if batch_sizes is None:
                result = torch.quantized_lstm(
                    input, hx, *rest, self.bidirectional, self.batch_first,
                    dtype=self.dtype, use_dynamic=True,
                )  # fmt: skip
            else:
                result = torch.quantized_lstm(
                    input, batch_sizes, hx, *rest, self.bidirectional,
                    dtype=self.dtype, use_dynamic=True,
                )  # fmt: skip
        return result[0], result[1:]

    def _get_name(self):
        return "Int8LSTM"


class Int8GRU(_Int8RNN, torch.ao.nn.quantized.dynamic.GRU):
    """Dynamically quantized ``nn.GRU`` with the oneDNN copy (:class:`_Int8RNN`)."""

    GATES = 3

    def forward_impl(self, input, hx, batch_sizes, max_batch_size, sorted_indices):
        params = self._params(max_batch_size)
        if params is None:
            return super().forward_impl(input, hx, batch_sizes, max_batch_size, sorted_indices)
        if hx is None:
            hx = self._zeros(input, max_batch_size)
        else:
            hx = self.permute_hidden(hx, sorted_indices)
        self.check_forward_args(input, hx, batch_sizes)
        rest = (params, self.bias, self.num_layers, self.dropout, self.training)
        with _ONEDNN_LOCK:
            if batch_sizes is None:
                result = torch.quantized_gru(input, hx, *rest, self.bidirectional, self.batch_first)
            else:
                result = torch.quantized_gru(input, batch_sizes, hx, *rest, self.bidirectional)
        return result[0], result[1]

    def _get_name(self):
        return "Int8GRU"


def _int8_mapping() -> dict:
    """torch's dynamic quantization mapping with this module's classes for ``nn.Linear``,
    ``nn.LSTM`` and ``nn.GRU``."""
    from torch.ao.quantization.quantization_mappings import (
        get_default_dynamic_quant_module_mappings,
    )

    mapping = dict(get_default_dynamic_quant_module_mappings())
    mapping.update({nn.Linear: Int8Linear, nn.LSTM: Int8LSTM, nn.GRU: Int8GRU})
    return mapping


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
            mapping=_int8_mapping(),
        )
        m.__dict__[QKV_INT8] = holder[0]


def apply_precision(model: nn.Module, precision: str) -> nn.Module:
    """``fp32``: the same model, its linear layers packed for oneDNN
    (:func:`~transduce.models.fast_linear.pack_linears`); ``int8``: :func:`quantize_int8`.
    In place; returns ``model``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return quantize_int8(model) if precision == "int8" else pack_linears(model)


__all__ = ["PRECISIONS", "Int8GRU", "Int8LSTM", "Int8Linear", "apply_precision", "quantize_int8"]
