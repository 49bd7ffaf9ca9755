"""Speech: log-mel features, SpecAugment, conv subsampling, speech encoders, CTC head.

Features are computed on torch outside the model (the task turns waveforms into
``src`` ``(B, S, F)`` with ``src_mask`` ``(B, S)``); everything after them is in the
encoder: SpecAugment (training mode only), a x4 convolutional subsampling, the
stack (Conformer, Transformer or BiLSTM) and a CTC head ``Linear(D, V)`` whose
blank is the pad id 0 (targets never contain pad, so no extra id is needed).

Registered encoders: ``conformer``, ``speech_transformer``, ``speech_blstm``.
Registered aux loss: ``ctc`` (``train.aux_losses: {ctc: 0.3}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from transduce.config import ConfigError
from transduce.models.attention import MultiHeadAttention
from transduce.models.base import Encoder, EncoderOutput
from transduce.models.dropout import Dropout
from transduce.models.embeddings import SinusoidalPositionalEncoding
from transduce.models.transformer import (
    FeedForward,
    TransformerEncoderConfig,
    TransformerEncoderLayer,
)
from transduce.registry import BuildContext, register_aux_loss, register_encoder

BLANK_ID = 0  # CTC blank = the pad id

# ----------------------------------------------------------------------------- features


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, fmin: float = 20.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular HTK-mel filters ``(n_fft // 2 + 1, n_mels)``, each peaking at 1."""
    fmax = fmax or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)  # FFT bin centres (Hz)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMel:
    """80-bin log-mel features: 25 ms Hann windows every 10 ms, 512-point FFT (16 kHz).

    ``normalize``: per-utterance mean/variance normalization of each mel bin over
    time (CMVN per utterance), so recording gain and channel colour matter less.
    No parameters: this is not an ``nn.Module`` and is not saved with the model.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        normalize: bool = True,
    ) -> None:
        self.sample_rate = sample_rate
        self.win = int(round(sample_rate * win_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window = torch.hann_window(self.win, periodic=False)
        self.fbank = torch.from_numpy(mel_filterbank(n_mels, self.n_fft, sample_rate))
        self.normalize = normalize

    def num_frames(self, num_samples: int) -> int:
        return 1 + max(0, num_samples - self.win) // self.hop

    def power_spectrum(self, wave: Tensor) -> Tensor:
        """``(N,)`` samples -> ``(frames, n_fft // 2 + 1)`` windowed |DFT|^2."""
        if wave.numel() < self.win:
            wave = F.pad(wave, (0, self.win - wave.numel()))
        frames = wave.unfold(0, self.win, self.hop) * self.window  # (S, win)
        return torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)

    def __call__(self, wave: Tensor | np.ndarray) -> Tensor:
        """``(N,)`` float samples -> ``(S, n_mels)`` float32 features."""
        wave = torch.as_tensor(wave, dtype=torch.float32)
        feats = torch.log(self.power_spectrum(wave) @ self.fbank + 1e-6)  # (S, M)
        if self.normalize:
            std = feats.std(dim=0, keepdim=True, unbiased=False) if len(feats) > 1 else 1.0
            feats = (feats - feats.mean(dim=0, keepdim=True)) / (std + 1e-5)
        return feats

    def batch(self, waves: list) -> tuple[Tensor, Tensor]:
        """Waveforms -> ``feats (B, S, n_mels)`` zero-padded and ``mask (B, S)``."""
        feats = [self(w) for w in waves]
        lengths = torch.tensor([len(f) for f in feats])
        out = torch.zeros(len(feats), int(lengths.max()), feats[0].size(1))
        for i, f in enumerate(feats):
            out[i, : len(f)] = f
        return out, torch.arange(out.size(1)).unsqueeze(0) < lengths.unsqueeze(1)


# ----------------------------------------------------------------------------- front end


@dataclass
class SpeechFrontEndConfig:
    n_mels: int = 80  # feature bins; must match audio.n_mels
    subsampling_channels: int = 64  # channels of the two stride-2 convolutions
    specaug_freq_masks: int = 2  # SpecAugment, training only: masks across mel bins
    specaug_freq_width: int = 15  # widest frequency mask (bins)
    specaug_time_masks: int = 2  # masks across frames
    specaug_time_width: int = 40  # widest time mask (frames), at most 20% of the utterance
    ctc: bool = True  # a CTC head Linear(D, V) on the memory (blank = pad id 0)
    dropout: float = 0.1


def spec_augment(feats: Tensor, mask: Tensor, cfg: SpeechFrontEndConfig) -> Tensor:
    """Zero random bands of mel bins and of frames (Park et al. 2019), per utterance.

    feats ``(B, S, F)`` (normalized, so 0 is the mean), mask ``(B, S)``.
    """
    feats = feats.clone()
    B, _, n_bins = feats.shape
    lengths = mask.sum(dim=1).tolist()
    for b in range(B):
        for _ in range(cfg.specaug_freq_masks):
            w = int(torch.randint(0, cfg.specaug_freq_width + 1, ()))
            f0 = int(torch.randint(0, max(1, n_bins - w), ()))
            feats[b, :, f0 : f0 + w] = 0
        limit = min(cfg.specaug_time_width, int(0.2 * lengths[b]))
        for _ in range(cfg.specaug_time_masks):
            w = int(torch.randint(0, limit + 1, ()))
            t0 = int(torch.randint(0, max(1, lengths[b] - w), ()))
            feats[b, t0 : t0 + w] = 0
    return feats


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames after two 3x3 stride-2 convolutions without padding: ``L -> (L-1)//2`` twice."""
    return ((lengths - 1) // 2 - 1) // 2


class ConvSubsampling(nn.Module):
    """x4 in time: two ``Conv2d(3x3, stride 2)`` + ReLU, then ``Linear`` to ``d_model``.

    Real output frames only see real input frames, so padding never leaks in.
    Utterances need at least 7 frames (70 ms) to give one output frame.
    """

    def __init__(self, n_mels: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2), nn.ReLU()
        )
        freq = ((n_mels - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, d_model)

    def forward(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """feats ``(B, S, F)``, mask ``(B, S)`` -> ``(B, S', D)``, mask ``(B, S')``, S' ~ S/4."""
        x = self.conv(feats.unsqueeze(1))  # (B, C, S', F')
        B, C, S, Fp = x.shape
        x = self.out(x.transpose(1, 2).reshape(B, S, C * Fp))
        lengths = subsampled_lengths(mask.sum(dim=1)).clamp(min=0)
        new_mask = torch.arange(S, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        return x * new_mask.unsqueeze(-1), new_mask


class SpeechEncoder(Encoder):
    """Shared parts: SpecAugment, subsampling, CTC head. Subclasses build ``body``."""

    def _front(self, cfg: SpeechFrontEndConfig, ctx: BuildContext, d_model: int) -> None:
        if cfg.n_mels < 7 or cfg.subsampling_channels <= 0:
            raise ConfigError(
                "model.encoder: n_mels must be at least 7 and subsampling_channels positive"
            )
        self.front_cfg = cfg
        self.n_mels = cfg.n_mels
        self.subsample = ConvSubsampling(cfg.n_mels, cfg.subsampling_channels, d_model)
        self.dropout = Dropout(cfg.dropout)

    def _head(self, cfg: SpeechFrontEndConfig, ctx: BuildContext) -> None:
        self.ctc_head = (
            nn.Linear(self.output_dim, ctx.tgt_vocab_size)
            if cfg.ctc and ctx.tgt_vocab_size
            else None
        )

    def front(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, Tensor]:
        if src.dim() != 3 or src.size(-1) != self.n_mels:
            raise ConfigError(
                f"the speech encoder expects features (B, S, {self.n_mels}), got "
                f"{tuple(src.shape)}: check audio.n_mels against model.encoder.n_mels"
            )
        if self.training:
            src = spec_augment(src, src_mask, self.front_cfg)
        return self.subsample(src, src_mask)


# ----------------------------------------------------------------------------- Conformer


@dataclass
class ConformerConfig(SpeechFrontEndConfig):
    d_model: int = 144
    heads: int = 4
    ff_dim: int = 576
    layers: int = 4
    conv_kernel: int = 15  # depthwise convolution width (odd)
    attention_dropout: float = 0.0


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, LayerNorm, Swish, pointwise conv.

    LayerNorm rather than the paper's BatchNorm: batch statistics would mix in
    padding and differ between a batch and its sentences one by one.
    """

    def __init__(self, d: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.norm = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = F.glu(self.pw1(x), dim=-1) * mask.unsqueeze(-1)  # padding must not enter the conv
        x = self.dw(x.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.pw2(F.silu(self.norm(x))))


class ConformerLayer(nn.Module):
    """Macaron block: ½FF, self-attention, convolution, ½FF, LayerNorm (Gulati et al. 2020)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_dim, "gelu", cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_dim, "gelu", cfg.dropout)
        self.attn = MultiHeadAttention(d, cfg.heads, cfg.attention_dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(5))
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        n = self.norms
        x = x + 0.5 * self.dropout(self.ff1(n[0](x)))
        h = n[1](x)
        x = x + self.dropout(self.attn(h, h, key_mask=mask)[0])
        x = x + self.conv(n[2](x), mask)
        x = x + 0.5 * self.dropout(self.ff2(n[3](x)))
        return n[4](x)


@register_encoder("conformer", ConformerConfig)
class ConformerEncoder(SpeechEncoder):
    """Log-mel ``(B, S, F)`` -> SpecAugment -> conv x4 -> sinusoidal positions -> Conformer.

    Absolute sinusoidal positions are added after subsampling (ESPnet uses relative
    positional attention; absolute ones keep the shared attention module).
    """

    def __init__(self, cfg: ConformerConfig, ctx: BuildContext) -> None:
        super().__init__()
        if cfg.d_model % cfg.heads or cfg.conv_kernel % 2 == 0:
            raise ConfigError(
                "model.encoder: d_model must divide by heads and conv_kernel must be odd"
            )
        self._front(cfg, ctx, cfg.d_model)
        self.positions = SinusoidalPositionalEncoding(cfg.d_model)
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.layers))
        self.scale = math.sqrt(cfg.d_model)
        self.output_dim = cfg.d_model
        self._head(cfg, ctx)

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        x, mask = self.front(src, src_mask)  # (B, S', D), (B, S')
        x = self.dropout(self.positions(x * self.scale))
        for layer in self.layers:
            x = layer(x, mask)
        return EncoderOutput(memory=x * mask.unsqueeze(-1), mask=mask)


# ----------------------------------------------------------------------------- Transformer


@dataclass
class SpeechTransformerConfig(SpeechFrontEndConfig):
    d_model: int = 256
    heads: int = 4
    ff_dim: int = 1024
    layers: int = 6
    attention_dropout: float = 0.0
    activation: str = "relu"  # relu | gelu


@register_encoder("speech_transformer", SpeechTransformerConfig)
class SpeechTransformerEncoder(SpeechEncoder):
    """Log-mel -> SpecAugment -> conv x4 -> the pre-norm Transformer encoder layers."""

    def __init__(self, cfg: SpeechTransformerConfig, ctx: BuildContext) -> None:
        super().__init__()
        self._front(cfg, ctx, cfg.d_model)
        layer_cfg = TransformerEncoderConfig(
            d_model=cfg.d_model,
            heads=cfg.heads,
            ff_dim=cfg.ff_dim,
            layers=cfg.layers,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation=cfg.activation,
        )
        self.positions = SinusoidalPositionalEncoding(cfg.d_model)
        self.layers = nn.ModuleList(TransformerEncoderLayer(layer_cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.scale = math.sqrt(cfg.d_model)
        self.output_dim = cfg.d_model
        self._head(cfg, ctx)

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        x, mask = self.front(src, src_mask)
        x = self.dropout(self.positions(x * self.scale))
        for layer in self.layers:
            x = layer(x, mask)
        return EncoderOutput(memory=self.norm(x) * mask.unsqueeze(-1), mask=mask)


# ----------------------------------------------------------------------------- BiLSTM


@dataclass
class SpeechBLSTMConfig(SpeechFrontEndConfig):
    hidden_size: int = 256  # per direction; output_dim = 2 * hidden_size
    layers: int = 3
    proj_dim: int = 256  # width after subsampling
    pyramid: int = 0  # the first N layers' outputs are halved in time (LAS's pBLSTM)


@register_encoder("speech_blstm", SpeechBLSTMConfig)
class SpeechBLSTMEncoder(SpeechEncoder):
    """Log-mel -> SpecAugment -> conv x4 -> BiLSTM over packed sequences.

    With ``pyramid: N`` (Listen, Attend and Spell's pyramidal BiLSTM) the output of
    each of the first N layers is halved in time before the next layer reads it:
    every two consecutive frames are concatenated (an odd last frame is paired with
    zeros), so the memory has ``4 * 2**N`` times fewer frames than the features.

    final_state ``(h, c)``, each ``(B, layers, 2H)``, as the text LSTM encoder's, so
    every RNN decoder (attention ``none`` included) pairs with it.
    """

    def __init__(self, cfg: SpeechBLSTMConfig, ctx: BuildContext) -> None:
        super().__init__()
        if not 0 <= cfg.pyramid < cfg.layers:
            raise ConfigError(
                f"model.encoder.pyramid: {cfg.pyramid} must be between 0 and layers - 1 "
                f"({cfg.layers - 1}): the last layer's output is the memory"
            )
        self._front(cfg, ctx, cfg.proj_dim)
        self.pyramid = cfg.pyramid
        H = cfg.hidden_size
        if cfg.pyramid == 0:
            self.rnn = nn.LSTM(
                cfg.proj_dim,
                H,
                num_layers=cfg.layers,
                batch_first=True,
                bidirectional=True,
                dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            )
        else:  # one module per layer: the time axis changes between them
            dims = [cfg.proj_dim] + [
                4 * H if i < cfg.pyramid else 2 * H for i in range(cfg.layers - 1)
            ]
            self.layers = nn.ModuleList(
                nn.LSTM(d, H, batch_first=True, bidirectional=True) for d in dims
            )
        self.num_layers = cfg.layers
        self.output_dim = 2 * H
        self._head(cfg, ctx)

    def _batch_first(self, h: Tensor, layers: int) -> Tensor:
        _, B, H = h.shape
        h = h.view(layers, 2, B, H).permute(2, 0, 1, 3)
        return h.reshape(B, layers, 2 * H)

    @staticmethod
    def _run(rnn: nn.LSTM, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, True, enforce_sorted=False)
        out, (h, c) = rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return memory, h, c

    @staticmethod
    def _halve(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S, D) -> (B, ceil(S/2), 2D)``: consecutive frames concatenated.

        ``x`` comes from ``pad_packed_sequence``, which leaves padded frames at zero,
        so a last real frame of odd index is paired with zeros."""
        if x.size(1) % 2:
            x = F.pad(x, (0, 0, 0, 1))
            mask = F.pad(mask, (0, 1))
        B, S, D = x.shape
        return x.reshape(B, S // 2, 2 * D), mask.view(B, S // 2, 2).any(dim=2)

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        x, mask = self.front(src, src_mask)
        if self.pyramid == 0:
            memory, h, c = self._run(self.rnn, self.dropout(x), mask)
            final = (self._batch_first(h, self.num_layers), self._batch_first(c, self.num_layers))
            return EncoderOutput(memory=self.dropout(memory), mask=mask, final_state=final)
        hs, cs = [], []
        for i, rnn in enumerate(self.layers):
            x, h, c = self._run(rnn, self.dropout(x), mask)
            hs.append(self._batch_first(h, 1))
            cs.append(self._batch_first(c, 1))
            if i < self.pyramid:
                x, mask = self._halve(x, mask)
        final = (torch.cat(hs, dim=1), torch.cat(cs, dim=1))
        return EncoderOutput(memory=self.dropout(x), mask=mask, final_state=final)


# ----------------------------------------------------------------------------- CTC


def ctc_log_probs(model: nn.Module, enc_out: EncoderOutput) -> Tensor:
    """The CTC head's ``(B, S', V)`` float32 log-probs; a clear error without a head."""
    head = getattr(model.encoder, "ctc_head", None)
    if head is None:
        raise ConfigError(
            "CTC needs a speech encoder with a CTC head (conformer, speech_transformer, "
            "speech_blstm with ctc: true)"
        )
    return F.log_softmax(head(enc_out.memory).float(), dim=-1)


@register_aux_loss("ctc")
def ctc_aux_loss(model: nn.Module, batch, enc_out: EncoderOutput, attn) -> Tensor:
    """CTC on the encoder, summed over utterances (``train.aux_losses: {ctc: 0.3}``).

    Targets are ``batch.tgt_out`` without its eos; blank is the pad id 0. An
    utterance too short for its target contributes 0 (``zero_infinity``).
    """
    log_probs = ctc_log_probs(model, enc_out)  # (B, S', V)
    target = batch.tgt_out  # (B, T): y + eos, then pad
    target_lengths = target.ne(BLANK_ID).sum(dim=1) - 1
    return F.ctc_loss(
        log_probs.transpose(0, 1),
        target,
        enc_out.mask.sum(dim=1),
        target_lengths,
        blank=BLANK_ID,
        reduction="sum",
        zero_infinity=True,
    )


__all__ = [
    "BLANK_ID",
    "ConformerEncoder",
    "ConvSubsampling",
    "LogMel",
    "SpeechBLSTMEncoder",
    "SpeechTransformerEncoder",
    "ctc_aux_loss",
    "ctc_log_probs",
    "mel_filterbank",
    "spec_augment",
    "subsampled_lengths",
]
