"""The interfaces every encoder and decoder implements.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``D`` model width,
``V`` target vocabulary size. Masks are bool tensors where ``True`` marks a real
(non-padding) position.

The contracts:

* ``Encoder.forward(src, src_mask) -> EncoderOutput(memory, mask, final_state)``.
  The encoder owns its front end (token embedding, audio or image stem), so
  ``src`` may be token ids ``(B, S)``, audio features ``(B, S, F)`` or images
  ``(B, C, H, W)``. ``memory`` is always ``(B, S', D)`` with ``mask`` ``(B, S')``.
* ``Decoder.forward(tgt_in, enc_out, state=None) -> (logits, state, attn)``.
  With ``state=None`` the decoder starts from scratch and reads the whole of
  ``tgt_in`` (teacher forcing, or the first step of decoding). With a state it
  reads only the new tokens ``tgt_in`` ``(B, T_new)`` that follow what the state
  has already seen. It always returns the state after the last token, so
  decoding step by step equals decoding the whole prefix at once.
* ``DecoderState`` holds tensors only, batch first; ``reorder(index)`` is the
  single hook beam search needs.
* Hypotheses per sentence: ``tgt_in`` may have ``G * A`` rows for an ``enc_out`` of
  ``A`` sentences (beam search: ``G`` = beam size); rows ``a * G .. a * G + G - 1``
  continue sentence ``a``. Decoders keep what depends only on the source
  (projected cross-attention keys/values, RNN attention keys, the memory) once
  per sentence as *per-sentence* state fields, never copied ``G`` times; a decoder
  that does not care calls :meth:`EncoderOutput.expand_rows`.
* ``need_attention``: decoders return attention weights only when asked (plots,
  coverage, alignment losses); otherwise they may take fused kernels and return
  None. A decoder whose own computation needs the weights (copy) computes them
  regardless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from transduce.models import fast_linear


def _select(value: Any, index: Tensor) -> Any:
    """Index the batch dimension (dim 0) of every tensor inside ``value``."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.index_select(0, index)
    if isinstance(value, (list, tuple)):
        return type(value)(_select(v, index) for v in value)
    if isinstance(value, dict):
        return {k: _select(v, index) for k, v in value.items()}
    if isinstance(value, DecoderState):
        return value.reorder(index)
    raise TypeError(f"cannot reorder a {type(value).__name__} in a decoder state")


@dataclass
class EncoderOutput:
    """What an encoder hands to a decoder.

    memory: ``(B, S, D)`` vectors to attend over.
    mask: ``(B, S)`` bool, True where ``memory`` is real, not padding.
    final_state: optional summary for decoders without attention, e.g. an RNN's
        ``(h, c)`` with each tensor ``(B, layers, H)``, batch first.
    source_ids: optional ``(B, S)`` long source token ids as given to a text encoder,
        *extended* ids (``>= V`` for per-example out-of-vocabulary words) included;
        copy decoders scatter their copy distribution onto them.
    """

    memory: Tensor
    mask: Tensor
    final_state: Any = None
    source_ids: Tensor | None = None

    def expand_rows(self, rows: int) -> EncoderOutput:
        """Repeat every sentence ``rows // B`` times in a row: ``(B, ...)`` -> ``(rows, ...)``.

        For decoders that read ``G`` hypotheses per sentence (see the module
        docstring) the simple way, at the cost of ``G`` copies of the memory.
        """
        groups = hypotheses_per_sentence(rows, self.memory.size(0))
        if groups == 1:
            return self
        index = torch.arange(self.memory.size(0), device=self.memory.device)
        return self.reorder(index.repeat_interleave(groups))

    def reorder(self, index: Tensor) -> EncoderOutput:
        """Select batch rows (used to expand a batch into beams)."""
        return EncoderOutput(
            memory=self.memory.index_select(0, index),
            mask=self.mask.index_select(0, index),
            final_state=_select(self.final_state, index),
            source_ids=_select(self.source_ids, index),
        )


def hypotheses_per_sentence(rows: int, sentences: int) -> int:
    """``G`` when ``rows`` decoder rows continue ``sentences`` encoded sentences."""
    if sentences <= 0 or rows % sentences != 0:
        raise ValueError(
            f"{rows} decoder rows cannot continue {sentences} encoded sentences: "
            "the rows must be a whole number of hypotheses per sentence"
        )
    return rows // sentences


def fold_rows(x: Tensor, groups: int) -> Tensor:
    """``(A * G, T, ...)`` -> ``(A, G * T, ...)``: a sentence's hypotheses become query steps.

    Lets one per-sentence attention serve all ``G`` hypotheses of a sentence
    (attention treats every query position independently).
    """
    if groups == 1:
        return x
    return x.reshape(x.size(0) // groups, groups * x.size(1), *x.shape[2:])


def unfold_rows(x: Tensor, groups: int) -> Tensor:
    """Inverse of :func:`fold_rows`: ``(A, G * T, ...)`` -> ``(A * G, T, ...)``."""
    if groups == 1:
        return x
    return x.reshape(x.size(0) * groups, x.size(1) // groups, *x.shape[2:])


class DecoderState:
    """A plain, batch-first container of tensors (or lists/dicts of tensors).

    Entries are attributes: ``state.h``, ``state.layers[i]["k"]``. Every tensor's
    dim 0 is the batch. Decoders create new states rather than mutating old
    ones in place, so a state can be kept by beam search while a step runs.

    Two kinds of entries: *per-hypothesis* ones (dim 0 = the decoder rows: RNN
    hidden state, self-attention cache) and *per-sentence* ones named in
    ``per_sentence`` (dim 0 = the encoded sentences, shared by the ``groups``
    hypotheses of each sentence: projected cross-attention keys/values).

    Per-hypothesis entries named in ``lazy`` are reordered lazily: :meth:`reorder`
    leaves their tensors as they are and records which stored row each new row is
    (:attr:`order`), so a decoder that copies the entry anyway on its next step
    (the self-attention cache, which grows by a token) picks the rows in that same
    copy. Read them through :meth:`resolved` unless you apply :attr:`order` yourself.
    """

    def __init__(
        self,
        per_sentence: tuple[str, ...] = (),
        groups: int = 1,
        lazy: tuple[str, ...] = (),
        order: Tensor | None = None,
        **entries: Any,
    ) -> None:
        self.__dict__.update(entries)
        self._per_sentence = tuple(per_sentence)
        self._groups = groups
        self._lazy = tuple(lazy)
        self._order = order if self._lazy else None

    @property
    def order(self) -> Tensor | None:
        """Row ``i`` of every ``lazy`` entry is its stored row ``order[i]``; None: row ``i``."""
        return self._order

    def resolved(self, name: str) -> Any:
        """Entry ``name`` with its rows in order (a lazy entry's pending reorder applied)."""
        value = getattr(self, name)
        if name in self._lazy and self._order is not None:
            return _select(value, self._order)
        return value

    @property
    def groups(self) -> int:
        """Hypotheses (decoder rows) per sentence."""
        return self._groups

    def entries(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def reorder(self, index: Tensor, sentences: Tensor | None = None) -> DecoderState:
        """Return a state whose batch row ``i`` is this state's row ``index[i]``.

        sentences: with ``groups > 1``, the old sentence of each new group of rows;
            None keeps the sentences as they are (beam search reorders hypotheses
            within their sentences and passes ``sentences`` only when some leave
            the batch), and the per-sentence entries are shared, not copied. With
            one row per sentence (``groups == 1``) per-sentence entries follow
            ``index`` and ``sentences`` is ignored.
        """
        if self._groups == 1:
            sentences = index
        entries = {}
        for k, v in self.entries().items():
            if k in self._per_sentence:
                entries[k] = v if sentences is None else _select(v, sentences)
            elif k in self._lazy:
                entries[k] = v  # rows picked through `order` when next read
            else:
                entries[k] = _select(v, index)
        order = index if self._order is None else self._order.index_select(0, index)
        return DecoderState(
            per_sentence=self._per_sentence,
            groups=self._groups,
            lazy=self._lazy,
            order=order,
            **entries,
        )

    def __repr__(self) -> str:
        parts = []
        for k, v in self.entries().items():
            parts.append(f"{k}={tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
        return f"DecoderState({', '.join(parts)}, groups={self._groups})"


class Encoder(nn.Module):
    """Base class of all encoders. Subclasses set ``self.output_dim``."""

    output_dim: int

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:  # pragma: no cover
        raise NotImplementedError


class Decoder(nn.Module):
    """Base class of all decoders. Subclasses set ``self.vocab_size``.

    ``embedding`` (an ``nn.Embedding``) and ``output_projection`` (an
    ``nn.Linear`` to the vocabulary) are attributes so the model can tie or
    share them.
    """

    vocab_size: int
    embedding: nn.Embedding
    output_projection: nn.Linear

    def forward(
        self,
        tgt_in: Tensor,
        enc_out: EncoderOutput,
        state: DecoderState | None = None,
        need_attention: bool = True,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:  # pragma: no cover
        """Return ``logits (B, T, V)``, the new state and attention ``(B, T, S)`` or None.

        ``tgt_in`` may hold ``G`` hypotheses per sentence of ``enc_out`` (module docstring).
        """
        raise NotImplementedError

    def project_to_vocab(self, x: Tensor) -> Tensor:
        """``output_projection(x)``: ``(..., D)`` -> logits ``(..., V)``, faster when decoding.

        A plain ``nn.Linear`` projection decodes on a cached oneDNN-packed copy of its
        weight (:mod:`transduce.models.fast_linear`: CPU, float32, no autograd), about
        2x faster than ``F.linear`` for a vocabulary-wide output; the copy is rebuilt
        whenever the weight changes, so training, ``load_state_dict`` and weight tying
        see no difference. Other projections (int8, a pointer mixture) are called as
        they are.
        """
        proj = self.output_projection
        if type(proj) is nn.Linear:  # a PackedLinear takes the same path by itself
            return fast_linear.linear(proj, x, proj.weight, proj.bias)
        return proj(x)


__all__ = [
    "Decoder",
    "DecoderState",
    "Encoder",
    "EncoderOutput",
    "fold_rows",
    "hypotheses_per_sentence",
    "unfold_rows",
]
