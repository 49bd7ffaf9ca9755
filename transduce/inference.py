"""Load a saved model folder and decode with it; used by the CLI, the server and Python.

A saved model is a folder holding ``config.json`` (the full resolved config),
``model.safetensors`` and the tokenizer files. Loading never unpickles code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from transduce import memory
from transduce.config import (
    DEFAULT_MAX_WORK,
    DEVICE_PATTERN,
    DEVICE_WHAT,
    Config,
    ConfigError,
    DecodeConfig,
    LimitError,
    TransduceError,
    check_value,
    config_from_dict,
)
from transduce.decoding import Hypothesis, beam_search, build_processors, greedy_search, sample
from transduce.models.base import EncoderOutput
from transduce.models.quantize import PRECISIONS, apply_precision
from transduce.models.seq2seq import EncoderDecoder, build_model
from transduce.tasks import Task, build_task
from transduce.training.checkpoint import load_model_weights, save_model_weights


class DecodeStopped(TransduceError):
    """A decode stopped before its end: past its deadline, or the program is shutting down."""


class _Stoppable:
    """The model as the searches see it, asking ``should_stop()`` before each decoder step.

    Every search (greedy, beam, sampling, CTC/joint) calls ``model.decode`` once per
    output step, so this bounds how long a stop request waits, without the searches
    knowing about deadlines. ``should_stop`` raises (e.g. :class:`DecodeStopped`) to stop.
    """

    def __init__(self, model: EncoderDecoder, should_stop: Callable[[], None]) -> None:
        self._model = model
        self._should_stop = should_stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self._should_stop()
        return self._model.encode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        self._should_stop()
        return self._model.decode(*args, **kwargs)


class _KeepEncoded:
    """The model as the searches see it, keeping what each ``encode`` call returned (one
    call per batch in every search), so callers can reuse the encoder output."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.outputs: list = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        out = self._model.encode(*args, **kwargs)
        self.outputs.append(out)
        return out


def resolve_device(name: str, where: str = "--device") -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` -> a device that exists here."""
    import re

    if not isinstance(name, str) or not re.fullmatch(DEVICE_PATTERN, name):
        raise ConfigError(f"{where}: {name!r} is not a device; expected {DEVICE_WHAT}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{where}: '{name}' asked for, but this machine has no CUDA device "
                "(or this PyTorch build has no CUDA); use cpu"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: '{name}' asked for, but there are {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}: 'mps' asked for, but no MPS device is available; use cpu")
    return torch.device(name)


def decode_work(src_lens: Iterable[int], dcfg: DecodeConfig) -> int:
    """What decoding costs: (beam, or samples) x maximum output length, summed over inputs.

    The maximum length is ``a * source length + b`` (at least ``min_len``); it is the
    unit :class:`~transduce.config.ServeLimits` and ``--max-work`` bound.
    """
    width = max(dcfg.nbest, 1) if dcfg.sampling else max(dcfg.beam, 1)
    if dcfg.mode == "ctc_greedy":
        width = 1
    total = 0
    for n in src_lens:
        length = max(int(dcfg.max_len_a * n + dcfg.max_len_b), dcfg.min_len, 1)
        total += width * length
    return total


def search(
    model: EncoderDecoder,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    dcfg: DecodeConfig,
    return_attention: bool = False,
    generator: torch.Generator | None = None,
    prefix: list[list[int]] | None = None,
    processors: list | None = None,
) -> list[list[Hypothesis]]:
    """Run the search ``dcfg`` asks for; max length is ``a * source length + b``.

    prefix: a forced target prefix per sentence; processors: extra logit processors
    (both usually from :meth:`Task.search_options`, e.g. Whisper's prompt and
    suppressed tokens).

    ``no_repeat_ngram`` and ``repetition_penalty`` become logit processors for every
    search. ``coverage_penalty`` (beam search only; Wu et al. 2016) rescores the
    finished beam: ``score + beta * sum_i log(min(sum_t a_t,i, 1))`` over the real
    source positions ``i``, from the attention every attentional decoder returns.
    """
    src_lens = src_mask.sum(dim=1)
    max_len = (dcfg.max_len_a * src_lens.float() + dcfg.max_len_b).long().clamp(min=1)
    if dcfg.mode != "attention":  # speech: CTC greedy or joint CTC/attention beam search
        from transduce.decoding.ctc import ctc_search

        return ctc_search(model, src, src_mask, dcfg, max_len)
    processors = list(processors or []) + build_processors(
        no_repeat_ngram=dcfg.no_repeat_ngram, repetition_penalty=dcfg.repetition_penalty
    )
    common = dict(
        max_len=max_len,
        min_len=dcfg.min_len,
        return_attention=return_attention,
        processors=processors,
        prefix=prefix,
    )
    if dcfg.sampling:
        return sample(
            model,
            src,
            src_mask,
            temperature=dcfg.temperature,
            top_k=dcfg.top_k,
            top_p=dcfg.top_p,
            num_samples=max(dcfg.nbest, 1),
            generator=generator,
            **common,
        )
    if dcfg.beam <= 1:
        return greedy_search(model, src, src_mask, **common)
    nbest = min(dcfg.nbest, dcfg.beam)
    if dcfg.coverage_penalty:
        common.update(return_attention=True)
    results = beam_search(
        model,
        src,
        src_mask,
        beam_size=dcfg.beam,
        nbest=dcfg.beam if dcfg.coverage_penalty else nbest,
        len_penalty=dcfg.len_penalty,
        eos_in_length=dcfg.eos_in_length,
        **common,
    )
    if dcfg.coverage_penalty:
        results = [
            _rescore_coverage(hyps, dcfg.coverage_penalty, return_attention)[:nbest]
            for hyps in results
        ]
    return results


def _rescore_coverage(hyps: list[Hypothesis], beta: float, keep_attention: bool) -> list:
    """Add Wu et al.'s coverage penalty to each finished hypothesis and re-sort, best first."""
    out = []
    for h in hyps:
        score = h.score
        if h.attention is not None and h.attention.numel() > 0:
            coverage = h.attention.sum(0).clamp(min=1e-6, max=1.0)  # (S,)
            score += beta * float(coverage.log().sum())
        out.append(Hypothesis(h.tokens, score, h.attention if keep_attention else None))
    return sorted(out, key=lambda h: h.score, reverse=True)


def save_model_dir(directory: Path, model: EncoderDecoder, cfg: Config, task: Task) -> None:
    """Write a model folder; the old folder is replaced only once the new one is complete."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    save_model_weights(model, tmp / "model.safetensors")
    task.save(tmp)
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def read_model_config(directory: Path) -> Config:
    directory = Path(directory)
    if not directory.is_dir():
        why = "is a file, not a folder" if directory.exists() else "does not exist"
        raise TransduceError(f"model folder {directory} {why}")
    path = directory / "config.json"
    if (directory / "model.bin").is_file() and (directory / "transduce").is_dir():
        raise TransduceError(
            f"{directory} is a CTranslate2 export, not a transduce model folder: decode it "
            f"with `transduce predict {directory} --engine ctranslate2`"
        )
    if not path.is_file():
        raise TransduceError(
            f"{directory} is not a transduce model folder: it has no config.json "
            "(point at a run's best/ or last/ folder)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TransduceError(f"{path} is corrupt: {e}") from None
    if not isinstance(raw, dict):  # transduce writes every section, so null is corrupt too
        raise TransduceError(f"{path} is corrupt: expected an object of config sections")
    return config_from_dict(raw, where=str(path))


class DecodeBudgetError(LimitError):
    """Decoding would cost more than the budget allows (see :func:`decode_work`)."""


def resolve_decode_config(base: DecodeConfig, options: dict[str, Any]) -> DecodeConfig:
    """``base`` with ``options`` (None = keep) replaced, each checked against the bounds
    declared on DecodeConfig and the rules between fields: one check for every engine."""
    given = {k: v for k, v in options.items() if v is not None}
    names = {f.name for f in dataclasses.fields(DecodeConfig)}
    unknown = set(given) - names
    if unknown:
        raise TransduceError(f"unknown decoding option(s): {', '.join(sorted(unknown))}")
    for key, value in given.items():  # the bounds declared on DecodeConfig
        given[key] = check_value(DecodeConfig, key, value, key)
    dcfg = dataclasses.replace(base, **given)
    dcfg.check_together(where="decode")
    return dcfg


def check_task_options(task: Task, dcfg: DecodeConfig) -> DecodeConfig:
    """``dcfg`` if ``task`` can honour it: ``split_sentences`` is for tasks whose inputs
    are text made of sentences (translation)."""
    if dcfg.split_sentences and not task.splits_sentences:
        raise ConfigError(
            f"decode.split_sentences ({dcfg.split_sentences}) cuts text inputs into sentences, "
            f"which a {task.name} model does not read; leave it empty (--split-sentences off)",
            "decode.split_sentences",
        )
    return dcfg


def check_batch_work(lengths: list[int], dcfg: DecodeConfig, max_work: int) -> int:
    """The cost of one batch of sources of ``lengths`` (:func:`decode_work`); a
    :class:`DecodeBudgetError` when it is over ``max_work``."""
    work = decode_work(lengths, dcfg)
    if work > max_work:
        raise DecodeBudgetError(
            f"one batch of {len(lengths)} input(s) with beam {dcfg.beam} and max length "
            f"{dcfg.max_len_a} x source + {dcfg.max_len_b} (min {dcfg.min_len}) costs "
            f"{work:,} hypothesis-tokens, over the budget of {max_work:,} per "
            "batch (--max-work); lower --beam, --max-len or --batch-size"
        )
    return work


class Predictor:
    """A loaded model plus its task: ``predict(inputs) -> outputs``."""

    # per batch: batch size x beam x maximum output length (see decode_work)
    max_work: int = DEFAULT_MAX_WORK

    def __init__(
        self,
        model: EncoderDecoder,
        task: Task,
        cfg: Config,
        device: str = "cpu",
        precision: str = "fp32",
        keep_freed_memory: bool = False,
    ):
        """precision: ``fp32``, or ``int8`` (dynamic int8 Linear/LSTM/GRU layers, CPU only;
        see :mod:`transduce.models.quantize`).
        keep_freed_memory: on the CPU, make this process reuse freed large blocks
        (:func:`transduce.memory.keep_freed_memory`, process-wide and one-way): a beam
        step's ``(batch x beam, vocabulary)`` tensors otherwise come back from the kernel
        as fresh zeroed pages every step. ``transduce predict`` and ``evaluate`` turn it
        on (processes that only decode); off by default here, because a library should
        not change how its caller's process allocates memory (docs/decoding.md)."""
        if precision not in PRECISIONS:
            raise TransduceError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.device = resolve_device(str(device))
        if precision != "fp32" and self.device.type != "cpu":
            raise TransduceError(f"precision {precision} runs on the CPU only, not {device}")
        if keep_freed_memory and self.device.type == "cpu":
            memory.keep_freed_memory()
        self.model = apply_precision(model.to(self.device).eval(), precision)
        self.task = task
        self.cfg = cfg
        self.precision = precision

    @classmethod
    def load(
        cls,
        directory: str | Path,
        device: str = "cpu",
        precision: str = "fp32",
        keep_freed_memory: bool = False,
    ) -> Predictor:
        directory = Path(directory)
        resolve_device(str(device))  # before the work of loading
        cfg = read_model_config(directory)
        task = build_task(cfg)
        task.load(directory)
        model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
        load_model_weights(model, directory / "model.safetensors")
        return cls(model, task, cfg, device, precision, keep_freed_memory)

    def decode_config(self, **options: Any) -> DecodeConfig:
        """The saved decode settings with the given options (None = keep) replaced."""
        return check_task_options(self.task, resolve_decode_config(self.cfg.decode, options))

    def hypotheses(
        self,
        inputs: list,
        dcfg: DecodeConfig,
        return_attention: bool = False,
        should_stop: Callable[[], None] | None = None,
        budget: int | None = None,
        encoded: list | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode ``inputs`` in length-sorted batches; results keep the input order.

        Each batch's cost (:func:`decode_work`) must stay within ``self.max_work``, all
        of them together within ``budget`` (when given); ``should_stop()`` is called
        before every decoder step and may raise to stop. ``encoded``, when given, is
        filled with each input's encoder output (an ``EncoderOutput`` of batch 1:
        memory ``(1, S, D)`` and mask, without ``final_state``), in input order.
        """
        lengths = self.task.input_lengths(inputs)
        order = sorted(range(len(inputs)), key=lambda i: lengths[i])
        results: list[list[Hypothesis]] = [[] for _ in inputs]
        generator = torch.Generator().manual_seed(self.cfg.train.seed) if dcfg.sampling else None
        model = self.model if should_stop is None else _Stoppable(self.model, should_stop)
        # encode every batch first, so that the cost is known before any decoding starts
        batches, total = [], 0
        for start in range(0, len(order), dcfg.batch_size):
            idx = order[start : start + dcfg.batch_size]
            src, src_mask = self.task.encode_inputs([inputs[i] for i in idx])
            total += check_batch_work(src_mask.sum(dim=1).tolist(), dcfg, self.max_work)
            batches.append((idx, src, src_mask))
        if budget is not None and total > budget:
            raise DecodeBudgetError(
                f"decoding {len(inputs)} input(s) with beam {dcfg.beam} and max length "
                f"{dcfg.max_len_a} x source + {dcfg.max_len_b} (min {dcfg.min_len}) costs "
                f"{total:,} hypothesis-tokens, over the budget of {budget:,} per request "
                "(--max-work); send fewer inputs, a smaller beam or a smaller max_len"
            )
        if encoded is not None:
            encoded[:] = [None] * len(inputs)
        for idx, src, src_mask in batches:
            keep = _KeepEncoded(model) if encoded is not None else model
            with torch.inference_mode():
                hyps = search(
                    keep,
                    src.to(self.device),
                    src_mask.to(self.device),
                    dcfg,
                    return_attention=return_attention,
                    generator=generator,
                    **self.task.search_options(len(idx)),
                )
            for i, h in zip(idx, hyps):
                results[i] = h
            if encoded is not None:
                (out,) = keep.outputs
                for b, i in enumerate(idx):
                    encoded[i] = EncoderOutput(out.memory[b : b + 1], out.mask[b : b + 1], None)
        return results

    def predict(
        self,
        inputs: list,
        should_stop: Callable[[], None] | None = None,
        budget: int | None = None,
        **options: Any,
    ) -> list[str] | list[list[str]]:
        """Decode a list of inputs. Options: beam, nbest, max_len_a, max_len_b, min_len,
        len_penalty, sampling, temperature, top_k, top_p, batch_size.

        Returns one string per input, or a list of ``nbest`` strings when nbest > 1.
        ``should_stop`` and ``budget`` (see :meth:`hypotheses`) bound its time and cost.
        """
        dcfg = self.decode_config(**options)
        return predict_pieces(
            self.task,
            inputs,
            dcfg,
            lambda pieces: self.hypotheses(pieces, dcfg, should_stop=should_stop, budget=budget),
        )

    def transcribe(self, inputs: list, words: bool = True, **options: Any) -> list:
        """Speech: one :class:`~transduce.timestamps.Transcript` per audio file (text,
        duration, segments with start/end seconds and word times); options as
        :meth:`predict` (nbest 1). See :func:`transduce.timestamps.transcribe`."""
        from transduce.timestamps import transcribe

        return transcribe(self, inputs, words=words, **options)

    def predict_stream(
        self, inputs: Iterable, chunk: int = 256, **options: Any
    ) -> Iterator[str | list[str]]:
        """Yield outputs in input order, reading ``chunk`` inputs at a time."""
        return predict_in_chunks(self.predict, inputs, chunk, **options)


def split_pieces(task: Task, inputs: list, dcfg: DecodeConfig) -> tuple[list, list[int]]:
    """Every piece ``task.split_input`` cuts ``inputs`` into, in order, and for each the
    index of the input it came from."""
    pieces, owner = [], []
    for i, item in enumerate(inputs):
        for piece in task.split_input(item, dcfg):
            pieces.append(piece)
            owner.append(i)
    return pieces, owner


def predict_pieces(
    task: Task, inputs: list, dcfg: DecodeConfig, decode: Callable[[list], list]
) -> list[str] | list[list[str]]:
    """Texts for ``inputs``: each decoded as the pieces ``task.split_input`` cuts it into
    (one piece, except for long recordings and with ``decode.split_sentences``) by
    ``decode(pieces) -> hypotheses per piece``; piece outputs are joined with spaces,
    rank r of the n-best with rank r. One string per input, or ``nbest`` strings."""
    pieces, owner = split_pieces(task, inputs, dcfg)
    hyps = decode(pieces)
    ranks = max(dcfg.nbest, 1)
    texts: list[list[list[str]]] = [[[] for _ in range(ranks)] for _ in inputs]
    for i, piece, hs in zip(owner, pieces, hyps):
        outs = [task.output_text(h.tokens, piece) for h in hs]
        for r in range(ranks):
            texts[i][r].append(outs[min(r, len(outs) - 1)] if outs else "")
    joined = [[" ".join(t for t in rank if t) for rank in item] for item in texts]
    return joined if dcfg.nbest > 1 else [j[0] for j in joined]


def predict_in_chunks(
    predict: Callable[..., list], inputs: Iterable, chunk: int, **options: Any
) -> Iterator:
    """Feed ``inputs`` to ``predict`` ``chunk`` at a time; yield outputs in input order."""
    buffer: list = []
    for item in inputs:
        buffer.append(item)
        if len(buffer) >= chunk:
            yield from predict(buffer, **options)
            buffer = []
    if buffer:
        yield from predict(buffer, **options)


def load(
    directory: str | Path,
    device: str = "cpu",
    precision: str = "fp32",
    keep_freed_memory: bool = False,
) -> Predictor:
    """``transduce.load("runs/x/best", precision="int8")`` -> a :class:`Predictor`."""
    return Predictor.load(directory, device, precision, keep_freed_memory)
