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

from transduce.config import Config, DecodeConfig, TransduceError, config_from_dict
from transduce.decoding import Hypothesis, beam_search, build_processors, greedy_search, sample
from transduce.models.quantize import PRECISIONS, apply_precision
from transduce.models.seq2seq import EncoderDecoder, build_model
from transduce.tasks import Task, build_task
from transduce.training.checkpoint import load_model_weights, save_model_weights


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
        raise TransduceError(f"model folder {directory} does not exist")
    path = directory / "config.json"
    if not path.is_file():
        raise TransduceError(
            f"{directory} is not a transduce model folder: it has no config.json "
            "(point at a run's best/ or last/ folder)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TransduceError(f"{path} is corrupt: {e}") from None
    return config_from_dict(raw, where=str(path))


class Predictor:
    """A loaded model plus its task: ``predict(inputs) -> outputs``."""

    def __init__(
        self,
        model: EncoderDecoder,
        task: Task,
        cfg: Config,
        device: str = "cpu",
        precision: str = "fp32",
    ):
        """precision: ``fp32``, or ``int8`` (dynamic int8 Linear/LSTM/GRU layers, CPU only;
        see :mod:`transduce.models.quantize`)."""
        if precision not in PRECISIONS:
            raise TransduceError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        if precision != "fp32" and torch.device(device).type != "cpu":
            raise TransduceError(f"precision {precision} runs on the CPU only, not {device}")
        self.model = apply_precision(model.to(device).eval(), precision)
        self.task = task
        self.cfg = cfg
        self.device = torch.device(device)
        self.precision = precision

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", precision: str = "fp32") -> Predictor:
        directory = Path(directory)
        cfg = read_model_config(directory)
        task = build_task(cfg)
        task.load(directory)
        model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
        load_model_weights(model, directory / "model.safetensors")
        return cls(model, task, cfg, device, precision)

    def decode_config(self, **options: Any) -> DecodeConfig:
        """The saved decode settings with the given options (None = keep) replaced."""
        given = {k: v for k, v in options.items() if v is not None}
        names = {f.name for f in dataclasses.fields(DecodeConfig)}
        unknown = set(given) - names
        if unknown:
            raise TransduceError(f"unknown decoding option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self.cfg.decode, **given)

    def hypotheses(
        self, inputs: list, dcfg: DecodeConfig, return_attention: bool = False
    ) -> list[list[Hypothesis]]:
        """Decode ``inputs`` in length-sorted batches; results keep the input order."""
        order = sorted(range(len(inputs)), key=lambda i: self.task.input_lengths([inputs[i]])[0])
        results: list[list[Hypothesis]] = [[] for _ in inputs]
        generator = torch.Generator().manual_seed(self.cfg.train.seed) if dcfg.sampling else None
        for start in range(0, len(order), dcfg.batch_size):
            idx = order[start : start + dcfg.batch_size]
            src, src_mask = self.task.encode_inputs([inputs[i] for i in idx])
            with torch.inference_mode():
                hyps = search(
                    self.model,
                    src.to(self.device),
                    src_mask.to(self.device),
                    dcfg,
                    return_attention=return_attention,
                    generator=generator,
                    **self.task.search_options(len(idx)),
                )
            for i, h in zip(idx, hyps):
                results[i] = h
        return results

    def predict(self, inputs: list, **options: Any) -> list[str] | list[list[str]]:
        """Decode a list of inputs. Options: beam, nbest, max_len_a, max_len_b, min_len,
        len_penalty, sampling, temperature, top_k, top_p, batch_size.

        Returns one string per input, or a list of ``nbest`` strings when nbest > 1.
        """
        dcfg = self.decode_config(**options)
        # Each input is decoded as the pieces task.split_input cuts it into (one piece,
        # except for long recordings); piece outputs are joined with spaces, rank r of
        # the n-best with rank r.
        pieces, owner = [], []
        for i, item in enumerate(inputs):
            for piece in self.task.split_input(item):
                pieces.append(piece)
                owner.append(i)
        hyps = self.hypotheses(pieces, dcfg)
        ranks = max(dcfg.nbest, 1)
        texts: list[list[list[str]]] = [[[] for _ in range(ranks)] for _ in inputs]
        for i, piece, hs in zip(owner, pieces, hyps):
            outs = [self.task.output_text(h.tokens, piece) for h in hs]
            for r in range(ranks):
                texts[i][r].append(outs[min(r, len(outs) - 1)] if outs else "")
        joined = [[" ".join(t for t in rank if t) for rank in item] for item in texts]
        return joined if dcfg.nbest > 1 else [j[0] for j in joined]

    def predict_stream(
        self, inputs: Iterable, chunk: int = 256, **options: Any
    ) -> Iterator[str | list[str]]:
        """Yield outputs in input order, reading ``chunk`` inputs at a time."""
        return predict_in_chunks(self.predict, inputs, chunk, **options)


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


def load(directory: str | Path, device: str = "cpu", precision: str = "fp32") -> Predictor:
    """``transduce.load("runs/x/best", precision="int8")`` -> a :class:`Predictor`."""
    return Predictor.load(directory, device, precision)
