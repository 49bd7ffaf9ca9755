"""The captioning task: reading the JSONL, references, augmentation only in training,
the doubly stochastic attention loss."""

from __future__ import annotations

import json

import pytest
import torch

from transduce.config import ConfigError, TransduceError, config_from_dict
from transduce.models.base import EncoderOutput
from transduce.tasks import build_task
from transduce.tasks.base import Batch
from transduce.tasks.captioning import doubly_stochastic_attention
from transduce.training.loss import build_aux_losses


def _task(**data):
    cfg = config_from_dict(
        {
            "task": "captioning",
            "data": {
                "train": "sample:tuxpaint/train.jsonl",
                "valid": "sample:tuxpaint/valid.jsonl",
                "test": "sample:tuxpaint/test.jsonl",
                **data,
            },
            "image": {"size": 32},
            "tokenizer": {"type": "word", "vocab_size": 500},
            "model": {"encoder": {"type": "resnet"}, "decoder": {"type": "lstm"}},
        }
    )
    return build_task(cfg)


def test_reads_sample_and_languages():
    task = _task()
    items = task.read_split("valid")
    assert len(items) == 40 and all(i.image.is_file() and i.refs for i in items)
    de = _task(caption_lang="de").read_split("valid")
    assert de and de[0].refs != items[0].refs
    with pytest.raises(ConfigError, match="no captions in 'xx'"):
        _task(caption_lang="xx").read_split("valid")


def test_examples_refs_and_augmentation_only_in_training():
    task = _task()
    train_items = task.read_split("train")
    task.fit(train_items)
    assert task.src_vocab_size == 0
    valid = task.examples(task.read_split("valid")[:4])
    assert len(valid) == 4 and all(isinstance(e.ref, list) for e in valid)
    assert valid[0].src.shape == (3, 32, 32) and valid[0].src_len == 1
    multi = [i for i in train_items if len(set(i.refs)) > 1][:2]
    assert len(task.examples(multi, train=True)) == sum(len(set(i.refs)) for i in multi)

    torch.manual_seed(0)
    a = task.collate(valid).src
    b = task.collate(valid).src
    assert torch.equal(a, b) and a.dtype == torch.float32 and float(a.max()) <= 1.0
    assert torch.equal(task.collate(valid).src_mask, torch.ones(4, 1, dtype=torch.bool))
    t1 = task.collate(valid, train=True).src
    t2 = task.collate(valid, train=True).src
    assert not torch.equal(t1, a) and not torch.equal(t1, t2)


def test_bad_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"image": "a.png", "captions": {"en": ["x"]}}) + "\n{oops\n")
    with pytest.raises(TransduceError, match=r"train.jsonl:2"):
        _task(train=str(path)).read_split("train")


def test_doubly_stochastic_value():
    # B=1, T=3 (the last step is padding), S=2
    attn = torch.tensor([[[0.75, 0.25], [0.5, 0.5], [0.0, 1.0]]])
    tgt_out = torch.tensor([[5, 3, 0]])
    batch = Batch(torch.zeros(1), torch.ones(1, 1, dtype=torch.bool), tgt_out, tgt_out, 2)
    enc = EncoderOutput(torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.bool))
    # sum_t: [1.25, 0.75] -> (1 - 1.25)^2 + (1 - 0.75)^2 = 0.125
    value = doubly_stochastic_attention(None, batch, enc, attn)
    assert value.item() == pytest.approx(0.125)
    assert build_aux_losses({"doubly_stochastic": 1.0})[0][0] == "doubly_stochastic"
