"""A small reference encoder-decoder that implements the contract exactly.

Used only by the decoding tests: token embedding encoder; decoder = embedding,
GRU cell with input feeding, dot attention over the memory. Random weights,
scaled so the next-token distributions are peaked and the searches disagree.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from transduce.models.base import DecoderState, EncoderOutput

VOCAB = 12
EOS = 3
EOS_BOOST = 0.3  # added to registry models' eos bias so some outputs end early


class ToyEncoder(nn.Module):
    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        """src ``(B, S)`` -> memory ``(B, S, D)``, zero at padding."""
        memory = torch.tanh(self.embedding(src)) * src_mask.unsqueeze(-1)
        return EncoderOutput(memory=memory, mask=src_mask)


class ToyDecoder(nn.Module):
    def __init__(self, vocab_size: int, dim: int, sharpness: float, attention: bool) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.attention = attention
        self.sharpness = sharpness
        self.embedding = nn.Embedding(vocab_size, dim)
        self.cell = nn.GRUCell(2 * dim, dim)
        self.output_projection = nn.Linear(2 * dim, vocab_size)
        # A random bigram table keeps outputs from settling into one repeated token.
        self.bigram = nn.Embedding(vocab_size, vocab_size)

    def forward(
        self, tgt_in: Tensor, enc_out: EncoderOutput, state: DecoderState | None = None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tgt_in ``(B, T)`` -> logits ``(B, T, V)``, state(h, ctx), attention ``(B, T, S)``."""
        enc_out = enc_out.expand_rows(tgt_in.size(0))  # G hypotheses per sentence, simply
        memory, mask = enc_out.memory, enc_out.mask  # (B, S, D), (B, S)
        if state is None:
            lengths = mask.sum(1, keepdim=True).clamp(min=1)
            h = memory.sum(1) / lengths  # (B, D) mean of the real positions
            ctx = torch.zeros_like(h)
        else:
            h, ctx = state.h, state.ctx
        logits, attns = [], []
        for t in range(tgt_in.size(1)):
            h = self.cell(torch.cat([self.embedding(tgt_in[:, t]), ctx], -1), h)  # (B, D)
            if self.attention:
                scores = torch.einsum("bsd,bd->bs", memory, h).masked_fill(~mask, -torch.inf)
                weights = scores.softmax(-1)  # (B, S)
                ctx = torch.einsum("bs,bsd->bd", weights, memory)
                attns.append(weights)
            else:
                ctx = memory.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            out = self.output_projection(torch.cat([h, ctx], -1)) + self.bigram(tgt_in[:, t])
            logits.append(self.sharpness * out)
        attn = torch.stack(attns, 1) if self.attention else None
        return torch.stack(logits, 1), DecoderState(h=h, ctx=ctx), attn


class ToyModel(nn.Module):
    """``encode`` / ``decode`` like :class:`transduce.models.seq2seq.EncoderDecoder`."""

    def __init__(
        self,
        seed: int = 0,
        dim: int = 16,
        sharpness: float = 1.5,
        attention: bool = True,
        eos_bias: float = 0.5,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = ToyEncoder(VOCAB, dim)
        self.decoder = ToyDecoder(VOCAB, dim, sharpness, attention)
        with torch.no_grad():  # make eos a plausible, not dominant, choice
            self.decoder.output_projection.bias[EOS] += eos_bias
        self.eval()

    def encode(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        return self.encoder(src, src_mask)

    def decode(
        self,
        tgt_in: Tensor,
        enc_out: EncoderOutput,
        state: DecoderState | None = None,
        need_attention: bool = True,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        return self.decoder(tgt_in, enc_out, state)


def toy_batch(batch_size: int = 6, seed: int = 1, vocab_size: int = VOCAB) -> tuple[Tensor, Tensor]:
    """Right-padded random sources of different lengths: src ``(B, S)``, mask ``(B, S)``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (batch_size,), generator=g)
    lengths[0] = 8  # the longest sets S; the others are padded
    src = torch.randint(4, vocab_size, (batch_size, 8), generator=g)
    mask = torch.arange(8).unsqueeze(0) < lengths.unsqueeze(1)
    return src.masked_fill(~mask, 0), mask


def teacher_forced_log_prob(
    model: nn.Module, src: Tensor, src_mask: Tensor, tokens: list[int], bos: int = 2, eos: int = 3
) -> float:
    """Sum of log p(tokens + [eos]) for one sentence (src ``(1, S)``), read in one pass."""
    with torch.inference_mode():
        enc_out = model.encode(src, src_mask)
        tgt_in = torch.tensor([[bos, *tokens]])
        target = torch.tensor([[*tokens, eos]])
        logits, _, _ = model.decode(tgt_in, enc_out)
        log_probs = torch.log_softmax(logits.float(), -1)  # (1, T, V)
        return log_probs.gather(2, target.unsqueeze(-1)).sum().item()


# --------------------------------------------------------------------------- model cases

_SMALL = {
    "embed_dim": 16,
    "hidden_size": 16,
    "d_model": 16,
    "heads": 2,
    "ff_dim": 32,
    "layers": 2,
    "dropout": 0.0,
    "attention_dropout": 0.0,
}


def _small(config_cls: type, name: str, **extra: object) -> dict:
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return {"type": name, **{k: v for k, v in _SMALL.items() if k in fields}, **extra}


def _registry_cases() -> list:
    """One case per registered decoder (RNN ones once per attention kind)."""
    try:
        import transduce.models  # noqa: F401  (registers the built-in modules)
        from transduce.registry import DECODERS, ENCODERS
    except Exception as error:  # the models package may be mid-construction
        return [pytest.param(None, id="registry", marks=pytest.mark.skip(reason=str(error)))]
    if not DECODERS or not ENCODERS:
        return [pytest.param(None, id="registry", marks=pytest.mark.skip(reason="none registered"))]
    cases = []
    for name, (_, config_cls) in sorted(DECODERS.items()):
        encoder_name = name if name in ENCODERS else sorted(ENCODERS)[0]
        encoder = _small(ENCODERS[encoder_name][1], encoder_name)
        kinds = (
            ["none", "bahdanau", "general"] if "attention" in _field_names(config_cls) else [None]
        )
        for kind in kinds:
            extra = {} if kind is None else {"attention": kind}
            decoder = _small(config_cls, name, **extra)
            case_id = name if kind is None else f"{name}-{kind}"
            cases.append(pytest.param(("registry", encoder, decoder), id=case_id))
    return cases


def _field_names(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


MODEL_CASES = [
    pytest.param(("toy", True), id="toy"),
    pytest.param(("toy", False), id="toy-no-attention"),
    *_registry_cases(),
]


_MODELS: dict[str, nn.Module] = {}


def make_model(case: tuple) -> nn.Module:
    """The model of a ``MODEL_CASES`` entry, in eval mode (built once per session)."""
    key = repr(case)
    if key not in _MODELS:
        _MODELS[key] = _build(case)
    return _MODELS[key]


def _build(case: tuple) -> nn.Module:
    if case[0] == "toy":
        return ToyModel(attention=case[1])
    from transduce.config import ModelConfig
    from transduce.models.seq2seq import build_model

    _, encoder, decoder = case
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=dict(encoder), decoder=dict(decoder), tie_embeddings=False)
    model = build_model(cfg, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    with torch.no_grad():  # sharpen the untrained model's flat distributions
        model.decoder.output_projection.weight.mul_(4.0)
        if model.decoder.output_projection.bias is not None:  # and let some outputs end early
            model.decoder.output_projection.bias[EOS] += EOS_BOOST
    return model.eval()
