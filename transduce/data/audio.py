"""Reading audio, resampling, splitting long recordings at silences, augmentation.

Waveforms are float32 numpy arrays in ``[-1, 1]``, mono, at the model's sample rate.
Any rate, WAV/FLAC/OGG (whatever libsndfile reads), mono or multi-channel (channels
are averaged) is accepted. Errors a user can cause (missing, unreadable, empty,
silent or too short audio) raise one :class:`TransduceError` naming the file.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from transduce.config import LimitError, TransduceError

SILENT_PEAK = 1e-4  # peak amplitude below which a recording counts as silence
MIN_SAMPLE_RATE = 1000  # Hz; below this a file is not a recording of speech
MAX_SECONDS = 3600.0  # read_audio refuses longer files (from the header, before decoding)


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``rate_in`` to ``rate_out`` Hz."""
    if rate_in == rate_out or len(wave) == 0:
        return wave.astype(np.float32, copy=False)
    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(wave, rate_out // g, rate_in // g).astype(np.float32)


def to_mono(data: np.ndarray) -> np.ndarray:
    """``(N,)`` or ``(N, channels)`` -> ``(N,)``, averaging the channels."""
    return data.mean(axis=1) if data.ndim == 2 else data


def audio_header(path: str | Path) -> tuple[int, int]:
    """``(frames, sample rate)`` from the header, without decoding; errors name the file."""
    try:
        info = sf.info(str(path))
    except FileNotFoundError:
        raise TransduceError(f"audio file {path} does not exist") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise TransduceError(f"cannot read audio file {path}: {e}") from None
    return int(info.frames), int(info.samplerate)


def audio_info(path: str | Path) -> float:
    """Duration in seconds (from the header, without decoding); errors name the file."""
    frames, rate = audio_header(path)
    return frames / rate if rate else 0.0


def check_audio_header(path: str | Path, max_seconds: float = MAX_SECONDS) -> float:
    """Refuse, before decoding, a file longer than ``max_seconds`` or at a sample rate no
    recording of speech has (both would decode to gigabytes); returns its duration."""
    frames, rate = audio_header(path)
    if rate < MIN_SAMPLE_RATE:
        raise TransduceError(
            f"audio file {path} has a sample rate of {rate} Hz; at least {MIN_SAMPLE_RATE} Hz "
            "is expected (16000 is usual for speech)"
        )
    seconds = frames / rate
    if seconds > max_seconds:
        raise LimitError(
            f"audio file {path} lasts {seconds:,.0f} s, more than the limit of "
            f"{max_seconds:,.0f} s; cut it into shorter files"
        )
    return seconds


def read_audio(
    path: str | Path,
    sample_rate: int = 16000,
    min_seconds: float = 0.1,
    check: bool = True,
    max_seconds: float = MAX_SECONDS,
) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate``.

    The header is checked first (:func:`check_audio_header`); samples that are NaN or
    infinite are an error naming the file. With ``check`` an empty, silent (peak below
    1e-4) or too short (under ``min_seconds``) recording is an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise TransduceError(f"audio file {path} does not exist")
    check_audio_header(path, max_seconds)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise TransduceError(
            f"cannot read audio file {path}: {e} (WAV, FLAC and OGG are supported)"
        ) from None
    if not np.isfinite(data).all():
        raise TransduceError(
            f"audio file {path} holds samples that are NaN or infinite; re-export it as PCM"
        )
    wave = resample(to_mono(data), rate, sample_rate)
    if check:
        check_audio(wave, sample_rate, path, min_seconds)
    return wave


def check_audio(wave: np.ndarray, sample_rate: int, path: str | Path, min_seconds: float) -> None:
    if len(wave) == 0:
        raise TransduceError(f"audio file {path} is empty (no samples)")
    seconds = len(wave) / sample_rate
    if seconds < min_seconds:
        raise TransduceError(
            f"audio file {path} is too short: {seconds:.3f} s (at least {min_seconds} s needed)"
        )
    if float(np.abs(wave).max()) < SILENT_PEAK:
        raise TransduceError(f"audio file {path} is silent (peak amplitude below {SILENT_PEAK})")


def write_audio(path: str | Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM; the format follows the suffix (.flac, .wav, .ogg)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    subtype = "VORBIS" if str(path).endswith(".ogg") else "PCM_16"
    sf.write(str(path), np.clip(wave, -1, 1), sample_rate, subtype=subtype)


# ------------------------------------------------------------------ splitting at silences


def frame_energy_db(wave: np.ndarray, sample_rate: int, hop_ms: float = 10.0) -> np.ndarray:
    """Energy (dB) of consecutive non-overlapping frames of ``hop_ms``: ``(N // hop,)``."""
    hop = max(1, int(sample_rate * hop_ms / 1000))
    n = len(wave) // hop
    frames = wave[: n * hop].reshape(n, hop).astype(np.float64)
    return 10 * np.log10((frames**2).mean(axis=1) + 1e-10)


def split_at_silences(
    wave: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    min_seconds: float = 1.0,
    smooth_ms: float = 200.0,
) -> list[tuple[int, int]]:
    """Cut ``wave`` into pieces of at most ``max_seconds``, at its quietest moments.

    Energy-based: frame energies (10 ms) are smoothed over ``smooth_ms`` (so a cut
    lands inside a pause rather than in a stop consonant); from the start of each
    piece, the cut goes at the quietest smoothed frame between ``min_seconds`` and
    ``max_seconds`` further on. Work and memory are linear in the length, so a
    10-minute recording is fine. Returns ``[(start, end)]`` sample indices that
    cover the whole wave in order.
    """
    total = len(wave)
    limit = int(max_seconds * sample_rate)
    if total <= limit:
        return [(0, total)]
    hop = max(1, sample_rate // 100)
    energy = frame_energy_db(wave, sample_rate)
    width = max(1, int(smooth_ms / 10))
    smooth = np.convolve(energy, np.ones(width) / width, mode="same")
    pieces, start = [], 0
    while total - start > limit:
        lo = start // hop + max(1, int(min_seconds * 100))
        hi = min(len(smooth), (start + limit) // hop)
        if hi <= lo:
            cut = start + limit
        else:
            cut = (lo + int(np.argmin(smooth[lo:hi]))) * hop
        pieces.append((start, cut))
        start = cut
    pieces.append((start, total))
    return pieces


# ------------------------------------------------------------------ augmentation (training)


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch, as Kaldi's speed perturbation)."""
    if factor == 1.0:
        return wave
    return resample(wave, int(round(factor * 1000)), 1000)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at signal-to-noise ratio ``snr_db``."""
    power = float((wave.astype(np.float64) ** 2).mean()) + 1e-10
    noise = rng.standard_normal(len(wave)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def telephone(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Band-limit as a telephone line does: down to 8 kHz and back (nothing above 4 kHz)."""
    if sample_rate <= 8000:
        return wave
    back = resample(resample(wave, sample_rate, 8000), 8000, sample_rate)
    return back[: len(wave)]


__all__ = [
    "add_noise",
    "audio_info",
    "check_audio",
    "frame_energy_db",
    "read_audio",
    "resample",
    "speed_perturb",
    "split_at_silences",
    "telephone",
    "to_mono",
    "write_audio",
]
