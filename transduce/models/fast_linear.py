"""Float32 inference on the CPU with oneDNN's pre-packed weights.

``F.linear`` on the CPU calls MKL's ``sgemm``, which re-arranges (packs) the weight
for its kernel on every call. Decoding calls every weight once per step with a few
dozen rows, so that packing is a large share of the step. oneDNN (shipped inside
PyTorch's CPU build) can pack a weight once (``torch.ops.mkldnn._reorder_linear_weight``)
and multiply against the packed copy (``torch.ops.mkldnn._linear_pointwise``).

Measured on this project's CPU, float32, the weights of a 6+6-layer d512 decoder
(48 products) and its 32,000-word output projection, per decoding step
(benchmarks/RESULTS.md has the table):

    rows   threads   decoder layers: F.linear -> packed   output projection
    32     1         22.4 -> 15.4 ms                       21.2 -> 11.8 ms
    32     2         15.1 ->  8.9 ms                       16.7 ->  5.8 ms
    128    2         36.7 -> 29.4 ms                       37.0 -> 20.1 ms

The packed product gives each row the same result whatever the number of rows
(MKL's ``sgemm`` does not), and equals ``F.linear`` to float32 rounding.

:func:`linear` is the product used by :class:`PackedLinear` and by decoders'
output projection. It takes the packed path only where it applies: no autograd
(decoding, under ``torch.no_grad``/``inference_mode``), CPU, float32 input and
weight, no autocast, oneDNN present, a weight not itself made under
``inference_mode``; anywhere else (training, CUDA, bf16) it is ``F.linear``. The
packed copy is cached on the module (never saved, never copied) and rebuilt whenever
the weight changes: another tensor, new memory (``.to()``), or written in place (its
``_version``: an optimizer step, ``load_state_dict``). It doubles the memory the
linear weights take while the model decodes.

:func:`pack_linears` also marks ``nn.LSTM`` / ``GRU`` / ``RNN`` modules
(:class:`PackedLSTM` ...): an RNN decoder stepping one token at a time then computes
each layer's gates as one product on a packed ``[W_ih, W_hh]`` (:func:`linear_joined`)
instead of calling oneDNN's RNN primitive for a sequence of one (``models/rnn.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_CACHE = "_packed_weight"
_ROWS_HINT = 32  # the row count oneDNN chooses the packed layout for; any count works


def _available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(
            torch.ops.mkldnn, "_linear_pointwise"
        )
    except (AttributeError, RuntimeError):
        return False


AVAILABLE = _available()


def applies(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` would take the packed path for ``x`` and ``weight``."""
    return (
        AVAILABLE
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and not torch.is_autocast_enabled("cpu")
        # a weight made under inference_mode has no version counter, so a packed copy
        # could not tell when the weight is written to: such layers keep F.linear
        and not weight.is_inference()
    )


class _Packed:
    """The cache entry: the weight it was made from, that weight's state, the packed copy.

    oneDNN's packed tensors cannot be copied or pickled, so a deep copy or a pickle of
    the module holding this gets ``None`` in its place (and packs again when used).
    """

    __slots__ = ("weight", "key", "packed")

    def __init__(self, weight: Tensor, key: tuple, packed: Tensor) -> None:
        self.weight, self.key, self.packed = weight, key, packed

    def __deepcopy__(self, memo) -> None:
        return None

    def __reduce__(self):
        return (type(None), ())


def packed_weight(module: nn.Module, weight: Tensor) -> Tensor:
    """``weight`` packed for oneDNN, cached on ``module`` until the weight changes."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape))
    cached = module.__dict__.get(_CACHE)
    if cached is None or cached.weight is not weight or cached.key != key:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _ROWS_HINT)
        cached = _Packed(weight, key, packed)
        module.__dict__[_CACHE] = cached  # a plain attribute: not a parameter or buffer
    return cached.packed


def linear(
    module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None, activation: str = "none"
) -> Tensor:
    """``F.linear(x, weight, bias)``, on ``module``'s packed copy of ``weight`` where that
    applies (see the module docstring). ``activation="relu"`` applies ReLU to the result,
    inside oneDNN's product on the packed path (no second pass over the output)."""
    if not applies(x, weight):
        y = F.linear(x, weight, bias)
        return torch.relu(y) if activation == "relu" else y
    return torch.ops.mkldnn._linear_pointwise(
        x, packed_weight(module, weight), bias, activation, [], ""
    )


_CONCAT_CACHE = "_packed_concat"


def concat_bias(weights: list[Tensor], biases: list[Tensor | None]) -> Tensor | None:
    """The biases of linear layers side by side, zeros for a layer without one; None if
    none has one."""
    if all(b is None for b in biases):
        return None
    return torch.cat(
        [b if b is not None else w.new_zeros(w.size(0)) for w, b in zip(weights, biases)]
    )


def linear_concat(
    module: nn.Module,
    x: Tensor,
    weights: list[Tensor],
    biases: list[Tensor | None],
    packed: bool = True,
) -> Tensor:
    """The outputs of several linear layers over the same ``x``, side by side, in one
    product: ``cat([F.linear(x, w, b) for ...], -1)`` (attention's queries, keys and
    values). The weights stay separate parameters; under autograd the product runs on
    their concatenation (a copy of the weights, and gradients that split back). For
    decoding (:func:`applies`) the concatenation is packed for oneDNN once and cached on
    ``module`` until any of the weights changes; ``packed=False`` keeps ``F.linear``
    (layers that are not :class:`PackedLinear`)."""
    if not (packed and applies(x, weights[0])):
        return F.linear(x, torch.cat(weights), concat_bias(weights, biases))

    def build() -> tuple[Tensor, Tensor | None]:
        weight = torch.cat([w.detach() for w in weights])
        bias = concat_bias(weights, [b.detach() if b is not None else None for b in biases])
        return torch.ops.mkldnn._reorder_linear_weight(weight, _ROWS_HINT), bias

    weight, bias = _packed_parts(module, _CONCAT_CACHE, weights, biases, build)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _packed_parts(
    module: nn.Module,
    name: str,
    weights: list[Tensor],
    biases: list[Tensor | None],
    build: Callable[[], tuple[Tensor, Tensor | None]],
) -> tuple[Tensor, Tensor | None]:
    """``build()``'s packed weight and bias made from ``weights`` and ``biases``, cached
    on ``module`` under ``name`` until any of them changes (another tensor, new memory,
    or written in place)."""
    parts = (*weights, *(b for b in biases if b is not None))
    key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in parts)
    cached = module.__dict__.get(name)
    if cached is None or cached.key != key or any(a is not b for a, b in zip(cached.weight, parts)):
        cached = _Packed(parts, key, build())
        module.__dict__[name] = cached
    return cached.packed


_JOINED_CACHE = "_packed_joined_"


def linear_joined(
    module: nn.Module,
    inputs: list[Tensor],
    weights: list[Tensor],
    biases: list[Tensor | None],
    slot: str,
) -> Tensor:
    """``sum(F.linear(x, w) for x, w in zip(inputs, weights)) + sum(biases)`` as one
    product: ``cat(inputs, -1)`` against ``cat(weights, 1)`` (an RNN step's gates from
    its input and its hidden state). For decoding only (:func:`applies` must hold): the
    joined weight and the summed bias are packed once and cached on ``module`` under
    ``slot`` (one per layer) until any of them changes."""

    def build() -> tuple[Tensor, Tensor | None]:
        weight = torch.cat([w.detach() for w in weights], 1)
        present = [b.detach() for b in biases if b is not None]
        bias = torch.stack(present).sum(0) if present else None
        return torch.ops.mkldnn._reorder_linear_weight(weight, _ROWS_HINT), bias

    weight, bias = _packed_parts(module, _JOINED_CACHE + slot, weights, biases, build)
    x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def drop_cache(module: nn.Module) -> None:
    for name in [n for n in module.__dict__ if n.startswith(_JOINED_CACHE)]:
        del module.__dict__[name]
    module.__dict__.pop(_CACHE, None)
    module.__dict__.pop(_CONCAT_CACHE, None)


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` that decodes on a packed copy of its weight (:func:`linear`).

    Same parameters, same state-dict keys, same results to float32 rounding; made by
    :func:`pack_linears` from existing ``nn.Linear`` modules.
    """

    def forward(self, x: Tensor) -> Tensor:
        return linear(self, x, self.weight, self.bias)


class PackedLSTM(nn.LSTM):
    """An ``nn.LSTM`` whose one-token decoding steps may run on packed weights.

    The module's own calls are unchanged (a whole sequence is oneDNN's RNN primitive,
    fast); a decoder that steps its RNN one token at a time (attention, input feeding)
    runs each layer's gates as one :func:`linear_joined` product (``models/rnn.py``).
    Same parameters and state-dict keys; made by :func:`pack_linears`.
    """


class PackedGRU(nn.GRU):
    """An ``nn.GRU`` whose one-token decoding steps may run on packed weights
    (:class:`PackedLSTM`)."""


class PackedRNN(nn.RNN):
    """An ``nn.RNN`` whose one-token decoding steps may run on packed weights
    (:class:`PackedLSTM`)."""


_PACKED_CLASSES: dict[type, type] = {
    nn.Linear: PackedLinear,
    nn.LSTM: PackedLSTM,
    nn.GRU: PackedGRU,
    nn.RNN: PackedRNN,
}
_PLAIN_CLASSES = {packed: plain for plain, packed in _PACKED_CLASSES.items()}
PACKED_RNNS = (PackedLSTM, PackedGRU, PackedRNN)


def pack_linears(model: nn.Module) -> nn.Module:
    """Make every plain ``nn.Linear`` in ``model`` a :class:`PackedLinear` (and every
    ``nn.LSTM`` / ``GRU`` / ``RNN`` a :class:`PackedLSTM` / ...), in place.

    Nothing is packed yet: each layer packs its weight on its first decoding call.
    A no-op where oneDNN is missing. Returns ``model``.
    """
    if AVAILABLE:
        for m in model.modules():
            if type(m) in _PACKED_CLASSES:
                m.__class__ = _PACKED_CLASSES[type(m)]
    return model


def unpack_linears(model: nn.Module) -> nn.Module:
    """Undo :func:`pack_linears` (plain ``nn.Linear`` etc. again, caches dropped), in
    place."""
    for m in model.modules():
        if type(m) in _PLAIN_CLASSES:
            m.__class__ = _PLAIN_CLASSES[type(m)]
        drop_cache(m)
    return model


__all__ = [
    "AVAILABLE",
    "PackedGRU",
    "PackedLSTM",
    "PackedLinear",
    "PACKED_RNNS",
    "PackedRNN",
    "applies",
    "concat_bias",
    "linear",
    "linear_concat",
    "linear_joined",
    "pack_linears",
    "packed_weight",
    "unpack_linears",
]
