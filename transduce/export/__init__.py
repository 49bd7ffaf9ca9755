"""Export trained models for fast inference engines.

* :mod:`transduce.export.ctranslate2`: Transformer translation/summarization models to
  a CTranslate2 model folder, plus :class:`CT2Translator` to decode with it.
* :mod:`transduce.export.whisper`: Whisper speech models (imported or fine-tuned) to
  CTranslate2's Whisper spec, which faster-whisper runs.

The engines are optional dependencies: ``pip install 'transduce[export]'``.
"""

from __future__ import annotations

FORMATS = ("ctranslate2",)

__all__ = ["FORMATS"]
