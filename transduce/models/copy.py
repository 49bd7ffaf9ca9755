"""Copying source tokens into the output: the pointer-generator mixture.

See et al. (2017), "Get To The Point": at every target step a gate
``p_gen in (0, 1)`` mixes generating from the vocabulary with copying a source
token, the copy distribution being the decoder's attention over the source::

    P(w) = p_gen * P_vocab(w) + (1 - p_gen) * sum_{i : src_i = w} a_i

Out-of-vocabulary words. A tokenizer with *extended ids* (see
:class:`transduce.data.tokenizers.WordTokenizer`) numbers each example's source
OOV words ``V, V + 1, ...``; a target word that is OOV but occurs in the source
gets the same id. Embeddings see every id ``>= V`` as ``<unk>``
(:func:`in_vocab`), while the copy distribution is scattered onto the extended
ids, so the output has ``V + n_ext`` columns with ``n_ext`` the batch's number
of extended ids (:func:`extended_width`). Columns of extended ids an example
does not have get probability 0 (log ``LOG_FLOOR``).

A copy decoder returns these *log-probabilities* in place of logits. Since
``log_softmax`` of normalized log-probabilities is the identity, the searches
and the label-smoothed loss use them unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from transduce.config import ConfigError
from transduce.data.tokenizers import UNK_ID

# log of the smallest probability: keeps log(0) finite so label smoothing's sum over
# the vocabulary stays finite; e^-30 is ~1e-13, far below any real probability.
LOG_FLOOR = -30.0


def in_vocab(ids: Tensor, vocab_size: int) -> Tensor:
    """Map extended ids (``>= vocab_size``) to ``<unk>`` so an embedding can read them."""
    return ids.masked_fill(ids >= vocab_size, UNK_ID)


def extended_width(source_ids: Tensor, vocab_size: int) -> int:
    """``V + n_ext``: the output width that covers every extended id in ``source_ids``."""
    if source_ids.numel() == 0:
        return vocab_size
    return max(vocab_size, int(source_ids.max()) + 1)


def copy_log_probs(
    logits: Tensor, attn: Tensor, p_gen: Tensor, source_ids: Tensor, vocab_size: int
) -> Tensor:
    """The pointer-generator mixture, in log space.

    logits: ``(B, T, V)`` the generator's scores over the fixed vocabulary.
    attn: ``(B, T, S)`` attention over the source (rows sum to 1, 0 on padding).
    p_gen: ``(B, T, 1)`` probability of generating rather than copying.
    source_ids: ``(B, S)`` source ids, extended ids included.
    Returns ``(B, T, V + n_ext)`` float32 log-probabilities (rows sum to 1 in
    probability, up to the ``LOG_FLOOR`` of impossible columns).
    """
    B, T, _ = logits.shape
    width = extended_width(source_ids, vocab_size)
    p_vocab = torch.softmax(logits.float(), dim=-1) * p_gen.float()  # (B, T, V)
    dist = p_vocab.new_zeros(B, T, width)
    dist[..., :vocab_size] = p_vocab
    index = source_ids.unsqueeze(1).expand(B, T, source_ids.size(1))  # (B, T, S)
    dist = dist.scatter_add(-1, index, attn.float() * (1.0 - p_gen.float()))
    return dist.clamp_min(1e-30).log().clamp_min(LOG_FLOOR)


def source_ids_of(enc_out, where: str = "model.decoder") -> Tensor:
    """The encoder output's ``source_ids``, or a clear error when the encoder has none."""
    if enc_out.source_ids is None:
        raise ConfigError(
            f"{where}.copy: true needs a text encoder that passes its source ids on "
            "(EncoderOutput.source_ids); this encoder does not"
        )
    return enc_out.source_ids


def check_copy_vocab(ctx, where: str = "model.decoder") -> None:
    """Copying puts source ids in the target vocabulary: both must be one vocabulary."""
    if ctx.src_vocab_size and ctx.src_vocab_size != ctx.tgt_vocab_size:
        raise ConfigError(
            f"{where}.copy: true needs one shared vocabulary for source and target "
            f"(tokenizer.shared: true); got {ctx.src_vocab_size} and {ctx.tgt_vocab_size}"
        )


__all__ = [
    "LOG_FLOOR",
    "check_copy_vocab",
    "copy_log_probs",
    "extended_width",
    "in_vocab",
    "source_ids_of",
]
