"""Whisper (Radford et al. 2022) as a transduce encoder, plus its exact log-mel front end.

Whisper is not a second Transformer here: its encoder is a small convolutional stem
in front of the existing :class:`TransformerEncoderLayer` stack, and its decoder is
the existing Transformer decoder configured with learned positions, GELU, pre-norm,
no embedding scale and a tied output projection without bias
(:mod:`transduce.convert.whisper` writes such a config).

Encoder (``type: whisper``):

    log-mel (B, 3000, M) -> Conv1d(M, D, 3, pad 1) -> GELU
      -> Conv1d(D, D, 3, stride 2, pad 1) -> GELU -> + sinusoidal positions (B, 1500, D)
      -> pre-norm self-attention layers -> final LayerNorm

The encoder always reads a 30-second window (3000 frames, zero-padded in the feature
domain as faster-whisper does), attends over all of it, and returns a memory whose
mask is all True: that is what the pretrained weights expect.

The query/key/value projections keep a key bias although Whisper has none: the
imported bias is zero and a bias on the keys adds the same ``q . b`` to every score
of a query, which the softmax cancels, so outputs and gradients are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transduce.config import ConfigError
from transduce.models.base import Encoder, EncoderOutput
from transduce.models.transformer import TransformerEncoderConfig, TransformerEncoderLayer
from transduce.registry import BuildContext, register_encoder

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms windows
HOP = 160  # 10 ms hop
WINDOW_FRAMES = 3000  # 30 s: what the encoder reads
WINDOW_SECONDS = WINDOW_FRAMES * HOP / SAMPLE_RATE


# ----------------------------------------------------------------------------- features


def slaney_mel_filters(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Slaney-style mel filters ``(n_mels, n_fft // 2 + 1)``, area-normalized.

    The Slaney mel scale is linear below 1 kHz (``mel = 3 f / 200``) and logarithmic
    above (27 mels per factor 6.4); each triangle is scaled by ``2 / bandwidth`` so
    every band has about the same energy (librosa's ``norm="slaney"``), as Whisper's
    filters are.
    """
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def to_mel(f: float) -> float:
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    mels = np.linspace(0.0, to_mel(sample_rate / 2), n_mels + 2)
    hz = np.where(
        mels < min_log_mel, mels * f_sp, min_log_hz * np.exp(logstep * (mels - min_log_mel))
    )
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)  # (n_fft // 2 + 1,)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    tri = np.maximum(0.0, np.minimum(rising, falling))
    tri *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return torch.from_numpy(tri.astype(np.float32))


class WhisperLogMel:
    """Whisper's log-mel spectrogram, computed as faster-whisper 1.x does.

    ``wave`` ``(N,)`` at 16 kHz gets 160 zero samples appended; a centred (reflect
    padded) STFT with a periodic Hann window of 400 samples every 160 samples, its
    last frame dropped, gives ``N // 160 + 1`` frames; power through Slaney mel
    filters, ``log10`` (floor 1e-10), clamped to ``max - 8`` and mapped by
    ``(x + 4) / 4``; the first ``N // 160`` frames are the content. ``__call__``
    returns ``(N // 160, n_mels)``; :meth:`batch` pads or
    trims every clip to the 3000 frames of one 30-second window with zeros.
    No parameters: not an ``nn.Module``, not saved with the model.
    """

    def __init__(self, n_mels: int = 80) -> None:
        self.n_mels = n_mels
        self.sample_rate = SAMPLE_RATE
        self.filters = slaney_mel_filters(n_mels)  # (M, 201)
        self.window = torch.hann_window(N_FFT, periodic=True)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return num_samples // HOP

    def __call__(self, wave: Tensor | np.ndarray) -> Tensor:
        """``(N,)`` float samples -> ``(N // 160, n_mels)`` float32 features."""
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        frames_out = self.num_frames(wave.numel())
        wave = F.pad(wave, (0, HOP))
        padded = F.pad(wave[None, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[0, 0]
        frames = padded.unfold(0, N_FFT, HOP) * self.window  # (S + 1, 400)
        power = torch.fft.rfft(frames.double(), dim=-1).abs().pow(2)[:-1].float()  # (S, 201)
        mel = power @ self.filters.T  # (S, M)
        log_spec = torch.log10(mel.clamp(min=1e-10))
        # The clamp reads the maximum of every frame, the one past the content included.
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0)[:frames_out]

    def batch(self, waves: list) -> tuple[Tensor, Tensor]:
        """Waveforms -> ``feats (B, 3000, n_mels)`` and an all-True mask ``(B, 3000)``."""
        out = torch.zeros(len(waves), WINDOW_FRAMES, self.n_mels)
        for i, w in enumerate(waves):
            f = self(w)[:WINDOW_FRAMES]
            out[i, : len(f)] = f
        return out, torch.ones(len(waves), WINDOW_FRAMES, dtype=torch.bool)


# ----------------------------------------------------------------------------- encoder


def whisper_positions(length: int, dim: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's sinusoids ``(length, dim)``: all sines first, then all cosines."""
    half = dim // 2
    inv = torch.exp(-math.log(max_timescale) / (half - 1) * torch.arange(half, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None]
    return torch.cat([t.sin(), t.cos()], dim=1).float()


@dataclass
class WhisperEncoderConfig:
    n_mels: int = 80  # log-mel bins (80; 128 for large-v3)
    d_model: int = 512
    heads: int = 8
    ff_dim: int = 2048
    layers: int = 6
    max_positions: int = 1500  # encoder positions: 3000 frames after the stride-2 conv
    dropout: float = 0.0  # fine-tuning may raise it
    attention_dropout: float = 0.0


@register_encoder("whisper", WhisperEncoderConfig)
class WhisperEncoder(Encoder):
    """Whisper's audio encoder on the shared Transformer layers.

    src ``(B, S, n_mels)`` with ``S <= 2 * max_positions`` -> memory ``(B, ceil(S/2), D)``.
    The positions are a persistent buffer so imported values are used bit for bit.
    """

    def __init__(self, cfg: WhisperEncoderConfig, ctx: BuildContext) -> None:
        super().__init__()
        if cfg.d_model % cfg.heads != 0:
            raise ConfigError(
                f"model.encoder.d_model ({cfg.d_model}) must be divisible by heads ({cfg.heads})"
            )
        d = cfg.d_model
        self.output_dim = d
        self.n_mels = cfg.n_mels
        self.conv1 = nn.Conv1d(cfg.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", whisper_positions(cfg.max_positions, d))
        layer_cfg = TransformerEncoderConfig(
            d_model=d,
            heads=cfg.heads,
            ff_dim=cfg.ff_dim,
            layers=cfg.layers,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation="gelu",
            norm_first=True,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(TransformerEncoderLayer(layer_cfg) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(d)

    def forward(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        """src ``(B, S, M)`` log-mel; src_mask ``(B, S)`` (ignored: Whisper reads the
        whole window, padding included) -> memory ``(B, S', D)`` with an all-True mask."""
        if src.size(-1) != self.n_mels:
            raise ConfigError(
                f"the whisper encoder reads {self.n_mels} mel bins but got {src.size(-1)}; "
                "set audio.n_mels to match"
            )
        x = F.gelu(self.conv1(src.transpose(1, 2)))  # (B, D, S)
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S', D)
        if x.size(1) > self.positions.size(0):
            raise ConfigError(
                f"audio window of {src.size(1)} frames is longer than the whisper encoder's "
                f"{2 * self.positions.size(0)}"
            )
        x = self.dropout(x + self.positions[: x.size(1)].to(x.dtype))
        for layer in self.layers:
            x = layer(x, None)  # no key mask: every frame of the window is attended
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return EncoderOutput(memory=self.final_norm(x), mask=mask, final_state=None)


__all__ = [
    "WhisperEncoder",
    "WhisperEncoderConfig",
    "WhisperLogMel",
    "slaney_mel_filters",
    "whisper_positions",
]
