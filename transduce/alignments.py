"""Alignments: for each input, the best output and what the decoder attended to while
writing each of its tokens. ``transduce predict --attention-plot`` draws them
(:func:`draw`); ``POST /predict`` with ``"attention": true`` returns them as JSON
(:meth:`Alignment.to_json`).

The weights come from the searches' own ``return_attention`` path (one ``(T, S)``
matrix per hypothesis: for the Transformer, the last layer's cross-attention averaged
over heads). Another layer or head, and the copy gate of pointer-generator models, come
from re-reading the hypothesis with teacher forcing (:mod:`transduce.models.attention_maps`).
Speech models with a CTC head also get the CTC best path per encoder frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transduce.config import DecodeConfig, TransduceError
from transduce.evaluation import plots
from transduce.inference import Predictor, split_pieces
from transduce.models.attention_maps import decoder_maps, has_heads, select


@dataclass
class Alignment:
    """One input's best output and its alignment.

    kind: ``text``, ``image`` or ``audio`` (what the source is).
    text: the output text; tokens: one label per output token.
    weights: ``(T, S)`` attention over the source positions (text: ``source`` tokens;
        image: the encoder's grid cells, row-major; audio: encoder frames), or None
        when the decoding had none (CTC greedy, or a decoder without attention).
    source: text: the source tokens; image: ``uint8 (3, H, W)``; audio: log-mel
        features ``(N, n_mels)``.
    p_gen: ``(T,)`` copy models: probability of generating rather than copying.
    ctc: audio with a CTC head: per encoder frame, the label the best path emits
        there (None for blank and repeats).
    what: which attention is shown, e.g. ``"layer 2 of 2, mean of 4 heads"``.
    """

    kind: str
    text: str
    tokens: list[str]
    weights: Tensor | None
    source: Any
    p_gen: Tensor | None = None
    ctc: list[str | None] | None = None
    what: str = ""

    def to_json(self, digits: int = 3) -> dict[str, Any]:
        """Rounded weights per output token, plus what the page needs to draw them."""
        out: dict[str, Any] = {
            "tokens": self.tokens,
            "weights": plots.rounded(self.weights, digits),
            "what": self.what,
        }
        if self.kind == "text":
            out["source"] = list(self.source)
        elif self.kind == "image" and self.weights is not None:
            side = int(round(self.weights.size(1) ** 0.5))
            out["grid"] = [side, side] if side * side == self.weights.size(1) else None
        elif self.kind == "audio":
            out["seconds"] = round(self.source.size(0) / 100.0, 2)  # 10 ms frames
            if self.ctc is not None:
                out["ctc"] = self.ctc
        if self.p_gen is not None:
            out["p_gen"] = [round(float(p), digits) for p in self.p_gen]
        return out


def input_kind(predictor: Predictor) -> str:
    task = predictor.task
    if task.name == "captioning":
        return "image"
    if task.name == "speech":
        return "audio"
    return "text"


def alignments(
    predictor: Predictor,
    inputs: list,
    dcfg: DecodeConfig,
    layer: int | None = None,
    head: int | None = None,
    **bounds,
) -> list[Alignment]:
    """Decode ``inputs`` (best hypothesis each) and collect their alignments.

    ``bounds``: ``should_stop`` and ``budget`` as :meth:`Predictor.hypotheses` takes them."""
    task, model = predictor.task, predictor.model
    dcfg = dataclasses.replace(dcfg, nbest=1)
    kind = input_kind(predictor)
    if kind == "text" and dcfg.split_sentences:
        # each sentence decoded alone, as predict decodes it; an input's alignment is its
        # sentences' alignments side by side (no sentence attends to another's source)
        pieces, owner = split_pieces(task, inputs, dcfg)
        whole = dataclasses.replace(dcfg, split_sentences="")
        groups: list[list[Alignment]] = [[] for _ in inputs]
        for a, i in zip(alignments(predictor, pieces, whole, layer, head, **bounds), owner):
            groups[i].append(a)
        return [_joined(group) for group in groups]
    decoder = model.decoder
    shape = has_heads(decoder)
    if (layer is not None or head is not None) and shape is None:
        raise TransduceError(
            "--attention-layer/--attention-head need a Transformer decoder; this model's "
            f"decoder ({type(decoder).__name__}) has a single attention"
        )
    # Teacher forcing reads what the search did not return: another layer or head, the
    # copy gate, or the attention of joint CTC/attention decoding (which keeps none).
    need_maps = layer is not None or head is not None or _copies(decoder)
    need_maps = need_maps or (dcfg.mode == "joint" and _attends(decoder))
    ctc_head = getattr(model.encoder, "ctc_head", None) if kind == "audio" else None
    hyps = [h[0] for h in predictor.hypotheses(inputs, dcfg, return_attention=True, **bounds)]
    out = []
    for item, h in zip(inputs, hyps):
        weights, p_gen, ctc = h.attention, None, None
        what = _describe(shape, layer, head)
        if need_maps or ctc_head is not None:
            src, src_mask = task.encode_inputs([item])
            with torch.inference_mode():
                enc_out = model.encode(src.to(predictor.device), src_mask.to(predictor.device))
            if need_maps and dcfg.mode != "ctc_greedy":
                maps = decoder_maps(model, enc_out, h.tokens)
                try:
                    weights = select(maps, layer, head)
                except ValueError as e:
                    raise TransduceError(str(e)) from None
                p_gen = maps.p_gen
            if ctc_head is not None:
                ctc = _ctc_path(model, enc_out, task)
        if weights is None:
            what = "CTC best path" if ctc is not None else "no attention (this decoding has none)"
        source = task.source_view(item)
        if kind == "text" and weights is not None and weights.size(1) != len(source):
            raise TransduceError(
                f"alignment: {weights.size(1)} attention columns but {len(source)} source "
                "tokens; the task's source_view does not match its encode_inputs"
            )
        text = task.output_text(h.tokens, item)
        labels = task.output_tokens(h.tokens, item)
        out.append(Alignment(kind, text, labels, weights, source, p_gen, ctc, what))
    return out


def _joined(parts: list[Alignment]) -> Alignment:
    """Text alignments of consecutive sentences as one: outputs and sources one after
    the other, attention block-diagonal."""
    if len(parts) == 1:
        return parts[0]
    weights = None
    if all(a.weights is not None for a in parts):
        weights = torch.block_diag(*[a.weights for a in parts])
    p_gen = None
    if all(a.p_gen is not None for a in parts):
        p_gen = torch.cat([a.p_gen for a in parts])
    return Alignment(
        "text",
        " ".join(a.text for a in parts if a.text),
        [t for a in parts for t in a.tokens],
        weights,
        [t for a in parts for t in a.source],
        p_gen,
        None,
        parts[0].what,
    )


def _copies(decoder) -> bool:
    return getattr(decoder, "copy_gate", None) is not None


def _attends(decoder) -> bool:
    """Whether the decoder has attention (an RNN decoder with ``attention: none`` has not)."""
    return has_heads(decoder) is not None or getattr(decoder, "attention", None) is not None


def _describe(shape: tuple[int, int] | None, layer: int | None, head: int | None) -> str:
    if shape is None:
        return "decoder attention"
    L, H = shape
    n = (L - 1 if layer is None else layer % L) + 1
    heads = f"mean of {H} heads" if head is None else f"head {head % H + 1} of {H}"
    return f"cross-attention, layer {n} of {L}, {heads}"


def _ctc_path(model, enc_out, task) -> list[str | None]:
    """Per real encoder frame: the label the CTC best path emits first there, else None."""
    from transduce.models.audio import BLANK_ID, ctc_log_probs

    with torch.inference_mode():
        ids = ctc_log_probs(model, enc_out)[0].argmax(-1).tolist()
    n = int(enc_out.mask[0].sum())
    path: list[str | None] = []
    for i, t in enumerate(ids[:n]):
        emits = t != BLANK_ID and (i == 0 or t != ids[i - 1])
        path.append(task.output_tokens([t], None)[0] if emits else None)
    return path


def draw(items: list[Alignment], path: str | Path) -> None:
    """Draw every alignment, one under the other, into ``path`` (PNG, JPEG, ...)."""
    pictures = []
    images = [a for a in items if a.kind == "image"]
    if images:  # captioning keeps its one-row-per-picture layout
        rows = [(a.source, a.tokens, a.weights) for a in images]
        pictures.append(plots.image_figure(rows).image)
    for a in items:
        title = f"{a.text}   [{a.what}]"
        if a.kind == "text":
            if a.weights is None:
                raise TransduceError(f"--attention-plot: the model has no attention ({a.what})")
            pictures.append(plots.heatmap(a.source, a.tokens, a.weights, a.p_gen, title).image)
        elif a.kind == "audio":
            pictures.append(plots.speech_figure(a.source, a.tokens, a.weights, a.ctc, title).image)
    figure = plots.stack(pictures)
    try:
        figure.save(path)
    except (OSError, ValueError) as e:
        raise TransduceError(f"cannot write the attention plot {path}: {e}") from None


__all__ = ["Alignment", "alignments", "draw", "input_kind"]
