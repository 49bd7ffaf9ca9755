"""Tokenizers: round trips on the sample, special ids, save/load equality, errors."""

import json

import pytest

from transduce.config import TokenizerConfig, TransduceError
from transduce.data.readers import read_parallel_tsv, resolve_data_path
from transduce.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    CharTokenizer,
    SentencePieceTokenizer,
    build_tokenizers,
    load_tokenizers,
    save_tokenizers,
)


@pytest.fixture(scope="module")
def pairs():
    return read_parallel_tsv(resolve_data_path("sample:ddtp-de-en/train.tsv"))[:3000]


@pytest.fixture(scope="module")
def spm_pair(pairs):
    cfg = TokenizerConfig(vocab_size=1000, shared=True)
    return build_tokenizers(cfg, [s for s, _ in pairs], [t for _, t in pairs])


def test_sentencepiece_round_trip(spm_pair, pairs):
    tok, same = spm_pair
    assert tok is same
    assert tok.vocab_size <= 1000
    for src, tgt in pairs[:200]:
        for text in (src, tgt):
            ids = tok.encode(text)
            assert UNK_ID not in ids and BOS_ID not in ids and EOS_ID not in ids
            assert tok.decode(ids) == text
    assert tok.decode([BOS_ID, *tok.encode("Hallo Welt"), EOS_ID, PAD_ID]) == "Hallo Welt"
    assert "".join(tok.tokens("Hallo Welt")).replace("\u2581", " ").strip() == "Hallo Welt"


def test_sentencepiece_tiny_corpus_and_bpe():
    tok = SentencePieceTokenizer.train(["ab ab", "abc"], vocab_size=8000, model_type="bpe")
    assert tok.decode(tok.encode("ab abc")) == "ab abc"
    with pytest.raises(TransduceError, match="model_type"):
        SentencePieceTokenizer.train(["a"], model_type="wordpiece")


def test_char_round_trip_and_unknown(pairs):
    tok = CharTokenizer.train([s for s, _ in pairs] + [t for _, t in pairs])
    for src, _ in pairs[:100]:
        assert tok.decode(tok.encode(src)) == src
    ids = tok.encode("a\u4e2d")
    assert ids[1] == UNK_ID and ids[0] >= 4
    assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == "a\u2047"


@pytest.mark.parametrize("kind", ["sentencepiece", "char"])
@pytest.mark.parametrize("shared", [True, False])
def test_save_load_equal(tmp_path, pairs, kind, shared):
    cfg = TokenizerConfig(type=kind, vocab_size=500, shared=shared)
    src_texts, tgt_texts = [s for s, _ in pairs[:800]], [t for _, t in pairs[:800]]
    src_tok, tgt_tok = build_tokenizers(cfg, src_texts, tgt_texts)
    save_tokenizers(tmp_path, src_tok, tgt_tok, shared)
    meta = json.loads((tmp_path / "tokenizer.json").read_text())
    assert meta["type"] == kind and meta["shared"] == shared
    src2, tgt2 = load_tokenizers(tmp_path)
    assert (src2 is tgt2) == shared
    for a, b, text in ((src_tok, src2, src_texts[5]), (tgt_tok, tgt2, tgt_texts[5])):
        assert a.vocab_size == b.vocab_size
        assert a.encode(text) == b.encode(text)
        assert a.tokens(text) == b.tokens(text)


def test_missing_or_corrupt_files(tmp_path):
    with pytest.raises(TransduceError, match="tokenizer.json"):
        load_tokenizers(tmp_path)
    tok = CharTokenizer.train(["abc"])
    save_tokenizers(tmp_path, tok, tok, shared=True)
    (tmp_path / "shared.chars.json").write_text("{not json")
    with pytest.raises(TransduceError, match="shared.chars.json"):
        load_tokenizers(tmp_path)
    (tmp_path / "tokenizer.json").write_text(
        json.dumps({"type": "sentencepiece", "shared": True, "src": "x.spm.model", "tgt": "x"})
    )
    (tmp_path / "x.spm.model").write_bytes(b"garbage")
    with pytest.raises(TransduceError, match="x.spm.model"):
        load_tokenizers(tmp_path)
    (tmp_path / "tokenizer.json").write_text("[1, 2]")
    with pytest.raises(TransduceError, match="corrupt"):
        load_tokenizers(tmp_path)


def test_unknown_type():
    with pytest.raises(TransduceError, match="wordpiece"):
        build_tokenizers(TokenizerConfig(type="wordpiece"), ["a"], ["b"])
