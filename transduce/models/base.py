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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn


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

    def reorder(self, index: Tensor) -> EncoderOutput:
        """Select batch rows (used to expand a batch into beams)."""
        return EncoderOutput(
            memory=self.memory.index_select(0, index),
            mask=self.mask.index_select(0, index),
            final_state=_select(self.final_state, index),
            source_ids=_select(self.source_ids, index),
        )


class DecoderState:
    """A plain, batch-first container of tensors (or lists/dicts of tensors).

    Entries are attributes: ``state.h``, ``state.layers[i]["k"]``. Every tensor's
    dim 0 is the batch. Decoders create new states rather than mutating old
    ones in place, so a state can be kept by beam search while a step runs.
    """

    def __init__(self, **entries: Any) -> None:
        self.__dict__.update(entries)

    def entries(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def reorder(self, index: Tensor) -> DecoderState:
        """Return a state whose batch row ``i`` is this state's row ``index[i]``."""
        return DecoderState(**{k: _select(v, index) for k, v in self.__dict__.items()})

    def __repr__(self) -> str:
        parts = []
        for k, v in self.__dict__.items():
            parts.append(f"{k}={tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
        return f"DecoderState({', '.join(parts)})"


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
        self, tgt_in: Tensor, enc_out: EncoderOutput, state: DecoderState | None = None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:  # pragma: no cover
        """Return ``logits (B, T, V)``, the new state and attention ``(B, T, S)`` or None."""
        raise NotImplementedError


__all__ = ["Decoder", "DecoderState", "Encoder", "EncoderOutput"]
