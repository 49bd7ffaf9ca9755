"""Export a Whisper-architecture model folder back to CTranslate2's Whisper spec.

The inverse of :mod:`transduce.convert.whisper`: an imported Whisper, or one fine-tuned
from it with ``model.init_from``, becomes a CTranslate2 Whisper folder that
``faster_whisper.WhisperModel(DIR)`` (and ``transduce import whisper --from DIR``) reads::

    out_dir/
      model.bin          ctranslate2.specs.WhisperSpec, weights as --quantization says
      config.json        suppress_ids, suppress_ids_begin, lang_ids, alignment_heads
      vocabulary.json    token strings in Whisper's numbering
      tokenizer.json     Whisper's byte-level BPE (the model's own)
      transduce/         the transduce config and tokenizer (marks the folder as an export)

Undone on the way out:

* the tokenizer's id swap (transduce's pad/unk/bos/eos 0..3 <-> ``<|startoflm|>``,
  ``<|startofprev|>``, ``<|startoftranscript|>``, ``<|endoftext|>``): the embedding
  rows are permuted back (the permutation is its own inverse); suppressed ids are
  kept in Whisper's numbering by the tokenizer already;
* the split projections: self-attention q, k, v are fused into one linear layer,
  cross-attention k, v into another, as CTranslate2 stores them. The key bias transduce
  keeps (zero after import; a key bias cannot change outputs, so training leaves its
  gradient zero) is written as it is.

``lang_ids`` are the ``<|xx|>`` language tokens between ``<|startoftranscript|>`` and
``<|translate|>``; ``alignment_heads`` (the cross-attention heads faster-whisper's word
timestamps read) are the imported model's own when the import recorded them, else those
of the installed weight package of the same decoder shape (Whisper base or small), else
CTranslate2's converter default: every head of the second half of the decoder layers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transduce.config import TransduceError
from transduce.export.ctranslate2 import (
    LAYER_NORM_EPS,
    _import_ctranslate2,
    _np,
    _set_decoder_layers,
    _set_encoder_layers,
    _set_linear,
    _set_norm,
    write_side_folder,
)

EXPORTABLE_WHISPER = (
    "Whisper export needs task speech, a whisper encoder, the whisper tokenizer and a "
    "pre-norm GELU Transformer decoder with learned positions, no embedding scale and no copy"
)


def is_whisper(cfg: Any) -> bool:
    """A model with a ``whisper`` encoder (imported or fine-tuned from one)."""
    return cfg.model.encoder.get("type") == "whisper"


def check_whisper_exportable(cfg: Any, where: str) -> None:
    """Raise one TransduceError naming what keeps ``cfg`` from CTranslate2's WhisperSpec."""
    from transduce.registry import resolve_config

    problems = []
    if cfg.task != "speech":
        problems.append(f"task is {cfg.task!r}")
    if cfg.tokenizer.type != "whisper":
        problems.append(f"the tokenizer is {cfg.tokenizer.type!r}")
    dec = cfg.model.decoder
    if dec.get("type") != "transformer":
        problems.append(f"the decoder is {dec.get('type')!r}")
    else:
        _, dcfg = resolve_config("decoder", dec, "model.decoder")
        _, ecfg = resolve_config("encoder", cfg.model.encoder, "model.encoder")
        if dcfg.copy:
            problems.append("the decoder copies source tokens (copy: true)")
        if not dcfg.norm_first:
            problems.append("the decoder is post-norm (norm_first: false)")
        if dcfg.activation != "gelu":
            problems.append(f"the decoder activation is {dcfg.activation!r}")
        if dcfg.positions != "learned":
            problems.append(f"the decoder positions are {dcfg.positions!r}")
        if dcfg.embed_scale:
            problems.append("the decoder scales its embeddings (embed_scale)")
        if dcfg.d_model != ecfg.d_model:
            problems.append("the encoder and decoder d_model differ")
    if problems:
        raise TransduceError(
            f"{where} cannot be exported: {'; '.join(problems)}. {EXPORTABLE_WHISPER}"
        )


def whisper_ct2_config(tok: Any, decoder_layers: int, decoder_heads: int) -> dict:
    """CTranslate2's Whisper ``config.json`` fields for tokenizer ``tok`` (Whisper ids)."""
    sot = tok.hf.token_to_id("<|startoftranscript|>")
    translate = tok.hf.token_to_id("<|translate|>")
    if sot is None or translate is None:
        raise TransduceError("the Whisper tokenizer has no <|startoftranscript|>/<|translate|>")
    heads = tok.meta.get("alignment_heads") or _package_alignment_heads(
        decoder_layers, decoder_heads
    )
    if not heads:  # CTranslate2's converter default
        heads = [
            [layer, head]
            for layer in range(decoder_layers // 2, decoder_layers)
            for head in range(decoder_heads)
        ]
    return {
        "suppress_ids": list(tok.meta.get("suppress_ids", [])),
        "suppress_ids_begin": list(tok.meta.get("suppress_ids_begin", [])),
        "lang_ids": list(range(sot + 1, translate)),
        "alignment_heads": [list(h) for h in heads],
    }


# Whisper's decoder (layers, heads) by size, to find the original alignment heads of a
# model imported before the import recorded them.
DECODER_SHAPES = {"base": (6, 8), "small": (12, 12)}


def _package_alignment_heads(layers: int, heads: int) -> list | None:
    """The alignment heads in the installed weight package of this decoder shape, if any."""
    from transduce.convert.whisper import package_files

    for size, shape in DECODER_SHAPES.items():
        if shape != (layers, heads):
            continue
        try:
            _, folder = package_files(size)
            return json.loads((folder / "config.json").read_text())["alignment_heads"]
        except (TransduceError, OSError, ValueError, KeyError):
            return None
    return None


def build_whisper_spec(model: Any, cfg: Any, tok: Any):
    """A filled ``ctranslate2.specs.WhisperSpec`` for a loaded Whisper EncoderDecoder."""
    import numpy as np

    ctranslate2 = _import_ctranslate2()
    from transduce.registry import resolve_config

    _, ecfg = resolve_config("encoder", cfg.model.encoder, "model.encoder")
    _, dcfg = resolve_config("decoder", cfg.model.decoder, "model.decoder")
    spec = ctranslate2.specs.WhisperSpec(ecfg.layers, ecfg.heads, dcfg.layers, dcfg.heads)
    encoder, decoder = model.encoder, model.decoder

    enc = spec.encoder
    for conv_spec, conv in ((enc.conv1, encoder.conv1), (enc.conv2, encoder.conv2)):
        _set_linear(conv_spec, conv)  # weight (D_out, D_in, 3) and bias, as CTranslate2's
    enc.position_encodings.encodings = _np(encoder.positions)
    _set_encoder_layers(enc.layer, encoder.layers)
    _set_norm(enc.layer_norm, encoder.final_norm)

    dec = spec.decoder
    perm = np.asarray(tok.perm)  # transduce id <-> Whisper id, its own inverse
    dec.embeddings.weight = _np(decoder.embedding.weight)[perm]
    dec.position_encodings.encodings = _np(decoder.positions.weight)
    _set_decoder_layers(dec.layer, decoder.layers)
    _set_norm(dec.layer_norm, decoder.final_norm)
    projection = decoder.output_projection
    dec.projection.weight = _np(projection.weight)[perm]
    if projection.bias is not None:
        dec.projection.bias = _np(projection.bias)[perm]

    for key, value in whisper_ct2_config(tok, dcfg.layers, dcfg.heads).items():
        setattr(spec.config, key, value)
    if hasattr(spec.config, "layer_norm_epsilon"):
        spec.config.layer_norm_epsilon = LAYER_NORM_EPS
    spec.register_vocabulary([tok.hf.id_to_token(i) for i in range(tok.vocab_size)])
    return spec


def export_whisper(model_dir: Path, cfg: Any, quantization: str) -> Any:
    """Load ``model_dir`` and return ``build(tmp)``, which writes the export into ``tmp``."""
    import torch

    from transduce.inference import Predictor

    check_whisper_exportable(cfg, str(model_dir))
    predictor = Predictor.load(model_dir)
    task = predictor.task
    tok = task.tok
    with torch.no_grad():
        spec = build_whisper_spec(predictor.model, cfg, tok)
    spec.validate()
    spec.optimize(quantization=quantization)

    def build(tmp: Path) -> None:
        spec.save(str(tmp))
        (tmp / "tokenizer.json").write_text(tok.tokenizer_json, encoding="utf-8")
        write_side_folder(tmp, model_dir, task, quantization)

    return build


__all__ = [
    "build_whisper_spec",
    "check_whisper_exportable",
    "export_whisper",
    "is_whisper",
    "whisper_ct2_config",
]
