"""Times for speech recognition output: segments, words, and subtitle files.

:func:`transcribe` decodes recordings as :meth:`Predictor.predict` does (long ones cut
at quiet points into pieces of at most ``audio.max_seconds``; Whisper reads each piece
as one 30-second window) and returns, per recording, a :class:`Transcript` whose
segments carry times in seconds from the start of the recording:

* **Segments** come from the pieces: a piece's offset in the recording is known from
  the cut, so every time inside it is shifted by it. With word times, a piece is
  further split after each sentence end (``.``, ``?``, ``!``) and a segment runs from
  its first word's start to its last word's end; without them, a segment is a whole
  piece (its cut points).
* **Words** (``Transcript.word_times`` says from what):

  - *Whisper* (tokenizer ``whisper``): cross-attention alignment. The decoder re-reads
    the best hypothesis (teacher forcing); the cross-attention of the alignment heads
    (``alignment_heads`` of the imported CTranslate2 config: the heads whose weights
    follow the speech; without them, every head of the last half of the decoder
    layers) over the piece's encoder frames is normalized per frame over the text
    tokens, median-filtered over 7 frames and averaged over heads; dynamic time
    warping over tokens x frames then gives each token its first frame (20 ms per
    encoder frame). A word starts at its first token's frame and ends where the next
    word (or end of text) starts.
  - *CTC models* (an encoder with a CTC head, decoding ``ctc_greedy`` or ``joint``):
    the Viterbi alignment of the output tokens through the CTC log-probs (for CTC
    greedy output this is the best path itself); a token spans the frames the path
    spends on it, frame shift = the front end's 10 ms hop x the encoder's subsampling.
  - Attention-only models give no word times (segments only).

:func:`srt` and :func:`vtt` write one cue per segment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from transduce.config import TransduceError
from transduce.data.tokenizers import EOS_ID

FORMATS = ("text", "json", "srt", "vtt")
WHISPER_FRAME_SECONDS = 0.02  # one encoder frame: two 10 ms mel frames
MEDIAN_WIDTH = 7
SENTENCE_END = re.compile(r"[.?!][\"')\]]*$")


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the recording
    end: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "words": [
                {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
                for w in self.words
            ],
        }


@dataclass
class Transcript:
    """One recording: ``text`` is what ``predict`` prints; ``duration`` in seconds;
    ``word_times``: how word times were found (empty when there are none)."""

    text: str
    duration: float
    segments: list[Segment]
    word_times: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "duration": round(self.duration, 3),
            "segments": [s.to_json() for s in self.segments],
            "word_times": self.word_times or None,
        }


# ----------------------------------------------------------------------------- words


def group_words(ids: Sequence[int], detokenize: Callable[[list[int]], str]) -> list[list[int]]:
    """Positions of ``ids`` grouped into the words of ``detokenize(ids)``.

    Works for any tokenizer: token ``k`` opens a new word when the text of
    ``ids[:k + 1]`` has more words than that of ``ids[:k]``; tokens adding to the
    last word (the rest of a word, punctuation after it) join it; tokens adding only
    whitespace (a character model's space) belong to no word.
    """
    groups: list[list[int]] = []
    count, before = 0, ""
    for k in range(len(ids)):
        text = detokenize(list(ids[: k + 1])).rstrip()
        n = len(text.split())
        if n > count:
            groups.append([k])
            count = n
        elif groups and text != before:
            groups[-1].append(k)
        before = text
    return groups


def ctc_align(log_probs: Tensor, tokens: Sequence[int], blank: int = 0) -> list[tuple[int, int]]:
    """Viterbi alignment of ``tokens`` through CTC ``log_probs`` ``(T, V)``.

    Returns, per token, its first and last frame on the most likely path that
    collapses to ``tokens``; ``[]`` when no path fits (fewer frames than needed).
    """
    L, T = len(tokens), log_probs.size(0)
    if L == 0:
        return []
    ext = torch.full((2 * L + 1,), blank, dtype=torch.long)
    ext[1::2] = torch.as_tensor(list(tokens), dtype=torch.long)
    S = ext.numel()
    lp = log_probs.float()[:, ext]  # (T, S)
    skip = torch.zeros(S, dtype=torch.bool)  # may come from s - 2 (a different label)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    neg = torch.tensor(-float("inf"))
    score = torch.full((S,), -float("inf"))
    score[:2] = lp[0, :2]
    back = torch.zeros(T, S, dtype=torch.long)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, T):
        one = torch.cat([neg[None], score[:-1]])
        two = torch.where(skip, torch.cat([neg.repeat(2), score[:-2]]), neg)
        best, step = torch.stack([score, one, two]).max(dim=0)
        back[t] = step
        score = best + lp[t]
    end = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    if not torch.isfinite(score[end]):
        return []
    states = [0] * T
    s = end
    for t in range(T - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    spans: list[list[int]] = [[-1, -1] for _ in range(L)]
    for t, s in enumerate(states):
        if s % 2 == 1:
            k = s // 2
            spans[k][0] = t if spans[k][0] < 0 else spans[k][0]
            spans[k][1] = t
    return [(a, b) for a, b in spans]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path from ``(0, 0)`` to ``(N-1, M-1)`` through ``cost (N, M)``
    (steps right, down, diagonal). Returns the path's row and column indices."""
    N, M = cost.shape
    acc = np.full((N, M), np.inf)
    prev = np.full(M, np.inf)  # the row above (row -1: only (-1, -1) = 0)
    for i in range(N):
        c = cost[i].astype(np.float64)
        diag = np.concatenate([[0.0 if i == 0 else np.inf], prev[:-1]])
        enter = np.minimum(diag, prev)  # entering row i at column j from above
        # acc[i, j] = c[j] + min(enter[j], acc[i, j-1]) = C[j] + min_{k<=j}(enter[k] - C[k-1])
        csum = np.cumsum(c)
        acc[i] = csum + np.minimum.accumulate(enter - (csum - c))
        prev = acc[i]
    rows, cols = [N - 1], [M - 1]
    i, j = N - 1, M - 1
    while i > 0 or j > 0:
        options = [
            (acc[i - 1, j - 1] if i > 0 and j > 0 else np.inf, i - 1, j - 1),
            (acc[i - 1, j] if i > 0 else np.inf, i - 1, j),
            (acc[i, j - 1] if j > 0 else np.inf, i, j - 1),
        ]
        _, i, j = min(options, key=lambda o: o[0])
        rows.append(i)
        cols.append(j)
    return np.array(rows[::-1]), np.array(cols[::-1])


def median_filter(x: Tensor, width: int) -> Tensor:
    """Median over a window of ``width`` (odd) along the last axis, edges reflected."""
    if x.size(-1) <= width // 2:
        return x
    pad = width // 2
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(-1).values.reshape(shape)


def whisper_alignment_heads(tok: Any, layers: int, heads: int) -> tuple[list[tuple[int, int]], str]:
    """The imported model's alignment heads, or every head of the last half of layers."""
    pairs = [(int(a), int(b)) for a, b in tok.meta.get("alignment_heads", [])]
    if pairs and all(0 <= a < layers and 0 <= b < heads for a, b in pairs):
        return pairs, f"cross-attention DTW, {len(pairs)} alignment heads"
    pairs = [(a, b) for a in range(layers // 2, layers) for b in range(heads)]
    return pairs, f"cross-attention DTW, all heads of decoder layers {layers // 2 + 1}-{layers}"


def token_start_frames(weights: Tensor) -> np.ndarray:
    """``weights (A, N, F)``: A heads' attention of N token rows over F frames -> the
    first frame of each row on the DTW path (Whisper's alignment)."""
    w = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    if w.size(1) > 1:  # how much more than other tokens each row looks at a frame
        std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
        w = (w - mean) / std.clamp(min=1e-8)
    matrix = median_filter(w, MEDIAN_WIDTH).mean(0)  # (N, F)
    rows, cols = dtw(-matrix.double().numpy())
    starts = np.zeros(matrix.size(0), dtype=np.int64)
    jumps = np.concatenate([[True], np.diff(rows) > 0])
    starts[rows[jumps]] = cols[jumps]
    return starts


# ----------------------------------------------------------------------------- transcripts


def _piece_words(
    predictor: Any, piece: Any, tokens: list[int], dcfg: Any, enc_out: Any
) -> tuple[list, str]:
    """Word texts and times (seconds within the piece) of one piece's best output;
    ``enc_out``: the piece's encoder output (batch of 1) from the search."""
    from transduce.models.attention_maps import decoder_maps, has_heads

    task, model = predictor.task, predictor.model
    tok = task.tok
    is_whisper = getattr(tok, "kind", "") == "whisper"
    n_prompt = len(tok.prompt_ids) if is_whisper else 0
    text_ids = tokens[n_prompt:]
    groups = group_words(text_ids, task.detokenize)
    if not groups:
        return [], ""
    ctc_head = getattr(model.encoder, "ctc_head", None)
    shape = has_heads(model.decoder)
    if not is_whisper and (ctc_head is None or dcfg.mode == "attention"):
        return [], ""
    if is_whisper and shape is None:
        return [], ""
    if is_whisper:
        pairs, how = whisper_alignment_heads(tok, *shape)
        maps = decoder_maps(model, enc_out, list(tokens) + [EOS_ID])
        frames = max(1, len(piece) // 2)  # content: 10 ms mel frames -> 20 ms
        heads = torch.stack([maps.heads[a, b] for a, b in pairs])  # (A, T + 1, 1500)
        starts = token_start_frames(heads[:, n_prompt:, :frames]) * WHISPER_FRAME_SECONDS
        bounds = [g[0] for g in groups] + [len(text_ids)]  # the last row: end of text
        times = [(starts[bounds[k]], starts[bounds[k + 1]]) for k in range(len(groups))]
    else:
        from transduce.models.audio import ctc_log_probs

        with torch.inference_mode():
            log_probs = ctc_log_probs(model, enc_out)[0].cpu()
        n_enc = int(enc_out.mask[0].sum())
        spans = ctc_align(log_probs[:n_enc], text_ids)
        if not spans:
            return [], ""
        shift = round(len(piece) / max(n_enc, 1)) * 0.01  # 10 ms feature frames
        times = [(spans[g[0]][0] * shift, (spans[g[-1]][1] + 1) * shift) for g in groups]
        how = f"CTC alignment, {shift * 1000:g} ms frames"
    texts = [task.detokenize([text_ids[k] for k in g]) for g in groups]
    final = task.detokenize(text_ids).split()
    if len(final) == len(groups):  # the whole text's spelling (joins, normalization)
        texts = final
    found = [(w, float(a), float(b)) for w, (a, b) in zip(texts, times)]
    if piece.wave is not None:
        found = trim_silence(found, piece.wave, task.cfg.audio.sample_rate)
    return found, how


def trim_silence(words: list, wave: np.ndarray, sample_rate: int) -> list:
    """Move word edges that lie in silence onto the speech: a word after a pause starts
    where the sound starts, a word before one ends where it stops (alignment from
    attention or CTC spreads a word over the pause next to it).

    Silence: 10 ms frames quieter than ``max(floor + 10 dB, peak - 50 dB)`` (at most
    ``peak - 30 dB``), floor being the 10th percentile of the piece's frame energies
    (its background noise when it has pauses). A word that is all "silence" keeps its
    times.
    """
    from transduce.data.audio import frame_energy_db

    energy = frame_energy_db(wave, sample_rate)  # (F,) 10 ms frames
    if len(energy) == 0:
        return words
    floor, peak = np.percentile(energy, 10), energy.max()
    loud = np.flatnonzero(energy > min(max(floor + 10.0, peak - 50.0), peak - 30.0))
    out = []
    for w, a, b in words:
        i, j = int(a * 100), int(np.ceil(b * 100))
        inside = loud[(loud >= i) & (loud < j)]
        if len(inside):
            a, b = max(a, inside[0] / 100), min(b, (inside[-1] + 1) / 100)
        out.append((w, a, b))
    return out


def _segments(piece: Any, text: str, words: list, seconds: float) -> list[Segment]:
    """One piece's segments: split after sentence ends when there are word times."""
    if not text:
        return []
    offset = piece.start
    if not words:
        return [Segment(offset, offset + seconds, text)]
    out: list[Segment] = []
    current: list[Word] = []
    for k, (w, a, b) in enumerate(words):
        a, b = min(max(a, 0.0), seconds), min(max(b, 0.0), seconds)
        current.append(Word(w, offset + a, offset + max(a, b)))
        if SENTENCE_END.search(w) or k == len(words) - 1:
            line = " ".join(x.word for x in current)
            out.append(Segment(current[0].start, current[-1].end, line, current))
            current = []
    return out


def transcribe(
    predictor: Any,
    inputs: list,
    words: bool = True,
    should_stop: Callable[[], None] | None = None,
    budget: int | None = None,
    **options: Any,
) -> list[Transcript]:
    """Decode audio files (the best output each) into :class:`Transcript` s with times.

    ``options``: decoding options as :meth:`Predictor.predict` takes them (nbest must
    be 1); ``words=False`` skips word times (segments are then the pieces).
    """
    task = predictor.task
    if task.name != "speech":
        raise TransduceError(
            f"times exist for speech recognition only; this model's task is '{task.name}' "
            "(use --format text)"
        )
    dcfg = predictor.decode_config(**options)
    if dcfg.nbest > 1:
        raise TransduceError("times are given for the best output only; use nbest 1")
    pieces, owner = [], []
    for i, item in enumerate(inputs):
        for piece in task.split_input(item):
            pieces.append(piece)
            owner.append(i)
    encoded: list = []
    hyps = predictor.hypotheses(
        pieces, dcfg, should_stop=should_stop, budget=budget, encoded=encoded
    )
    from transduce.data.audio import audio_info

    rate = task.cfg.audio.sample_rate
    out = [
        Transcript("", audio_info(item) if isinstance(item, str | Path) else len(item) / 100, [])
        for item in inputs
    ]
    for i, piece, hs, enc_out in zip(owner, pieces, hyps, encoded):
        tokens = hs[0].tokens if hs else []
        text = task.output_text(tokens, piece) if hs else ""
        found, how = ([], "")
        if words and text:
            found, how = _piece_words(predictor, piece, tokens, dcfg, enc_out)
        seconds = len(piece.wave) / rate if piece.wave is not None else len(piece) / 100
        out[i].segments += _segments(piece, text, found, seconds)
        out[i].word_times = out[i].word_times or how
    for t in out:
        t.text = " ".join(s.text for s in t.segments)
    return out


# ----------------------------------------------------------------------------- formats


def clock(seconds: float, decimal: str = ",") -> str:
    """``3723.25`` -> ``01:02:03,250`` (SubRip; WebVTT uses ``.``)."""
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def _cue_text(text: str) -> str:
    return " ".join(text.split())  # a blank line would end the cue


def srt(transcript: Transcript) -> str:
    """SubRip: numbered cues ``1``, ``00:00:01,250 --> 00:00:03,000``, text, blank line."""
    cues = [
        f"{n}\n{clock(s.start)} --> {clock(s.end)}\n{_cue_text(s.text)}\n"
        for n, s in enumerate(transcript.segments, 1)
    ]
    return "\n".join(cues)


def vtt(transcript: Transcript) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues ``00:00:01.250 --> 00:00:03.000``."""
    lines = ["WEBVTT\n"]
    for s in transcript.segments:
        text = _cue_text(s.text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"{clock(s.start, '.')} --> {clock(s.end, '.')}\n{text}\n")
    return "\n".join(lines)


def render(transcript: Transcript, fmt: str, name: str | None = None) -> str:
    """One transcript as ``fmt`` (``text``, ``json`` one line, ``srt``, ``vtt``)."""
    if fmt == "text":
        return transcript.text
    if fmt == "json":
        data = transcript.to_json()
        if name is not None:
            data = {"file": name, **data}
        return json.dumps(data, ensure_ascii=False)
    if fmt == "srt":
        return srt(transcript)
    if fmt == "vtt":
        return vtt(transcript)
    raise TransduceError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "Segment",
    "Transcript",
    "Word",
    "clock",
    "ctc_align",
    "dtw",
    "group_words",
    "render",
    "srt",
    "transcribe",
    "vtt",
]
