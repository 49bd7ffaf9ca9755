"""Word tokenizer with extended ids, ROUGE wrappers, documents and the lead baseline."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from transduce.data.tokenizers import (
    UNK_ID,
    WordTokenizer,
    load_tokenizers,
    save_tokenizers,
    split_words,
)
from transduce.evaluation.metrics import compute_metrics
from transduce.tasks.base import Example
from transduce.tasks.summarization import SummarizationTask, document_text, lead


def test_split_words_keeps_package_names():
    assert split_words("Foo: a C++ tool for libfoo-dev (python3.11). <p> Bye!") == [
        "Foo", ":", "a", "C++", "tool", "for", "libfoo-dev", "(", "python3.11", ")", ".",
        "<p>", "Bye", "!",
    ]  # fmt: skip


def test_extended_ids_round_trip(tmp_path):
    tok = WordTokenizer.train(["the tool is a tool", "a tool"], vocab_size=7)
    assert tok.words == ["tool", "a", "is"]  # most frequent first, ties alphabetical
    V = tok.vocab_size
    src = "the zork tool is a zork for frobs."
    ids, oovs = tok.encode_extended(src)
    assert oovs == ["the", "zork", "for", "frobs", "."]
    assert ids == [V, V + 1, 4, 6, 5, V + 1, V + 2, V + 3, V + 4]
    assert tok.decode(ids, oovs) == src
    assert tok.encode(src)[:2] == [UNK_ID, UNK_ID]
    tgt = tok.encode_target("zork tool unseen", oovs)
    assert tgt == [V + 1, 4, UNK_ID]
    assert tok.decode(tgt, oovs) == "zork tool ⁇"
    assert tok.decode(tgt) == "⁇ tool ⁇"  # without the source, extended ids are unknown
    ids, oovs = tok.encode_extended(src, max_len=2)  # truncation comes first
    assert ids == [V, V + 1] and oovs == ["the", "zork"]
    save_tokenizers(tmp_path, tok, tok, shared=True)
    loaded, _ = load_tokenizers(tmp_path)
    assert isinstance(loaded, WordTokenizer) and loaded.words == tok.words


HYPS = ["the cat sat on the mats", "a quick brown fox", "running tools for Debian"]
REFS = ["the cats sat on a mat", "the quick brown dog jumps", "tool to run on Debian"]


@pytest.mark.parametrize(
    "name,kind", [("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rougeL", "rougeL")]
)
def test_rouge_matches_rouge_score(name, kind):
    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=True)
    expected = 100 * sum(scorer.score(r, h)[kind].fmeasure for h, r in zip(HYPS, REFS)) / 3
    result = compute_metrics([name], HYPS, REFS)[name.lower()]
    assert result.score == pytest.approx(expected, abs=1e-9)
    assert "stem:yes" in result.signature
    assert 0 < result.score < 100


def test_rouge_multi_reference_takes_the_best():
    one = compute_metrics(["rouge1"], ["a b c"], [["x y z", "a b c"]])["rouge1"]
    assert one.score == pytest.approx(100.0)


def test_document_text_and_lead():
    raw = "First line\n  of para one.\n\n\n * item one\n * item two\n\nLast.\n"
    doc = document_text(raw)
    assert doc == "First line of para one. <p> * item one * item two <p> Last."
    assert lead(doc, 7) == "First line of para one. * item"


def test_lead_baseline_uses_mean_reference_length():
    from transduce.config import Config

    task = SummarizationTask(Config(task="summarization"))
    examples = [
        Example(src=[], tgt=[], ref="one two three", src_text="a b <p> c d e f"),
        Example(src=[], tgt=[], ref="one", src_text="g h i"),
    ]
    assert task.baseline(examples) == ["a b", "g h"]
