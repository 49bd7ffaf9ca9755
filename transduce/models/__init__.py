"""Models: the encoder/decoder interfaces, the registered modules and ``build_model``.

Importing this package registers every built-in encoder and decoder; a new
module is one file plus one import line below.
"""

from transduce.models import attention, embeddings, rnn, transformer  # noqa: F401  (register)
from transduce.models.base import Decoder, DecoderState, Encoder, EncoderOutput
from transduce.models.seq2seq import EncoderDecoder, build_model

__all__ = [
    "Decoder",
    "DecoderState",
    "Encoder",
    "EncoderDecoder",
    "EncoderOutput",
    "build_model",
]
