"""A copy model learns to write a source word that is not in its vocabulary."""

from __future__ import annotations

import random

import pytest

from transduce.config import config_from_dict
from transduce.inference import Predictor
from transduce.training.trainer import Trainer

COMMON = "the a tool for of and library with data files package small".split()


def toy_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Document: common words with one made-up name at a random place; summary: the name."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        name = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7))
        words = rng.choices(COMMON, k=rng.randint(4, 8))
        words.insert(rng.randrange(len(words) + 1), name)
        pairs.append((" ".join(words), f"get {name}"))
    return pairs


def write(path, pairs) -> str:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {
        "train": write(d / "train.tsv", toy_pairs(400, 1)),
        "valid": write(d / "valid.tsv", toy_pairs(20, 2)),
        "test": write(d / "test.tsv", toy_pairs(20, 3)),
    }


LSTM = {
    "encoder": {"type": "lstm", "embed_dim": 24, "hidden_size": 24},
    "decoder": {"type": "lstm", "embed_dim": 24, "hidden_size": 48, "attention": "bahdanau"},
}
TRANSFORMER = {
    "encoder": {"type": "transformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1},
    "decoder": {"type": "transformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1},
}


def train_toy(data: dict, run, copy: bool, model: dict = LSTM) -> Predictor:
    cfg = config_from_dict(
        {
            "task": "summarization",
            "data": {**data, "max_src_len": 20, "max_tgt_len": 5},
            # names occur once each: a vocabulary of the common words + "get" leaves them out
            "tokenizer": {"type": "word", "vocab_size": 4 + len(COMMON) + 1, "shared": True},
            "model": {"encoder": model["encoder"], "decoder": {**model["decoder"], "copy": copy}},
            "train": {
                "batch_tokens": 500,
                "lr": 1e-2,
                "warmup_steps": 10,
                "max_steps": 120,
                "valid_every": 120,
                "valid_max_sentences": 5,
                "label_smoothing": 0.0,
                "early_stop_metric": "loss",
                "progress": False,
                "threads": 1,
            },
            "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 4},
        }
    )
    Trainer(cfg, run).fit()
    return Predictor.load(run / "last")


@pytest.mark.parametrize("model", [LSTM, TRANSFORMER], ids=["lstm", "transformer"])
def test_copy_model_writes_an_out_of_vocabulary_source_word(toy_data, tmp_path, model):
    doc = "the small zyxwvut tool for data"
    copier = train_toy(toy_data, tmp_path / "copy", copy=True, model=model)
    assert "zyxwvut" not in copier.task.src_tok.index  # really out of the vocabulary
    assert copier.predict([doc], beam=1) == ["get zyxwvut"]
    assert copier.predict([doc], beam=3) == ["get zyxwvut"]
    plain = train_toy(toy_data, tmp_path / "plain", copy=False, model=model)
    out = plain.predict([doc], beam=3)[0]
    assert "zyxwvut" not in out and "⁇" in out  # it can only say <unk>
