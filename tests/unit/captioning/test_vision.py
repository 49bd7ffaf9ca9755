"""The ResNet image encoder: shapes, masks, registry, pairing with both decoders."""

from __future__ import annotations

import pytest
import torch

from transduce.config import ConfigError, ModelConfig
from transduce.models import build_model
from transduce.registry import BuildContext, build_encoder


def test_shapes_and_mask():
    enc = build_encoder(
        {"type": "resnet", "widths": [8, 16, 32], "depths": [1, 2, 1], "d_model": 24},
        BuildContext(),
    ).eval()
    out = enc(torch.rand(3, 3, 64, 48), torch.ones(3, 1, dtype=torch.bool))
    assert out.memory.shape == (3, 8 * 6, 24)  # 64x48 / 8 -> 8x6 grid
    assert out.mask.shape == (3, 48) and bool(out.mask.all())
    h, c = out.final_state
    assert h.shape == (3, 1, 24) and torch.allclose(h[:, 0], out.memory.mean(1))
    assert enc.grid(64) == 8 and enc.grid(96) == 12 and enc.grid(100) == 13
    assert enc.output_dim == 24


def test_batch_equals_one_by_one_in_eval():
    enc = build_encoder({"type": "resnet", "widths": [8, 16], "depths": [1, 1]}, BuildContext())
    enc.eval()
    x = torch.rand(2, 3, 32, 32)
    mask = torch.ones(2, 1, dtype=torch.bool)
    both = enc(x, mask).memory
    one = enc(x[1:], mask[1:]).memory
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_bad_config():
    with pytest.raises(ConfigError, match="widths"):
        build_encoder({"type": "resnet", "widths": [8, 16], "depths": [1]}, BuildContext())
    with pytest.raises(ConfigError, match="unknown key 'model.encoder.width'"):
        build_encoder({"type": "resnet", "width": [8]}, BuildContext())


@pytest.mark.parametrize(
    "decoder",
    [
        {"type": "lstm", "embed_dim": 16, "hidden_size": 32, "attention": "bahdanau"},
        {"type": "transformer", "d_model": 16, "heads": 2, "ff_dim": 32, "layers": 1},
    ],
)
def test_pairs_with_decoders_without_source_vocabulary(decoder):
    cfg = ModelConfig(
        encoder={"type": "resnet", "widths": [8, 16], "depths": [1, 1], "d_model": 16},
        decoder=decoder,
    )
    model = build_model(cfg, src_vocab_size=0, tgt_vocab_size=11).eval()
    logits, attn = model(
        torch.rand(2, 3, 32, 32), torch.ones(2, 1, dtype=torch.bool), torch.tensor([[2, 5, 6]] * 2)
    )
    assert logits.shape == (2, 3, 11)
    assert attn.shape == (2, 3, 64)  # 32 px / 4 -> 8x8 grid
    assert torch.allclose(attn.sum(-1), torch.ones(2, 3), atol=1e-5)
