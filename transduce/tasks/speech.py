"""Speech recognition: audio in (JSONL manifests), characters or subwords out, WER and CER.

A manifest has one JSON object per line::

    {"audio": "audio/train/000001.flac", "duration": 2.41, "text": "Original text."}

``audio`` is absolute or relative to the manifest's folder. Texts pass through
:func:`transduce.data.text_norm.normalize_text` for training targets AND for the
references the metrics compare against. The source of an :class:`Example` is an
:class:`AudioClip` (its length is in 10 ms feature frames, for batching); features
(80-bin log-mel, per-utterance mean/variance normalized) are computed at collate
time, after the training augmentations of ``audio:`` (speed, noise, telephone).
SpecAugment lives in the encoder and runs in training mode only.

For prediction, an input is an audio path; recordings longer than
``audio.max_seconds`` are cut at silences (:func:`split_input`) and the pieces'
transcripts are joined.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from transduce.config import ConfigError, TransduceError
from transduce.data import audio as A
from transduce.data.readers import resolve_data_path
from transduce.data.text_norm import normalize_text
from transduce.data.tokenizers import load_tokenizers, save_tokenizers, train_tokenizer
from transduce.decoding.processors import SuppressTokens
from transduce.evaluation.metrics import compute_metrics
from transduce.models.audio import LogMel
from transduce.models.whisper import WINDOW_SECONDS, WhisperLogMel
from transduce.tasks.base import Batch, Example, Task, register_task, target_tensors

log = logging.getLogger(__name__)
FRAMES_PER_SECOND = 100  # 10 ms hop


@dataclass
class AudioClip:
    """A recording (or a piece of one): ``len()`` is its length in feature frames."""

    path: str
    frames: int
    wave: np.ndarray | None = None  # already read (pieces of long recordings)
    start: float = 0.0  # seconds from the start of the recording to this piece

    def __len__(self) -> int:
        return self.frames


def read_manifest(path: str | Path) -> list[tuple[str, float, str]]:
    """JSONL manifest -> ``[(audio path, duration s, text)]``; errors name file and line."""
    path = resolve_data_path(path)
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TransduceError(f"cannot read manifest {path}: {e}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio, text = row["audio"], row["text"]
            duration = float(row.get("duration", 0.0))
            if not 0.0 <= duration < float("inf"):
                raise ValueError(f"'duration' must be a finite number >= 0, got {duration}")
            if not isinstance(audio, str) or not isinstance(text, str):
                raise TypeError("'audio' and 'text' must be strings")
            if not text.strip() or not audio.strip():
                raise ValueError("'audio' and 'text' must not be empty")
        except (ValueError, KeyError, TypeError) as e:
            raise TransduceError(
                f"{path}:{lineno}: expected a JSON object with 'audio', 'duration', 'text' ({e})"
            ) from None
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        items.append((str(audio_path), duration, text))
    if not items:
        raise TransduceError(f"manifest {path} holds no utterances")
    return items


@register_task("speech")
class SpeechTask(Task):
    """Audio to text. Items are ``(audio path, duration, text)``."""

    metric_names = ("wer", "cer")
    higher_is_better = {"wer": False, "cer": False, "loss": False}

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        a = cfg.audio
        if a.sample_rate < 8000:
            raise ConfigError(f"audio.sample_rate must be at least 8000, got {a.sample_rate}")
        if a.max_seconds <= a.min_seconds:
            raise ConfigError("audio.max_seconds must be larger than audio.min_seconds")
        if a.frontend == "whisper":
            if a.sample_rate != 16000:
                raise ConfigError("audio.frontend: whisper needs audio.sample_rate: 16000")
            if a.max_seconds > WINDOW_SECONDS:
                raise ConfigError(
                    f"audio.max_seconds must be at most {WINDOW_SECONDS:g} with the whisper "
                    "frontend (the encoder reads 30-second windows)"
                )
            self.features = WhisperLogMel(a.n_mels)
        elif a.frontend == "logmel":
            self.features = LogMel(a.sample_rate, a.n_mels)
        else:
            raise ConfigError(f"audio.frontend must be logmel or whisper, got {a.frontend!r}")
        self.tok = None
        self._cache: dict[str, np.ndarray] = {}

    # tokenizer -------------------------------------------------------------------
    def fit(self, train_items: list) -> None:
        self.tok = train_tokenizer(
            self.cfg.tokenizer, [normalize_text(t) for _, _, t in train_items]
        )

    def save(self, directory: Path) -> None:
        save_tokenizers(Path(directory), self.tok, self.tok, shared=True)

    def load(self, directory: Path) -> None:
        _, self.tok = load_tokenizers(Path(directory))

    @property
    def src_vocab_size(self) -> int:
        return 0  # the source is audio

    @property
    def tgt_vocab_size(self) -> int:
        return self.tok.vocab_size

    # data ------------------------------------------------------------------------
    def read_split(self, split: str) -> list:
        spec = getattr(self.cfg.data, split)
        if not spec:
            raise ConfigError(f"data.{split} is not set in the config")
        return read_manifest(spec)

    def examples(self, items: list, train: bool = False) -> list[Example]:
        a, max_tgt = self.cfg.audio, self.cfg.data.max_tgt_len
        out, skipped = [], 0
        for path, duration, text in items:
            if train and duration > a.max_seconds:
                skipped += 1
                continue
            ref = normalize_text(text)
            if self.tok.kind == "whisper":  # Whisper writes cased, punctuated text
                ids = self.tok.prompt_ids + self.tok.encode(text)
            else:
                ids = self.tok.encode(ref)
            if train:
                ids = ids[:max_tgt]
            frames = max(1, int(duration * FRAMES_PER_SECOND))
            out.append(Example(src=AudioClip(path, frames), tgt=ids, ref=ref, src_text=path))
        if skipped:
            log.warning("%d training clips longer than audio.max_seconds were skipped", skipped)
        return out

    def _wave(self, clip: AudioClip) -> np.ndarray:
        if clip.wave is not None:
            return clip.wave
        a = self.cfg.audio
        cached = self._cache.get(clip.path)
        if cached is not None:
            return cached.astype(np.float32) / 32767.0
        wave = A.read_audio(clip.path, a.sample_rate, a.min_seconds)
        if a.cache_audio:
            self._cache[clip.path] = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
        return wave

    def augment(self, wave: np.ndarray) -> np.ndarray:
        """Training-only waveform augmentation, drawn from NumPy's global generator
        (saved in checkpoints, so a resumed run draws the same)."""
        a, rng = self.cfg.audio, np.random
        if a.speed_perturb:
            wave = A.speed_perturb(wave, float(a.speed_perturb[rng.randint(len(a.speed_perturb))]))
        if a.telephone_prob and rng.random_sample() < a.telephone_prob:
            wave = A.telephone(wave, a.sample_rate)
        if a.noise_prob and rng.random_sample() < a.noise_prob:
            lo, hi = a.noise_snr_db
            wave = A.add_noise(wave, rng.uniform(lo, hi), np.random.default_rng(rng.randint(2**31)))
        return wave

    def collate(self, examples: list[Example], train: bool = False) -> Batch:
        waves = [self._wave(e.src) for e in examples]
        if train:
            waves = [self.augment(w) for w in waves]
        src, src_mask = self.features.batch(waves)
        tgt_in, tgt_out, n_tokens = target_tensors([e.tgt for e in examples])
        return Batch(src, src_mask, tgt_in, tgt_out, n_tokens, [e.ref for e in examples])

    # prediction ------------------------------------------------------------------
    def read_inputs(self, files: list[str]) -> Iterator:
        yield from files  # each file is one input: its path

    def split_input(self, item: str | AudioClip, dcfg=None) -> list[AudioClip]:
        """An audio path -> pieces of at most ``audio.max_seconds``, cut at silences.

        Pieces shorter than ``audio.min_seconds`` or silent are dropped; a recording
        that is empty, silent, too short or unreadable is one error naming it.
        """
        a = self.cfg.audio
        offset = 0.0
        if isinstance(item, AudioClip):  # a manifest entry (evaluate) or a piece
            if item.wave is not None and len(item.wave) <= a.max_seconds * a.sample_rate:
                return [item]
            # a long clip is cut like a long file: Whisper would otherwise read its first
            # 30 seconds only, and other encoders a length they were not trained on
            wave = item.wave if item.wave is not None else self._wave(item)
            name, offset = item.path, item.start
            if len(wave) <= a.max_seconds * a.sample_rate:
                return [AudioClip(name, self.features.num_frames(len(wave)), wave, offset)]
        else:
            wave, name = A.read_audio(item, a.sample_rate, a.min_seconds), str(item)
        pieces = []
        for start, end in A.split_at_silences(wave, a.sample_rate, a.max_seconds):
            piece = wave[start:end]
            if len(piece) < a.min_seconds * a.sample_rate or np.abs(piece).max() < A.SILENT_PEAK:
                continue
            frames = self.features.num_frames(len(piece))
            pieces.append(AudioClip(name, frames, piece, offset + start / a.sample_rate))
        return pieces

    def _as_clip(self, item: str | AudioClip) -> AudioClip:
        if isinstance(item, AudioClip):
            return item
        wave = A.read_audio(item, self.cfg.audio.sample_rate, self.cfg.audio.min_seconds)
        return AudioClip(str(item), self.features.num_frames(len(wave)), wave)

    def encode_inputs(self, inputs: list) -> tuple[Tensor, Tensor]:
        return self.features.batch([self._wave(self._as_clip(x)) for x in inputs])

    def source_view(self, item: str | AudioClip) -> Tensor:
        """The log-mel features the encoder reads, ``(N, n_mels)``."""
        feats, mask = self.encode_inputs([item])
        return feats[0, : int(mask[0].sum())]

    def input_lengths(self, inputs: list) -> list[int]:
        return [
            len(x) if isinstance(x, AudioClip) else int(A.audio_info(x) * FRAMES_PER_SECOND)
            for x in inputs
        ]

    def detokenize(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def search_options(self, n: int) -> dict:
        """Whisper: the prompt after bos is a forced prefix; its suppressed tokens, and
        blank/eos right after the prompt, are masked before the softmax."""
        if self.tok is None or self.tok.kind != "whisper":
            return {}
        prompt = self.tok.prompt_ids
        return {
            "prefix": [prompt] * n,
            "processors": [
                SuppressTokens(self.tok.suppress_ids),
                SuppressTokens(self.tok.suppress_begin_ids, at_step=len(prompt)),
            ],
        }

    def score(self, hyps: list[str], refs: list[str]) -> dict:
        return compute_metrics(self.metric_names, [normalize_text(h) for h in hyps], refs)


__all__ = ["AudioClip", "SpeechTask", "read_manifest"]
