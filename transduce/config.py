"""Typed configuration: dataclasses, YAML loading, dotted overrides.

Every key is checked: an unknown key raises :class:`ConfigError` naming the key,
where it was found and the nearest valid key. Model sections (``model.encoder``,
``model.decoder``) are validated against the dataclass their registered type
declares (see :mod:`transduce.registry`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TransduceError(Exception):
    """An error a user can cause and fix; printed without a traceback by the CLI."""


class ConfigError(TransduceError):
    """A bad configuration key or value."""


@dataclass
class DataConfig:
    """Where the data lives. Paths are TSV files (source<TAB>target), one pair per line.

    ``sample:ddtp-de-en`` names a sample embedded in the package.
    """

    train: str = "sample:ddtp-de-en/train.tsv"
    valid: str = "sample:ddtp-de-en/valid.tsv"
    test: str = "sample:ddtp-de-en/test.tsv"
    max_src_len: int = 256  # tokens; longer sources are truncated
    max_tgt_len: int = 256  # tokens; longer training targets are truncated
    caption_lang: str = "en"  # captioning: which language of the captions to learn
    # A folder made by `transduce data binarize` (memory-mapped token ids) to train on
    # instead of reading data.train into memory; made on the first `train` if missing.
    binarized: str = ""


@dataclass
class TokenizerConfig:
    type: str = "sentencepiece"  # sentencepiece | char | word (| whisper: imported, not trained)
    vocab_size: int = 8000  # sentencepiece and word
    shared: bool = True  # one vocabulary for source and target
    model_type: str = "unigram"  # sentencepiece: unigram | bpe
    character_coverage: float = 1.0
    max_train_sentences: int = 200_000  # sentencepiece trains on at most this many lines


@dataclass
class ModelConfig:
    encoder: dict = field(default_factory=lambda: {"type": "transformer"})
    decoder: dict = field(default_factory=lambda: {"type": "transformer"})
    tie_embeddings: bool = True  # decoder input embedding == output projection
    share_embeddings: bool = False  # encoder and decoder embeddings (needs a shared vocabulary)
    init_from: str = ""  # a model folder whose weights (and tokenizers) training starts from


@dataclass
class TrainConfig:
    seed: int = 1
    batch_tokens: int = 4096  # source+target tokens per batch, padding included
    accumulate: int = 1  # gradient accumulation steps per update
    lr: float = 5e-4
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    schedule: str = "inverse_sqrt"  # inverse_sqrt | noam | cosine | plateau | constant
    warmup_steps: int = 1000
    min_lr: float = 0.0  # floor for cosine and plateau
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    label_smoothing: float = 0.1
    aux_losses: dict = field(default_factory=dict)  # extra loss terms by name: {coverage: 1.0}
    freeze: list = field(default_factory=list)  # parameter name prefixes kept fixed: [encoder]
    clip_norm: float = 1.0  # 0 disables clipping
    max_steps: int = 0  # 0 = no limit
    max_epochs: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # 0 = no limit; wall-clock budget
    valid_every: int = 500  # updates
    valid_max_sentences: int = 500  # decode at most this many valid sentences for the metric
    valid_beam: int = 1
    early_stop_metric: str = "bleu"  # bleu | chrf | loss | any metric the task reports
    patience: int = 0  # validations without improvement before stopping; 0 = never stop early
    keep_best: int = 3  # best checkpoints kept besides `last`
    average_best: bool = False  # average the kept best checkpoints into `best` at the end
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 on CUDA only)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    progress: bool = True  # show a progress bar


@dataclass
class DecodeConfig:
    beam: int = 5
    nbest: int = 1
    max_len_a: float = 1.5  # max output length = a * source length + b
    max_len_b: int = 10
    min_len: int = 1
    len_penalty: float = 1.0  # score / length ** len_penalty
    eos_in_length: bool = True  # beam: that length counts the eos (false: CTranslate2's rule)
    no_repeat_ngram: int = 0  # forbid repeating any n-gram of this size; 0 = off
    repetition_penalty: float = 1.0  # CTRL penalty on already generated tokens; 1.0 = off
    coverage_penalty: float = 0.0  # beam: rescore with beta * sum_i log(min(cov_i, 1)); 0 = off
    sampling: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 32
    mode: str = "attention"  # attention | ctc_greedy | joint (speech: CTC head needed)
    ctc_weight: float = 0.3  # joint: score = (1 - w) * attention + w * CTC prefix score


@dataclass
class AudioConfig:
    """Speech recognition: reading audio, features, training augmentation (task: speech)."""

    sample_rate: int = 16000  # every input is resampled to this
    n_mels: int = 80  # log-mel bins (25 ms windows, 10 ms hop)
    frontend: str = "logmel"  # logmel (normalized, any length) | whisper (Whisper's, 30 s windows)
    max_seconds: float = 20.0  # training length; longer inputs are split at silences
    min_seconds: float = 0.1  # shorter audio is an error
    speed_perturb: list = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; [] = off
    noise_prob: float = 0.0  # share of training clips with added white noise
    noise_snr_db: list = field(default_factory=lambda: [10.0, 30.0])  # SNR drawn uniformly
    telephone_prob: float = 0.0  # share of training clips band-limited by an 8 kHz round trip
    cache_audio: bool = True  # keep decoded training audio in memory (int16)


@dataclass
class ImageConfig:
    """Image captioning: reading pictures and training augmentation (task: captioning)."""

    size: int = 128  # every picture is letterboxed on white and resized to size x size
    crop_scale: float = 0.6  # training: random resized crop of [crop_scale, 1] of the area; 1 = off
    color_jitter: float = 0.2  # training: brightness/contrast/saturation factors in [1-x, 1+x]


@dataclass
class Config:
    task: str = "translation"
    name: str = "model"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    image: ImageConfig = field(default_factory=ImageConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _nearest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check ``value`` against annotation ``typ`` (with int->float widening)."""
    origin = typing.get_origin(typ)
    if typ is Any or typ is dict or origin is dict:
        if typ is not Any and not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if typ is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build_dataclass(typ, value, where)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def build_dataclass(cls: type, values: dict, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"unknown key '{where}.{key}'{_nearest(key, names)} "
                f"(valid keys: {', '.join(sorted(names))})"
            )
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> ``(["train", "lr"], 0.0003)``; values are read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 3e-4 as a string; numbers in scientific notation should be numbers.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else int(value)
        except ValueError:
            pass
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: typing.Sequence[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def validate_model_sections(cfg: Config) -> None:
    """Check encoder/decoder sections against their registered dataclasses."""
    from transduce import registry

    for part in ("encoder", "decoder"):
        section = getattr(cfg.model, part)
        registry.resolve_config(part, section, where=f"model.{part}")


def config_from_dict(raw: dict, where: str = "config") -> Config:
    cfg = build_dataclass(Config, raw or {}, where)
    validate_model_sections(cfg)
    return cfg


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML (or JSON) config file, apply ``a.b=c`` overrides, validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML/JSON: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    raw = apply_overrides(raw, overrides)
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
