"""decode.split_sentences: translation decodes a paragraph sentence by sentence (pysbd's
rules for the source language) and joins the outputs, in predict, evaluate, the server,
attention plots and the CTranslate2 engine alike."""

from __future__ import annotations

import warnings

import pytest
import sacrebleu
import torch

from tests.integration.test_alignments import models  # noqa: F401  (fixture)
from transduce.alignments import alignments
from transduce.cli import main
from transduce.config import ConfigError
from transduce.inference import Predictor
from transduce.tasks.translation import split_sentences

PARAGRAPH = [
    "Dieses Paket enthält die Dokumentation.",
    "Es enthält z.B. Beispiele für Version 2.0.",
    "Bibliothek zum Lesen von Bilddateien.",
]


@pytest.fixture(scope="module")
def translator(trained_model) -> Predictor:
    run, _ = trained_model
    return Predictor.load(run / "best")


def test_pysbd_keeps_abbreviations_and_numbers_inside_a_sentence():
    assert split_sentences(" ".join(PARAGRAPH), "de") == PARAGRAPH
    assert split_sentences("Ein Satz ohne Ende", "de") == ["Ein Satz ohne Ende"]
    assert split_sentences("  ", "de") == ["  "]  # blank: decoded as it is


def test_a_paragraph_is_the_join_of_its_sentences(translator):
    text = " ".join(PARAGRAPH)
    alone = translator.predict(PARAGRAPH, beam=2)
    assert translator.predict([text], beam=2, split_sentences="de") == [" ".join(alone)]
    # n-best: rank r of each sentence joined with rank r of the others
    ranks = translator.predict(PARAGRAPH, beam=2, nbest=2)
    joined = translator.predict([text, PARAGRAPH[0]], beam=2, nbest=2, split_sentences="de")
    assert joined[0] == [" ".join(r[k] for r in ranks) for k in range(2)]
    assert joined[1] == ranks[0]  # one sentence: unchanged
    # off (the default) decodes the paragraph whole
    whole = translator.predict([text], beam=2)
    assert whole == translator.predict([text], beam=2, split_sentences="")


def test_splitting_helps_on_paragraphs_of_training_like_sentences(translator):
    """The tiny model learned from short sentences; paragraphs of three valid sentences
    come out better sentence by sentence (its source and reference joined alike)."""
    pairs = translator.task.read_split("valid")[:60]
    sources, refs = [], []
    for i in range(0, len(pairs) - 2, 3):
        group = pairs[i : i + 3]
        ends = [s if s.rstrip()[-1:] in ".!?" else s + "." for s, _ in group]
        sources.append(" ".join(ends))
        refs.append(" ".join(t for _, t in group))
    whole = translator.predict(sources, beam=2)
    split = translator.predict(sources, beam=2, split_sentences="de")
    whole_bleu = sacrebleu.corpus_bleu(whole, [refs]).score
    split_bleu = sacrebleu.corpus_bleu(split, [refs]).score
    assert split_bleu > whole_bleu + 1.0, (whole_bleu, split_bleu)


def test_attention_of_a_split_input_is_block_diagonal(translator):
    text = " ".join(PARAGRAPH[:2])
    dcfg = translator.decode_config(beam=2, split_sentences="de")
    (joined,) = alignments(translator, [text], dcfg)
    parts = alignments(translator, PARAGRAPH[:2], translator.decode_config(beam=2))
    assert joined.text == translator.predict([text], beam=2, split_sentences="de")[0]
    assert joined.tokens == parts[0].tokens + parts[1].tokens
    assert joined.source == parts[0].source + parts[1].source
    (t0, s0), (t1, s1) = parts[0].weights.shape, parts[1].weights.shape
    assert joined.weights.shape == (t0 + t1, s0 + s1)
    torch.testing.assert_close(joined.weights[:t0, :s0], parts[0].weights)
    torch.testing.assert_close(joined.weights[t0:, s0:], parts[1].weights)
    assert not joined.weights[:t0, s0:].any() and not joined.weights[t0:, :s0].any()


def test_tasks_without_sentences_refuse_it(models):  # noqa: F811
    for name in ("summarization", "captioning", "speech"):
        with pytest.raises(ConfigError, match=f"split_sentences.*{name}"):
            models[name].decode_config(split_sentences="en")
    with pytest.raises(ConfigError, match="split_sentences: 'xx' is not allowed"):
        models["translation"].decode_config(split_sentences="xx")


def test_cli_and_server_take_it(translator, trained_model, monkeypatch, capsys):
    run, _ = trained_model
    text = " ".join(PARAGRAPH)
    expected = translator.predict([text], beam=2, split_sentences="de")[0]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(text + "\n"))
    assert main(["predict", str(run / "best"), "--beam", "2", "--split-sentences", "de"]) == 0
    assert capsys.readouterr().out.strip() == expected
    # off: whole inputs, whatever the model's config says
    translator.cfg.decode.split_sentences = "de"
    try:
        whole = translator.predict([text], beam=2, split_sentences="")[0]
        assert translator.predict([text], beam=2)[0] == expected  # the config's default
    finally:
        translator.cfg.decode.split_sentences = ""
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(text + "\n"))
    assert main(["predict", str(run / "best"), "--beam", "2", "--split-sentences", "off"]) == 0
    assert capsys.readouterr().out.strip() == whole

    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient

    from transduce.serving import create_app

    with TestClient(create_app({"tiny": translator})) as client:
        r = client.post("/predict", json={"inputs": [text], "beam": 2, "split_sentences": "de"})
        assert r.status_code == 200 and r.json()["outputs"] == [expected]
        r = client.post("/predict", json={"inputs": [text], "split_sentences": "xx"})
        assert r.status_code == 422 and "split_sentences" in r.text
