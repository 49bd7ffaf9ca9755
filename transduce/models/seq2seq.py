"""EncoderDecoder: one encoder, one decoder, ``encode()`` and ``decode()``."""

from __future__ import annotations

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


def build_model(
    cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0
) -> EncoderDecoder:
    """Build encoder and decoder from their registry sections and tie embeddings."""
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
