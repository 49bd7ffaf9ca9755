"""Models: the encoder/decoder interfaces, the registered modules and ``build_model``.

Importing this package registers every built-in encoder and decoder; a new
module is one file plus one import line below.
"""

from transduce.models import (  # noqa: F401  (register)
    attention,
    audio,  # noqa: F401  (speech encoders, the ctc aux loss)
    embeddings,
    rnn,
    transformer,
    vision,  # noqa: F401  (the resnet image encoder)
    whisper,  # noqa: F401  (the whisper encoder)
)
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
