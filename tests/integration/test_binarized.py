"""Binarized (memory-mapped) corpora train exactly as in-memory ones, and resume exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.integration.conftest import TINY_TRANSFORMER, tiny_config
from transduce.config import ConfigError, TransduceError
from transduce.data.binarized import BinarizedExamples
from transduce.tasks import build_task
from transduce.tasks.binarize import binarize, open_binarized
from transduce.training.checkpoint import load_checkpoint
from transduce.training.trainer import Trainer

SMALL = dict(max_steps=6, valid_every=3, batch_tokens=400, valid_max_sentences=4)
MODEL = {k: {**v, "dropout": 0.3} for k, v in TINY_TRANSFORMER.items()}


@pytest.fixture(scope="module")
def shards(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bin") / "ddtp"
    meta = binarize(tiny_config(data_dir, MODEL, **SMALL), out)
    return out, meta


def test_shards_hold_the_tokenized_corpus(data_dir, shards):
    out, meta = shards
    cfg = tiny_config(data_dir, MODEL, **SMALL)
    task = build_task(cfg)
    task.load(out / "vocab")
    expected = task.examples(task.read_split("train"), train=True)
    stored = open_binarized(cfg, out)
    assert len(stored) == len(expected) == meta["splits"]["train"]["examples"] == 1500
    for i in (0, 1, 777, 1499):
        assert stored[i].src.tolist() == expected[i].src
        assert stored[i].tgt == expected[i].tgt
    assert stored.src_lens.tolist() == [len(e.src) for e in expected]
    assert int(stored.tgt_lens.sum()) == meta["splits"]["train"]["tgt_tokens"]


def _weights(run):
    return load_checkpoint(run / "last.pt")["model"]


def test_training_on_shards_equals_training_in_memory(data_dir, shards, tmp_path):
    """Same vocabulary, same batches, same updates: bit-identical weights, and a resume
    from the middle of the shards continues exactly."""
    out, _ = shards
    Trainer(tiny_config(data_dir, MODEL, **SMALL), tmp_path / "memory").fit()
    cfg = tiny_config(data_dir, MODEL, **SMALL)
    cfg.data.binarized = str(out)
    Trainer(cfg, tmp_path / "mapped").fit()
    cut = tiny_config(data_dir, MODEL, **{**SMALL, "max_steps": 3})
    cut.data.binarized = str(out)
    Trainer(cut, tmp_path / "cut").fit()
    Trainer(cfg, tmp_path / "cut", resume=True).fit()
    a, b, c = (
        _weights(tmp_path / "memory"),
        _weights(tmp_path / "mapped"),
        _weights(tmp_path / "cut"),
    )
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.equal(a[key], c[key]), key
    vocab = json.loads((tmp_path / "mapped" / "vocab" / "tokenizer.json").read_text())
    assert vocab == json.loads((out / "vocab" / "tokenizer.json").read_text())


def test_train_binarizes_on_first_use(data_dir, tmp_path):
    cfg = tiny_config(data_dir, MODEL, **{**SMALL, "max_steps": 2, "valid_every": 2})
    cfg.data.binarized = str(tmp_path / "auto")
    Trainer(cfg, tmp_path / "run").fit()
    assert (
        json.loads((tmp_path / "auto" / "meta.json").read_text())["splits"]["train"]["examples"]
        == 1500
    )


def test_changed_settings_are_refused_naming_the_keys(data_dir, shards):
    out, _ = shards
    cfg = tiny_config(data_dir, MODEL, **SMALL)
    cfg.tokenizer.vocab_size = 700
    cfg.data.max_src_len = 32
    with pytest.raises(ConfigError, match=r"data.max_src_len.*tokenizer"):
        open_binarized(cfg, out)


def test_existing_output_is_kept_unless_forced(data_dir, shards, tmp_path):
    out, _ = shards
    cfg = tiny_config(data_dir, MODEL, **SMALL)
    with pytest.raises(TransduceError, match="--force"):
        binarize(cfg, out)
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("keep me")
    with pytest.raises(TransduceError, match="not a binarized corpus"):
        binarize(cfg, user_folder, force=True)
    assert (user_folder / "notes.txt").read_text() == "keep me"


def test_a_truncated_shard_is_an_error(shards, tmp_path):
    out, _ = shards
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.glob("train.*"):
        data = f.read_bytes()
        (copy / f.name).write_bytes(data[: len(data) - 8] if f.name == "train.src.bin" else data)
    with pytest.raises(TransduceError, match="truncated or corrupt"):
        BinarizedExamples(copy, "train")


def test_bad_corpus_line_names_file_and_line(data_dir, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"Hallo\tHello\nkein tab hier\n")
    cfg = tiny_config(data_dir, MODEL, **SMALL)
    cfg.data.train = str(bad)
    with pytest.raises(TransduceError, match=r"bad.tsv:2: line has no tab"):
        binarize(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tsv"]  # no half-written folder


def test_memory_stays_bounded_by_the_offsets(shards):
    """Reading examples touches only their ids: the maps are not loaded whole."""
    out, _ = shards
    stored = BinarizedExamples(out, "train")
    assert isinstance(stored._bin["src"], np.memmap)
    assert stored[5].src.flags.writeable  # a private copy, the map stays read-only


def test_cli_binarize(data_dir, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(tiny_config(data_dir, MODEL, **SMALL).to_dict()))
    r = subprocess.run(
        [sys.executable, "-m", "transduce.cli", "data", "binarize", str(cfg_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "--out" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "transduce.cli", "data", "binarize", str(cfg_path)]
        + ["--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["splits"]["train"]["examples"] == 1500
