"""Export a Transformer model folder to CTranslate2, and decode with the export.

``export_ctranslate2(model_dir, out_dir)`` fills a ``ctranslate2.specs.TransformerSpec``
with the weights of a transduce text-to-text Transformer (the layout CTranslate2's own
fairseq and OpenNMT-py converters produce) and writes a CTranslate2 model folder::

    out_dir/
      model.bin, config.json, source_vocabulary.json, target_vocabulary.json  (CTranslate2)
      transduce/config.json + tokenizer files                                 (the task)

How transduce maps onto the spec:

* Token ids map 1:1: the vocabulary lists id ``i``'s SentencePiece piece (or character,
  or word) at line ``i``; the special ids 0..3 get CTranslate2's names ``<blank>``,
  ``<unk>``, ``<s>``, ``</s>``, so the decoder starts from ``<s>`` (bos = 2) and stops
  at ``</s>`` (eos = 3) as transduce's searches do. The source gets no bos/eos, as in
  transduce.
* Embeddings are multiplied by ``sqrt(d_model)`` (``scale_embeddings``) unless the
  config turns ``embed_scale`` off. Position tables are written explicitly, learned or
  sinusoidal: CTranslate2's built-in sinusoids put all sines before all cosines while
  transduce interleaves them.
* Self-attention q, k, v become one fused linear layer; cross-attention keeps q apart
  and fuses k, v. Pre-norm models keep their final encoder/decoder LayerNorm; post-norm
  ones have none. LayerNorm epsilon is torch's 1e-5; GELU is the exact (erf) one.
* Tied or shared embeddings are written once per place they are used; CTranslate2
  stores equal arrays once.

``CT2Translator(out_dir)`` tokenizes with the model's own task, decodes with
``ctranslate2.Translator`` and detokenizes; ``transduce predict --engine ctranslate2``
uses it. Differences from transduce's searches: the maximum length is that of the
longest source in a batch (``max_len_a * S + max_len_b``, CTranslate2 takes one limit
per call), and beam search stops as CTranslate2's does (``patience`` 1).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transduce.config import DEFAULT_MAX_WORK, TransduceError
from transduce.paths import check_output, is_export_folder, replace_folder

TEXT_TASKS = ("translation", "summarization")
SPECIAL_NAMES = ("<blank>", "<unk>", "<s>", "</s>")  # CTranslate2's names for ids 0..3
QUANTIZATIONS = (
    "float32",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
)
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by every transduce LayerNorm
MIN_SINUSOIDAL_ROWS = 1024  # CTranslate2 truncates inputs at 1024 tokens by default
EXPORTABLE = (
    "CTranslate2 export supports text-to-text models (task translation or summarization) "
    "with a Transformer encoder and a Transformer decoder of the same d_model, without copy, "
    "and Whisper speech models (a whisper encoder)"
)


def _import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise TransduceError(
            "the ctranslate2 package is not installed: pip install 'transduce[export]' "
            "(or pip install ctranslate2)"
        ) from None
    return ctranslate2


# --------------------------------------------------------------------------------------
# conversion


def check_exportable(cfg: Any, where: str) -> None:
    """Raise one TransduceError naming what is not exportable in ``cfg`` (a Config)."""
    enc, dec = cfg.model.encoder, cfg.model.decoder
    problems = []
    if cfg.task not in TEXT_TASKS:
        problems.append(f"task is {cfg.task!r}")
    if enc.get("type") != "transformer":
        problems.append(f"the encoder is {enc.get('type')!r}")
    if dec.get("type") != "transformer":
        problems.append(f"the decoder is {dec.get('type')!r}")
    elif dec.get("copy", False):
        problems.append("the decoder copies source tokens (copy: true)")
    if not problems:
        from transduce.models.transformer import TransformerEncoderConfig

        default = TransformerEncoderConfig.d_model
        if enc.get("d_model", default) != dec.get("d_model", default):
            problems.append("the encoder and decoder d_model differ")
    if problems:
        raise TransduceError(f"{where} cannot be exported: {'; '.join(problems)}. {EXPORTABLE}")


def _np(t):
    return t.detach().cpu().float().numpy().copy()


def _set_linear(spec, linear) -> None:
    spec.weight = _np(linear.weight)
    if linear.bias is not None:
        spec.bias = _np(linear.bias)


def _set_norm(spec, norm) -> None:
    spec.gamma = _np(norm.weight)
    spec.beta = _np(norm.bias)


def _set_attention(spec, mha, self_attention: bool) -> None:
    import numpy as np

    def fused(*linears):
        weight = np.concatenate([_np(m.weight) for m in linears])
        bias = np.concatenate([_np(m.bias) for m in linears])
        return weight, bias

    if self_attention:
        spec.linear[0].weight, spec.linear[0].bias = fused(mha.q_proj, mha.k_proj, mha.v_proj)
    else:
        _set_linear(spec.linear[0], mha.q_proj)
        spec.linear[1].weight, spec.linear[1].bias = fused(mha.k_proj, mha.v_proj)
    _set_linear(spec.linear[-1], mha.out_proj)


def _set_ffn(spec, ff, norm) -> None:
    _set_norm(spec.layer_norm, norm)
    _set_linear(spec.linear_0, ff.fc1)
    _set_linear(spec.linear_1, ff.fc2)


def write_side_folder(out: Path, model_dir: Path, task: Any, quantization: str) -> None:
    """``out/transduce/``: the model's config, its tokenizers and ``export.json`` (which
    :func:`is_export_folder`, and so ``--force``, looks for)."""
    side = out / "transduce"
    side.mkdir()
    shutil.copy2(model_dir / "config.json", side / "config.json")
    task.save(side)
    (side / "export.json").write_text(
        json.dumps({"format": "ctranslate2", "quantization": quantization}, indent=2) + "\n"
    )


def _set_encoder_layers(layer_specs, layers) -> None:
    """Each Transformer encoder layer into its CTranslate2 layer spec."""
    for layer_spec, layer in zip(layer_specs, layers):
        _set_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _set_norm(layer_spec.self_attention.layer_norm, layer.res_attn.norm)
        _set_ffn(layer_spec.ffn, layer.ff, layer.res_ff.norm)


def _set_decoder_layers(layer_specs, layers) -> None:
    """Each Transformer decoder layer (self-, cross-attention, feed-forward) into its spec."""
    for layer_spec, layer in zip(layer_specs, layers):
        _set_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _set_norm(layer_spec.self_attention.layer_norm, layer.res_self.norm)
        _set_attention(layer_spec.attention, layer.cross_attn, self_attention=False)
        _set_norm(layer_spec.attention.layer_norm, layer.res_cross.norm)
        _set_ffn(layer_spec.ffn, layer.ff, layer.res_ff.norm)


def _set_inputs(spec, module, embedding_spec) -> None:
    from transduce.models.embeddings import LearnedPositionalEmbedding, sinusoidal_table

    embedding_spec.weight = _np(module.embedding.weight)
    spec.scale_embeddings = module.scale != 1.0  # True multiplies by sqrt(d_model)
    positions = module.positions
    if isinstance(positions, LearnedPositionalEmbedding):
        spec.position_encodings.encodings = _np(positions.weight)
    else:
        rows = max(positions.table.size(0), MIN_SINUSOIDAL_ROWS)
        spec.position_encodings.encodings = _np(sinusoidal_table(rows, positions.dim))


def _activation(ctranslate2, name: str):
    act = ctranslate2.specs.common_spec.Activation
    return act.GELU if name == "gelu" else act.RELU


def build_spec(model: Any, cfg: Any, src_vocab: list[str], tgt_vocab: list[str]):
    """A filled ``ctranslate2.specs.TransformerSpec`` for a loaded EncoderDecoder."""
    ctranslate2 = _import_ctranslate2()
    from transduce.registry import resolve_config

    specs = ctranslate2.specs
    _, ecfg = resolve_config("encoder", cfg.model.encoder, "model.encoder")
    _, dcfg = resolve_config("decoder", cfg.model.decoder, "model.decoder")
    enc_spec = specs.TransformerEncoderSpec(
        ecfg.layers,
        ecfg.heads,
        pre_norm=ecfg.norm_first,
        activation=_activation(ctranslate2, ecfg.activation),
    )
    dec_spec = specs.TransformerDecoderSpec(
        dcfg.layers,
        dcfg.heads,
        pre_norm=dcfg.norm_first,
        activation=_activation(ctranslate2, dcfg.activation),
    )
    encoder, decoder = model.encoder, model.decoder

    _set_inputs(enc_spec, encoder, enc_spec.embeddings[0])
    _set_encoder_layers(enc_spec.layer, encoder.layers)
    if ecfg.norm_first:
        _set_norm(enc_spec.layer_norm, encoder.final_norm)

    _set_inputs(dec_spec, decoder, dec_spec.embeddings)
    _set_decoder_layers(dec_spec.layer, decoder.layers)
    if dcfg.norm_first:
        _set_norm(dec_spec.layer_norm, decoder.final_norm)
    _set_linear(dec_spec.projection, decoder.output_projection)

    spec = specs.TransformerSpec(enc_spec, dec_spec)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPS
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = SPECIAL_NAMES[1:]
    spec.config.decoder_start_token = SPECIAL_NAMES[2]
    spec.config.add_source_bos = False
    spec.config.add_source_eos = False
    spec.register_source_vocabulary(src_vocab)
    spec.register_target_vocabulary(tgt_vocab)
    return spec


def vocabulary(tokenizer: Any) -> list[str]:
    """Token strings by id for a transduce tokenizer, specials renamed for CTranslate2.

    SentencePiece pieces, characters or words; if two ids would share a string (they
    cannot in a sane vocabulary, but the mapping must stay 1:1) every id is written as
    ``⟨id⟩`` instead.
    """
    n = tokenizer.vocab_size
    names = list(SPECIAL_NAMES)
    if hasattr(tokenizer, "sp"):
        names += [tokenizer.sp.id_to_piece(i) for i in range(len(SPECIAL_NAMES), n)]
    elif hasattr(tokenizer, "chars"):
        names += list(tokenizer.chars)
    elif hasattr(tokenizer, "words"):
        names += list(tokenizer.words)
    if len(names) != n or len(set(names)) != n:
        names = list(SPECIAL_NAMES) + [f"⟨{i}⟩" for i in range(len(SPECIAL_NAMES), n)]
    return names


def export_ctranslate2(
    model_dir: str | Path,
    out_dir: str | Path,
    quantization: str = "float32",
    force: bool = False,
) -> Path:
    """Convert the model folder ``model_dir`` into a CTranslate2 model folder ``out_dir``.

    quantization: the weight type CTranslate2 stores (``float32``, ``int8``,
        ``int8_float32``, ... see :data:`QUANTIZATIONS`).
    force: replace ``out_dir`` if it exists.
    """
    import torch

    from transduce.export.whisper import export_whisper, is_whisper
    from transduce.inference import Predictor, read_model_config

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    cfg = read_model_config(model_dir)
    whisper = is_whisper(cfg)
    if not whisper:
        check_exportable(cfg, str(model_dir))
    if quantization not in QUANTIZATIONS:
        raise TransduceError(
            f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)}"
        )
    check_output(out_dir, [model_dir])
    if out_dir.exists() and not force:
        raise TransduceError(f"--out {out_dir} already exists; pass --force to replace it")
    _import_ctranslate2()
    if whisper:  # CTranslate2's WhisperSpec, for faster-whisper
        build_whisper = export_whisper(model_dir, cfg, quantization)
        replace_folder(
            out_dir, build_whisper, force=force, is_own=is_export_folder, kind="CTranslate2 export"
        )
        return out_dir
    predictor = Predictor.load(model_dir)
    task = predictor.task
    with torch.no_grad():
        spec = build_spec(predictor.model, cfg, vocabulary(task.src_tok), vocabulary(task.tgt_tok))
    spec.validate()
    spec.optimize(quantization=quantization)

    def build(tmp: Path) -> None:
        spec.save(str(tmp))
        write_side_folder(tmp, model_dir, task, quantization)

    replace_folder(out_dir, build, force=force, is_own=is_export_folder, kind="CTranslate2 export")
    return out_dir


# --------------------------------------------------------------------------------------
# decoding


@dataclass
class CT2Hypothesis:
    """tokens: output ids without bos/eos; score: CTranslate2's (length-normalized) score."""

    tokens: list[int]
    score: float


class CT2Translator:
    """Decode with an exported CTranslate2 folder; tokenizing is the model's own task.

    inter_threads: batches decoded in parallel (CTranslate2 workers).
    intra_threads: threads per batch (0 = CTranslate2's default). On a 2-core machine
        1 thread x 2 workers is fastest (see the peer benchmarks).
    compute_type: CTranslate2's compute type; ``default`` keeps the exported weights.
    """

    # per batch: batch size x beam x maximum output length, as Predictor.max_work
    max_work: int = DEFAULT_MAX_WORK

    def __init__(
        self,
        directory: str | Path,
        device: str = "cpu",
        inter_threads: int = 2,
        intra_threads: int = 1,
        compute_type: str = "default",
    ) -> None:
        from transduce.inference import read_model_config
        from transduce.tasks import build_task

        directory = Path(directory)
        side = directory / "transduce"
        if not (directory / "model.bin").is_file() or not side.is_dir():
            raise TransduceError(
                f"{directory} is not a CTranslate2 export of a transduce model "
                "(make one with: transduce export MODEL_DIR --format ctranslate2 --out DIR)"
            )
        ctranslate2 = _import_ctranslate2()
        self.cfg = read_model_config(side)
        if self.cfg.task not in TEXT_TASKS:
            raise TransduceError(
                f"{directory} is a CTranslate2 export of a {self.cfg.task} model; --engine "
                "ctranslate2 decodes text models. Run a Whisper export with faster-whisper "
                "(WhisperModel(DIR)) or the torch model it was exported from"
            )
        self.task = build_task(self.cfg)
        self.task.load(side)
        self.src_vocab = vocabulary(self.task.src_tok)
        tgt_vocab = vocabulary(self.task.tgt_tok)
        self.tgt_index = {t: i for i, t in enumerate(tgt_vocab)}
        device, _, index = device.partition(":")
        try:
            self.translator = ctranslate2.Translator(
                str(directory),
                device=device,
                device_index=int(index or 0),
                compute_type=compute_type,
                inter_threads=inter_threads,
                intra_threads=intra_threads,
            )
        except (RuntimeError, ValueError, OSError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise TransduceError(
                f"{directory}: CTranslate2 cannot load this export ({reason}); export the "
                "model again with transduce export"
            ) from None

    def decode_config(self, **options: Any):
        """The saved decode settings with the given options (None = keep) replaced, checked
        as the torch engine checks them (bounds, nbest <= beam, min_len <= max length)."""
        from transduce.inference import check_task_options, resolve_decode_config

        return check_task_options(self.task, resolve_decode_config(self.cfg.decode, options))

    def source_ids(self, inputs: list) -> list[list[int]]:
        """Token ids of each input, as transduce's task encodes them (truncation included)."""
        src, mask = self.task.encode_inputs(inputs)
        return [row[m].tolist() for row, m in zip(src, mask)]

    def hypotheses(self, inputs: list, dcfg: Any) -> list[list[CT2Hypothesis]]:
        """Decode ``inputs`` in length-sorted batches; results keep the input order."""
        if dcfg.mode != "attention":
            raise TransduceError(f"decoding mode {dcfg.mode!r} is not available in CTranslate2")
        ids = self.source_ids(inputs) if inputs else []
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        options = dict(
            beam_size=max(dcfg.beam, 1) if not dcfg.sampling else 1,
            num_hypotheses=max(dcfg.nbest, 1),
            length_penalty=dcfg.len_penalty,
            min_decoding_length=dcfg.min_len,
            no_repeat_ngram_size=dcfg.no_repeat_ngram,
            repetition_penalty=dcfg.repetition_penalty,
            coverage_penalty=dcfg.coverage_penalty,
            max_input_length=0,  # the task truncated already
            return_scores=True,
        )
        if dcfg.sampling:
            options.update(
                sampling_topk=dcfg.top_k if dcfg.top_k > 0 else 0,
                sampling_topp=dcfg.top_p,
                sampling_temperature=dcfg.temperature,
            )
        from transduce.inference import check_batch_work

        batches = [order[i : i + dcfg.batch_size] for i in range(0, len(order), dcfg.batch_size)]
        for idx in batches:  # the cost of every batch is known before any decoding starts
            check_batch_work([len(ids[i]) for i in idx], dcfg, self.max_work)
        jobs = []
        for idx in batches:
            longest = max(len(ids[i]) for i in idx)
            max_len = max(int(dcfg.max_len_a * longest + dcfg.max_len_b), 1)
            batch = [[self.src_vocab[t] for t in ids[i]] for i in idx]
            # asynchronous: each batch goes to a free worker (inter_threads of them)
            results = self.translator.translate_batch(
                batch, max_decoding_length=max_len, asynchronous=True, **options
            )
            jobs.append((idx, results))
        out: list[list[CT2Hypothesis]] = [[] for _ in inputs]
        for idx, results in jobs:
            for i, result in zip(idx, results):
                r = result.result()
                out[i] = [
                    CT2Hypothesis([self.tgt_index[t] for t in tokens], float(score))
                    for tokens, score in zip(r.hypotheses, r.scores)
                ]
        return out

    def predict(self, inputs: list, **options: Any) -> list[str] | list[list[str]]:
        """Like :meth:`transduce.inference.Predictor.predict`: one string per input, or
        ``nbest`` strings when nbest > 1."""
        from transduce.inference import predict_pieces

        dcfg = self.decode_config(**options)
        return predict_pieces(self.task, list(inputs), dcfg, lambda p: self.hypotheses(p, dcfg))

    def predict_stream(
        self, inputs: Iterable, chunk: int = 256, **options: Any
    ) -> Iterator[str | list[str]]:
        """Yield outputs in input order, reading ``chunk`` inputs at a time."""
        from transduce.inference import predict_in_chunks

        return predict_in_chunks(self.predict, inputs, chunk, **options)


__all__ = [
    "CT2Hypothesis",
    "CT2Translator",
    "QUANTIZATIONS",
    "build_spec",
    "check_exportable",
    "export_ctranslate2",
    "vocabulary",
]
