"""Times for speech output: subtitle formats, word grouping, CTC and DTW alignment."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from transduce.tasks.speech import AudioClip
from transduce.timestamps import (
    Segment,
    Transcript,
    Word,
    _segments,
    clock,
    ctc_align,
    dtw,
    group_words,
    median_filter,
    render,
    token_start_frames,
    trim_silence,
)


def transcript() -> Transcript:
    words = [Word("Hello", 1.25, 1.5), Word("world.", 1.5, 3.0)]
    return Transcript(
        "Hello world. Fish <b> & chips",
        65.0,
        [Segment(1.25, 3.0, "Hello world.", words), Segment(61.0, 3723.25, "Fish <b> & chips")],
        "test",
    )


def test_clock() -> None:
    assert clock(0.0) == "00:00:00,000"
    assert clock(1.25) == "00:00:01,250"
    assert clock(3723.25) == "01:02:03,250"
    assert clock(59.9996) == "00:01:00,000"  # rounded to the millisecond
    assert clock(1.25, ".") == "00:00:01.250"


def test_srt_and_vtt() -> None:
    assert render(transcript(), "srt") == (
        "1\n00:00:01,250 --> 00:00:03,000\nHello world.\n\n"
        "2\n00:01:01,000 --> 01:02:03,250\nFish <b> & chips\n"
    )
    assert render(transcript(), "vtt") == (
        "WEBVTT\n\n"
        "00:00:01.250 --> 00:00:03.000\nHello world.\n\n"
        "00:01:01.000 --> 01:02:03.250\nFish &lt;b&gt; &amp; chips\n"
    )
    assert render(transcript(), "text") == "Hello world. Fish <b> & chips"


def test_json() -> None:
    data = json.loads(render(transcript(), "json", name="a.wav"))
    assert list(data) == ["file", "text", "duration", "segments", "word_times"]
    assert data["segments"][0] == {
        "start": 1.25,
        "end": 3.0,
        "text": "Hello world.",
        "words": [
            {"word": "Hello", "start": 1.25, "end": 1.5},
            {"word": "world.", "start": 1.5, "end": 3.0},
        ],
    }
    assert data["segments"][1]["words"] == []


def test_group_words_any_tokenizer() -> None:
    chars = list(" abc.")
    assert group_words([1, 2, 0, 3, 4], lambda ids: "".join(chars[i] for i in ids)) == [
        [0, 1],  # "ab" (the space after it belongs to no word)
        [3, 4],  # "c."
    ]
    pieces = ["▁he", "llo", "▁wor", "ld", "."]

    def sp(ids):
        return "".join(pieces[i] for i in ids).replace("▁", " ").strip()

    assert group_words(range(5), sp) == [[0, 1], [2, 3, 4]]
    assert group_words([], sp) == []


def brute_force_ctc(log_probs: torch.Tensor, tokens: list[int]) -> tuple[float, list]:
    """The best path that collapses to ``tokens``, by enumerating every path."""
    T, V = log_probs.shape
    best, spans = -math.inf, []
    for path in itertools.product(range(V), repeat=T):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        if collapsed != tokens:
            continue
        score = float(sum(log_probs[t, c] for t, c in enumerate(path)))
        if score > best:
            k, found = -1, []
            for t, c in enumerate(path):
                if c != 0 and (t == 0 or c != path[t - 1]):
                    k += 1
                    found.append([t, t])
                elif c != 0:
                    found[k][1] = t
            best, spans = score, [tuple(s) for s in found]
    return best, spans


def test_ctc_align_constructed() -> None:
    """A known path: each frame's label has probability 0.9."""
    path = [0, 1, 1, 0, 2, 0, 2, 3, 3, 0]  # tokens 1, 2, 2, 3 (a repeat needs a blank)
    log_probs = torch.full((len(path), 5), math.log(0.1 / 4))
    log_probs[torch.arange(len(path)), torch.tensor(path)] = math.log(0.9)
    assert ctc_align(log_probs, [1, 2, 2, 3]) == [(1, 2), (4, 4), (6, 6), (7, 8)]
    assert ctc_align(log_probs[:2], [1, 1]) == []  # a repeat needs 3 frames
    assert ctc_align(log_probs, []) == []


@pytest.mark.parametrize("seed", range(4))
def test_ctc_align_is_the_best_path(seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(6, 3, generator=gen).log_softmax(-1)
    for tokens in ([1, 2], [2, 2], [1, 2, 1]):
        _, spans = brute_force_ctc(log_probs, tokens)
        assert ctc_align(log_probs, tokens) == spans


def all_paths(N: int, M: int, i: int = 0, j: int = 0) -> list[list[tuple[int, int]]]:
    if (i, j) == (N - 1, M - 1):
        return [[(i, j)]]
    out = []
    for di, dj in ((1, 1), (1, 0), (0, 1)):
        if i + di < N and j + dj < M:
            out += [[(i, j), *p] for p in all_paths(N, M, i + di, j + dj)]
    return out


@pytest.mark.parametrize("shape", [(1, 4), (3, 4), (4, 6), (5, 3)])
def test_dtw_is_the_cheapest_path(shape) -> None:
    cost = np.random.default_rng(sum(shape)).normal(size=shape)
    rows, cols = dtw(cost)
    best = min(sum(cost[i, j] for i, j in p) for p in all_paths(*shape))
    assert cost[rows, cols].sum() == pytest.approx(best)
    assert (rows[0], cols[0]) == (0, 0) and (rows[-1], cols[-1]) == (shape[0] - 1, shape[1] - 1)
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0)


def test_median_filter() -> None:
    x = torch.randn(2, 3, 20)
    y = median_filter(x, 7)
    assert y.shape == x.shape
    for j in range(3, 17):
        assert torch.equal(y[..., j], x[..., j - 3 : j + 4].median(-1).values)


def test_token_start_frames_follow_the_attention() -> None:
    """Token k looks at frames 10k..10k+9 (plus noise): each starts at its block."""
    weights = torch.rand(2, 4, 40, generator=torch.Generator().manual_seed(0)) * 0.1
    for k in range(4):
        weights[:, k, 10 * k : 10 * k + 10] += 1.0
    assert token_start_frames(weights).tolist() == [0, 10, 20, 30]


def test_trim_silence_moves_word_edges_onto_the_sound() -> None:
    rate = 16000
    wave = np.zeros(rate, np.float32)
    t = np.arange(int(0.4 * rate)) / rate
    wave[int(0.3 * rate) : int(0.7 * rate)] = 0.5 * np.sin(2 * np.pi * 440 * t)
    words = [("a", 0.0, 0.5), ("b", 0.5, 0.95), ("quiet", 0.8, 0.9)]
    (a, b, quiet) = trim_silence(words, wave, rate)
    assert a == ("a", 0.3, 0.5)
    assert b == ("b", 0.5, 0.7)
    assert quiet == ("quiet", 0.8, 0.9)  # all silent: kept as it was


def test_segments_split_at_sentence_ends_and_shift_by_the_piece() -> None:
    piece = AudioClip("x.wav", 500, None, start=10.0)
    words = [("Hi.", 0.5, 1.0), ("How", 1.2, 1.4), ("are", 1.4, 1.6), ("you?", 1.6, 9.0)]
    one, two = _segments(piece, "Hi. How are you?", words, 5.0)
    assert (one.start, one.end, one.text) == (10.5, 11.0, "Hi.")
    assert (two.start, two.end, two.text) == (11.2, 15.0, "How are you?")  # inside the piece
    (whole,) = _segments(piece, "Hi there", [], 5.0)  # no word times: the piece
    assert (whole.start, whole.end, whole.words) == (10.0, 15.0, [])
    assert _segments(piece, "", [], 5.0) == []
