"""Text encoders, config validation, and that tiny models learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transduce import registry
from transduce.config import ConfigError, ModelConfig
from transduce.models import build_model

V, PAD = 12, 0


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 4])[:, None]
    return torch.randint(1, V, (3, 5)).masked_fill(~mask, PAD), mask


def build_encoder(section: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    ctx = registry.BuildContext(src_vocab_size=V, pad_id=PAD)
    return registry.build_encoder(section, ctx).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
@torch.no_grad()
def test_bidirectional_final_state_matches_memory(cell: str, layers: int) -> None:
    enc = build_encoder(
        {
            "type": "rnn",
            "cell": cell,
            "embed_dim": 6,
            "hidden_size": 4,
            "layers": layers,
            "bidirectional": True,
        }
    )
    assert enc.output_dim == 8
    src, mask = padded_batch()
    out = enc(src, mask)
    assert out.memory.shape == (3, 5, 8)
    assert torch.all(out.memory[~mask] == 0)
    h = out.final_state[0] if cell == "lstm" else out.final_state
    assert h.shape == (3, layers, 8)
    if cell == "lstm":
        assert out.final_state[1].shape == (3, layers, 8)
    # Top layer: forward half = output at the last real token, backward half = output at 0.
    last = mask.sum(1) - 1
    torch.testing.assert_close(h[:, -1, :4], out.memory[torch.arange(3), last, :4])
    torch.testing.assert_close(h[:, -1, 4:], out.memory[:, 0, 4:])


@pytest.mark.parametrize(
    "section",
    [
        {"type": "lstm", "embed_dim": 6, "hidden_size": 4, "bidirectional": False},
        {"type": "gru", "embed_dim": 6, "hidden_size": 4, "layers": 2},
        {"type": "transformer", "d_model": 8, "heads": 2, "ff_dim": 16, "layers": 2},
        {
            "type": "transformer",
            "d_model": 8,
            "heads": 2,
            "ff_dim": 16,
            "norm_first": False,
            "positions": "learned",
            "activation": "gelu",
        },
    ],
)
@torch.no_grad()
def test_encoder_padding_changes_nothing(section: dict) -> None:
    enc = build_encoder(section)
    src, mask = padded_batch()
    out = enc(src, mask)
    assert out.memory.shape == (3, 5, enc.output_dim)
    assert torch.equal(out.mask, mask)
    assert torch.all(out.memory[~mask] == 0)
    out2 = enc(torch.where(mask, src, torch.full_like(src, 7)), mask)
    torch.testing.assert_close(out2.memory, out.memory, atol=1e-6, rtol=1e-5)
    for i in range(3):
        n = int(mask[i].sum())
        alone = enc(src[i : i + 1, :n], mask[i : i + 1, :n])
        torch.testing.assert_close(alone.memory[0], out.memory[i, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "part,section,match",
    [
        ("decoder", {"type": "lstm", "attention": "luong"}, "attention"),
        ("decoder", {"type": "gru", "attention": "dot", "hidden_size": 8}, "dot"),
        ("decoder", {"type": "rnn", "cell": "elman"}, "cell"),
        ("decoder", {"type": "transformer", "d_model": 10, "heads": 4}, "divisible"),
        ("decoder", {"type": "transformer", "activation": "swish"}, "activation"),
        ("encoder", {"type": "transformer", "positions": "rope"}, "positions"),
        ("encoder", {"type": "transformer", "activation_dropout": 1.0}, "activation_dropout"),
        ("decoder", {"type": "transformer", "activation_dropout": "x"}, "activation_dropout"),
        ("encoder", {"type": "lstm", "hidden_size": 0}, "hidden_size"),
        ("encoder", {"type": "lstm", "hiden_size": 8}, "hidden_size"),
    ],
)
def test_config_errors_are_clear(part: str, section: dict, match: str) -> None:
    sections = {
        "encoder": {"type": "lstm", "embed_dim": 8, "hidden_size": 8},
        "decoder": {"type": "lstm", "embed_dim": 8, "hidden_size": 4},
    }
    sections[part] = section
    with pytest.raises(ConfigError, match=match):
        build_model(ModelConfig(**sections), V, V, PAD)


def test_activation_dropout_defaults_to_dropout() -> None:
    def ff_dropouts(**extra) -> set[float]:
        side = {"type": "transformer", "d_model": 8, "heads": 2, "ff_dim": 16, "dropout": 0.3}
        model = build_model(ModelConfig(encoder={**side, **extra}, decoder={**side, **extra}),
                            V, V, PAD)  # fmt: skip
        return {m.dropout.p for n, m in model.named_modules() if n.endswith(".ff")}

    assert ff_dropouts() == {0.3}
    assert ff_dropouts(activation_dropout=0.0) == {0.0}


def toy_pairs() -> tuple[torch.Tensor, ...]:
    """8 fixed pairs: the target is the source reversed. BOS=1, EOS=2, tokens 3..V-1."""
    g = torch.Generator().manual_seed(0)
    srcs = [torch.randint(3, V, (n,), generator=g) for n in (3, 4, 5, 6, 3, 4, 5, 6)]
    S = max(len(s) for s in srcs)
    src = torch.full((8, S), PAD)
    tgt_in = torch.full((8, S + 1), PAD)
    tgt_out = torch.full((8, S + 1), PAD)
    for i, s in enumerate(srcs):
        src[i, : len(s)] = s
        tgt_in[i, : len(s) + 1] = torch.cat([torch.tensor([1]), s.flip(0)])
        tgt_out[i, : len(s) + 1] = torch.cat([s.flip(0), torch.tensor([2])])
    return src, src != PAD, tgt_in, tgt_out


@pytest.mark.parametrize(
    "encoder,decoder,lr",
    [
        (
            {"type": "lstm", "embed_dim": 32, "hidden_size": 32},
            {"type": "lstm", "embed_dim": 32, "hidden_size": 64, "attention": "bahdanau"},
            1e-2,
        ),
        (
            {
                "type": "transformer",
                "d_model": 32,
                "heads": 4,
                "ff_dim": 64,
                "layers": 2,
                "dropout": 0.0,
            },
            {
                "type": "transformer",
                "d_model": 32,
                "heads": 4,
                "ff_dim": 64,
                "layers": 2,
                "dropout": 0.0,
            },
            3e-3,
        ),
    ],
    ids=["lstm-bahdanau", "transformer"],
)
def test_tiny_model_overfits_toy_pairs(encoder: dict, decoder: dict, lr: float) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=encoder, decoder=decoder), V, V, PAD).train()
    src, mask, tgt_in, tgt_out = toy_pairs()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(100):
        logits, _ = model(src, mask, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        if step == 0:  # gradients reach every parameter, encoder included
            for name, p in model.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
