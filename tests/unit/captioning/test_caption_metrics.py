"""BLEU-1..4 and CIDEr-D equal pycocoevalcap's scorers called directly."""

from __future__ import annotations

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from transduce.evaluation.metrics import caption_tokens, compute_metrics

HYPS = ["A red apple.", "a dog running on grass", "Thumbs up!", ""]
REFS = [
    ["A red apple.", "a shiny red apple"],
    "A brown dog runs on the grass.",
    ["thumbs up", "Thumbs-up sign"],
    ["an empty caption"],
]


def test_caption_tokens():
    assert caption_tokens("A cat's toy, RED.") == "a cat's toy red"
    assert caption_tokens("Thumbs-up: médaille d’or!") == "thumbs-up médaille d’or"


def test_matches_pycocoevalcap():
    gts = {
        0: ["a red apple", "a shiny red apple"],
        1: ["a brown dog runs on the grass"],
        2: ["thumbs up", "thumbs-up sign"],
        3: ["an empty caption"],
    }
    res = {0: ["a red apple"], 1: ["a dog running on grass"], 2: ["thumbs up"], 3: [""]}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    names = ("bleu1", "bleu2", "bleu3", "bleu4", "cider")
    got = compute_metrics(names, HYPS, REFS)
    for n in range(4):
        assert got[f"bleu{n + 1}"].score == pytest.approx(100 * bleu[n], abs=1e-9)
    assert got["cider"].score == pytest.approx(100 * cider, abs=1e-9)
    assert got["bleu1"].score > got["bleu4"].score > 0


def test_perfect_captions():
    hyps = ["a big red apple on a table", "a green pear and a plum"]
    got = compute_metrics(("bleu4",), hyps, ["A big red apple on a table.", hyps[1]])
    assert got["bleu4"].score == pytest.approx(100.0, abs=1e-4)
