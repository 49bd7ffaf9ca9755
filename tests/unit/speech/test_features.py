"""Log-mel features against a direct DFT, SpecAugment only in training, subsampled masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transduce.config import ConfigError
from transduce.models.audio import (
    ConvSubsampling,
    LogMel,
    SpeechFrontEndConfig,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    spec_augment,
    subsampled_lengths,
)
from transduce.registry import BuildContext, build_encoder


def test_power_spectrum_equals_a_direct_dft():
    mel = LogMel(16000)
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(16000).astype(np.float32)
    power = mel.power_spectrum(torch.from_numpy(wave)).numpy()
    assert power.shape == (1 + (16000 - 400) // 160, 257)
    frame = wave[160 * 7 : 160 * 7 + 400].astype(np.float64) * np.hanning(400)
    n, k = np.arange(400), np.arange(257)[:, None]
    dft = (frame * np.exp(-2j * np.pi * k * n / 512)).sum(axis=1)  # zero-padded to 512
    np.testing.assert_allclose(power[7], np.abs(dft) ** 2, rtol=1e-3, atol=1e-3)


def test_sine_lights_up_the_mel_bin_of_its_frequency():
    rate, freq = 16000, 1000.0
    wave = np.sin(2 * np.pi * freq * np.arange(rate) / rate)
    feats = LogMel(rate, normalize=False)(wave)
    assert feats.shape == (98, 80)
    centres = mel_to_hz(np.linspace(hz_to_mel(20), hz_to_mel(8000), 82))[1:-1]
    assert int(feats.mean(dim=0).argmax()) == int(np.argmin(np.abs(centres - freq)))


def test_filterbank_shape_and_peaks():
    fb = mel_filterbank(80, 512, 16000)
    assert fb.shape == (257, 80)
    assert np.all(fb.sum(axis=0) > 0.3) and np.all(fb <= 1.0)  # no empty filter
    assert np.all(fb[:, 40:].max(axis=0) > 0.8)  # wide filters peak near 1


def test_normalization_is_per_utterance():
    feats = LogMel(16000)(np.random.default_rng(1).standard_normal(8000))
    torch.testing.assert_close(feats.mean(dim=0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(dim=0, unbiased=False), torch.ones(80), atol=1e-2, rtol=0)


def test_spec_augment_only_in_training():
    ctx = BuildContext(tgt_vocab_size=10)
    enc = build_encoder(
        {"type": "conformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1,
         "specaug_time_width": 10, "dropout": 0.0},
        ctx,
    )  # fmt: skip
    feats = torch.randn(2, 100, 80)
    mask = torch.ones(2, 100, dtype=torch.bool)
    enc.eval()
    a, b = enc(feats, mask).memory, enc(feats, mask).memory
    torch.testing.assert_close(a, b)  # eval: deterministic, no masking
    enc.train()
    torch.manual_seed(0)
    assert not torch.allclose(enc(feats, mask).memory, a)
    cfg = SpeechFrontEndConfig(specaug_freq_width=10, specaug_time_width=10)
    torch.manual_seed(0)
    masked = spec_augment(feats, mask, cfg)
    assert (masked == 0).any() and not (feats == 0).any()


def test_subsampled_mask_lengths_and_padding_does_not_leak():
    lengths = torch.tensor([100, 37, 7])
    assert subsampled_lengths(lengths).tolist() == [24, 8, 1]
    sub = ConvSubsampling(80, 8, 16).eval()
    feats = torch.randn(3, 100, 80)
    mask = torch.arange(100).unsqueeze(0) < lengths.unsqueeze(1)
    feats = feats * mask.unsqueeze(-1)
    out, out_mask = sub(feats, mask)
    assert out.shape[:2] == (3, 24) and out_mask.sum(dim=1).tolist() == [24, 8, 1]
    alone, _ = sub(feats[1:2, :37], mask[1:2, :37])
    torch.testing.assert_close(out[1, :8], alone[0], atol=1e-5, rtol=1e-5)


def test_every_speech_encoder_returns_subsampled_mask_and_ctc_head():
    ctx = BuildContext(tgt_vocab_size=12)
    feats, mask = torch.randn(2, 60, 80), torch.arange(60).unsqueeze(0) < torch.tensor([[60], [30]])
    for section in (
        {"type": "conformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1},
        {"type": "speech_transformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1},
        {"type": "speech_blstm", "hidden_size": 16, "layers": 1, "proj_dim": 32},
    ):
        enc = build_encoder(section, ctx).eval()
        out = enc(feats, mask)
        assert out.mask.sum(dim=1).tolist() == [14, 6], section["type"]
        assert out.memory.shape == (2, 14, enc.output_dim)
        assert enc.ctc_head.out_features == 12


def test_pyramidal_blstm_halves_time_per_pyramid_layer_and_ignores_padding():
    ctx = BuildContext(tgt_vocab_size=12)
    section = {"type": "speech_blstm", "hidden_size": 8, "layers": 3, "proj_dim": 16}
    enc = build_encoder({**section, "pyramid": 2}, ctx).eval()
    lengths = torch.tensor([[100], [37]])
    feats, mask = torch.randn(2, 100, 80), torch.arange(100).unsqueeze(0) < lengths
    out = enc(feats * mask.unsqueeze(-1), mask)
    # conv x4: 24 and 8 frames; two halvings (odd frames paired with zeros): 6 and 2
    assert out.mask.sum(dim=1).tolist() == [6, 2]
    assert out.memory.shape == (2, 6, 16)
    assert out.final_state[0].shape == (2, 3, 16)
    alone = enc(feats[1:2, :37], mask[1:2, :37])
    torch.testing.assert_close(out.memory[1, :2], alone.memory[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.final_state[0][1], alone.final_state[0][0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="pyramid"):
        build_encoder({**section, "pyramid": 3}, ctx)
