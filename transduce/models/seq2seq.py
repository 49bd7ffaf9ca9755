"""EncoderDecoder: one encoder, one decoder, ``encode()`` and ``decode()``."""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from transduce.config import ConfigError, ModelConfig
from transduce.models.base import Decoder, DecoderState, Encoder, EncoderOutput
from transduce.registry import BuildContext, build_decoder, build_encoder


class EncoderDecoder(nn.Module):
    """Any registered encoder paired with any registered decoder.

    The model returns logits; the loss lives in training.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        """src: ``(B, S)`` ids or ``(B, S, F)`` features; src_mask ``(B, S)`` bool."""
        return self.encoder(src, src_mask)

    def decode(
        self,
        tgt_in: Tensor,
        enc_out: EncoderOutput,
        state: DecoderState | None = None,
        need_attention: bool = True,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """tgt_in ``(B, T)`` -> logits ``(B, T, V)``, state, attention ``(B, T, S)``.

        ``B`` may be ``G`` hypotheses per sentence of ``enc_out`` (see ``models.base``);
        with ``need_attention=False`` the attention may be None (fused kernels).
        """
        return self.decoder(tgt_in, enc_out, state, need_attention=need_attention)

    def forward(
        self, src: Tensor, src_mask: Tensor, tgt_in: Tensor, need_attention: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits ``(B, T, V)`` and attention for the whole target."""
        enc_out = self.encode(src, src_mask)
        logits, _, attn = self.decode(tgt_in, enc_out, need_attention=need_attention)
        return logits, attn


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where it cannot be told)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_size(
    cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, copies: int = 1
) -> int:
    """Count the parameters ``cfg`` builds (on the meta device: nothing is allocated) and
    refuse, naming the keys, a model whose ``copies`` float32 copies exceed this machine's
    memory (inference needs 1 copy; training 4: weights, gradients and Adam's moments).
    Returns the parameter count."""
    try:
        with torch.device("meta"):
            model = _build(cfg, src_vocab_size, tgt_vocab_size, 0)
    except ConfigError:
        raise
    except Exception:  # a module that cannot be built on meta: the real build will tell
        return -1
    n = sum(p.numel() for p in model.parameters())
    need, have = 4 * n * copies, memory_bytes()
    if have is not None and need > have:
        raise ConfigError(
            f"model: {n:,} parameters need about {need / 2**30:,.1f} GiB "
            f"({copies} float32 copies), more than this machine's {have / 2**30:,.1f} GiB; "
            "lower model.encoder / model.decoder sizes (d_model, hidden_size, ff_dim, layers, "
            "embed_dim) or tokenizer.vocab_size"
        )
    return n


def build_model(
    cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0
) -> EncoderDecoder:
    """Build encoder and decoder from their registry sections and tie embeddings.

    A model too large for this machine's memory is refused before anything is allocated.
    """
    check_model_size(cfg, src_vocab_size, tgt_vocab_size)
    try:
        return _build(cfg, src_vocab_size, tgt_vocab_size, pad_id)
    except (MemoryError, torch.OutOfMemoryError) as e:
        raise ConfigError(
            f"model: not enough memory to build it ({str(e).splitlines()[0][:200]}); lower "
            "model.encoder / model.decoder sizes or tokenizer.vocab_size"
        ) from None
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if "alloc" in why.lower():
            raise ConfigError(
                f"model: not enough memory to build it ({why}); lower "
                "model.encoder / model.decoder sizes or tokenizer.vocab_size"
            ) from None
        # a size or option a module's own checks missed (e.g. a negative width)
        raise ConfigError(
            f"model: the model.encoder / model.decoder sections cannot be built ({why}); "
            "check their sizes (positive) and options"
        ) from None


def _build(
    cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int
) -> EncoderDecoder:
    ctx = BuildContext(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, pad_id=pad_id)
    encoder = build_encoder(cfg.encoder, ctx)
    ctx.memory_dim = encoder.output_dim
    ctx.encoder = encoder
    decoder = build_decoder(cfg.decoder, ctx)
    if cfg.tie_embeddings:
        emb, proj = decoder.embedding, decoder.output_projection
        if emb.weight.shape != proj.weight.shape:
            raise ConfigError(
                "model.tie_embeddings: the decoder's embedding "
                f"{tuple(emb.weight.shape)} and output projection {tuple(proj.weight.shape)} "
                "differ in shape; set tie_embeddings: false or make the sizes match"
            )
        proj.weight = emb.weight
    if cfg.share_embeddings:
        enc_emb = getattr(encoder, "embedding", None)
        if enc_emb is None or enc_emb.weight.shape != decoder.embedding.weight.shape:
            raise ConfigError(
                "model.share_embeddings needs a text encoder whose embedding has the decoder's "
                "shape and a shared vocabulary (tokenizer.shared: true)"
            )
        encoder.embedding = decoder.embedding
    return EncoderDecoder(encoder, decoder)
