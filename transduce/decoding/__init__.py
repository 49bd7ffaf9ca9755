"""Searches over the Decoder contract: greedy, beam and sampling.

They see only ``model.encode(src, src_mask)``, ``model.decode(tgt_in, enc_out,
state, need_attention=...)``, ``state.reorder(index[, sentences])`` and
``enc_out.reorder(index)``, so any registered decoder works with all of them.
Beam search keeps ``enc_out`` at one row per sentence and decodes ``K`` rows per
sentence (``transduce.models.base`` says how a decoder reads that). Call them with the model in eval
mode; they run under ``torch.inference_mode()``.
"""

from transduce.decoding.beam import beam_search
from transduce.decoding.greedy import Hypothesis, greedy_search
from transduce.decoding.processors import (
    ForbidTokens,
    LogitsProcessor,
    MinLength,
    NoRepeatNGram,
    RepetitionPenalty,
    SuppressTokens,
    build_processors,
)
from transduce.decoding.sampling import filter_top_k_top_p, sample

__all__ = [
    "ForbidTokens",
    "Hypothesis",
    "LogitsProcessor",
    "MinLength",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "SuppressTokens",
    "beam_search",
    "build_processors",
    "filter_top_k_top_p",
    "greedy_search",
    "sample",
]
