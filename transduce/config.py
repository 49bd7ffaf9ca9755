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
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transduce.checks import (  # noqa: F401  (re-exported: the package imports them from here)
    INT64_MAX,
    Check,
    ConfigError,
    LimitError,
    TransduceError,
    _apply_check,
    bounded,
    field_check,
    parse_checked,
)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``3e-4`` and ``1E5`` are numbers (YAML 1.2), as
    every user expects, instead of strings (YAML 1.1 needs ``3.0e-4``)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Read YAML as configs are read everywhere (files, overrides, a run's config.yaml)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)


def check_value(cls: type, name: str, value: Any, where: str) -> Any:
    """Coerce ``value`` to field ``name``'s type and check it; ConfigError naming ``where``."""
    hints = typing.get_type_hints(cls)
    value = _coerce(value, hints[name], where)
    check = field_check(cls, name)
    _apply_check(check, value, where)
    return value


DEVICE_PATTERN = r"auto|cpu|cuda|cuda:[0-9]{1,3}|mps"
DEVICE_WHAT = "auto, cpu, cuda, cuda:N or mps"
NAME_PATTERN = r"(?!\.{1,2}$)[^/\\\x00-\x1f~][^/\\\x00-\x1f]{0,99}"
NAME_WHAT = (
    "a name, not a path: 1 to 100 characters without '/', '\\' or control characters, "
    "not '.' or '..', not starting with '~'"
)


@dataclass
class DataConfig:
    """Where the data lives. Paths are TSV files (source<TAB>target), one pair per line.

    ``sample:ddtp-de-en`` names a sample embedded in the package.
    """

    train: str = "sample:ddtp-de-en/train.tsv"
    valid: str = "sample:ddtp-de-en/valid.tsv"
    test: str = "sample:ddtp-de-en/test.tsv"
    max_src_len: int = bounded(256, ge=1, le=1_000_000)  # tokens; longer sources are truncated
    max_tgt_len: int = bounded(
        256, ge=1, le=1_000_000
    )  # tokens; longer training targets are truncated
    caption_lang: str = "en"  # captioning: which language of the captions to learn
    # A folder made by `transduce data binarize` (memory-mapped token ids) to train on
    # instead of reading data.train into memory; made on the first `train` if missing.
    binarized: str = ""


@dataclass
class TokenizerConfig:
    type: str = bounded(
        "sentencepiece", choices=("sentencepiece", "char", "word", "whisper")
    )  # whisper: imported (transduce import whisper), not trained
    vocab_size: int = bounded(8000, ge=1, le=2**24)  # sentencepiece and word
    shared: bool = True  # one vocabulary for source and target
    model_type: str = bounded("unigram", choices=("unigram", "bpe"))  # sentencepiece
    character_coverage: float = bounded(1.0, gt=0, le=1)
    # sentencepiece trains on at most this many lines; 0 = all
    max_train_sentences: int = bounded(200_000, ge=0)


@dataclass
class ModelConfig:
    encoder: dict = field(default_factory=lambda: {"type": "transformer"})
    decoder: dict = field(default_factory=lambda: {"type": "transformer"})
    tie_embeddings: bool = True  # decoder input embedding == output projection
    share_embeddings: bool = False  # encoder and decoder embeddings (needs a shared vocabulary)
    init_from: str = ""  # a model folder whose weights (and tokenizers) training starts from


@dataclass
class TrainConfig:
    seed: int = bounded(1, ge=0, le=2**32 - 1)
    batch_tokens: int = bounded(
        4096, ge=1, le=2**31
    )  # source+target tokens per batch, padding included
    accumulate: int = bounded(1, ge=1, le=100_000)  # gradient accumulation steps per update
    lr: float = bounded(5e-4, gt=0, le=10)
    betas: list = bounded([0.9, 0.98], length=2, items=Check(ge=0, lt=1))
    weight_decay: float = bounded(0.0, ge=0, le=10)
    schedule: str = bounded(
        "inverse_sqrt", choices=("inverse_sqrt", "noam", "cosine", "plateau", "constant")
    )
    warmup_steps: int = bounded(1000, ge=0)
    min_lr: float = bounded(0.0, ge=0, le=10)  # floor for cosine and plateau
    plateau_factor: float = bounded(0.5, gt=0, lt=1)
    plateau_patience: int = bounded(2, ge=0)
    label_smoothing: float = bounded(0.1, ge=0, lt=1)
    # extra loss terms by name and weight: {coverage: 1.0}
    aux_losses: dict = bounded({}, items=Check(ge=0, le=1000))
    freeze: list = field(default_factory=list)  # parameter name prefixes kept fixed: [encoder]
    clip_norm: float = bounded(1.0, ge=0)  # 0 disables clipping
    max_steps: int = bounded(0, ge=0)  # 0 = no limit
    max_epochs: int = bounded(0, ge=0)  # 0 = no limit
    max_minutes: float = bounded(0.0, ge=0)  # 0 = no limit; wall-clock budget
    valid_every: int = bounded(500, ge=1)  # updates
    # decode at most this many valid sentences for the metric; 0 = all
    valid_max_sentences: int = bounded(500, ge=0)
    valid_beam: int = bounded(1, ge=1, le=1024)
    early_stop_metric: str = "bleu"  # bleu | chrf | loss | any metric the task reports
    patience: int = bounded(
        0, ge=0
    )  # validations without improvement before stopping; 0 = never stop early
    keep_best: int = bounded(3, ge=0, le=1000)  # best checkpoints kept besides `last`
    average_best: bool = False  # average the kept best checkpoints into `best` at the end
    # fp16: CUDA only; auto: bf16 where the device multiplies bf16 natively (CUDA with
    # bf16, CPUs with AVX512-BF16 or AMX), else fp32
    precision: str = bounded("fp32", choices=("fp32", "bf16", "fp16", "auto"))
    device: str = bounded("auto", pattern=DEVICE_PATTERN, what=DEVICE_WHAT)
    log_every: int = bounded(50, ge=1)
    threads: int = bounded(0, ge=0, le=4096)  # torch intra-op threads; 0 = leave torch's default
    # CPU, glibc: reuse freed large blocks instead of fresh zeroed pages (the process
    # keeps its peak memory); see transduce/memory.py
    keep_freed_memory: bool = True
    progress: bool = True  # show a progress bar


# the languages pysbd splits into sentences (pysbd.languages.LANGUAGE_CODES; a test
# keeps the two the same), and "" for off
SENTENCE_LANGUAGES = (
    *("", "am", "ar", "bg", "da", "de", "el", "en", "es", "fa", "fr", "hi"),
    *("hy", "it", "ja", "kk", "mr", "my", "nl", "pl", "ru", "sk", "ur", "zh"),
)


@dataclass
class DecodeConfig:
    beam: int = bounded(5, ge=1, le=1024)  # 1 = greedy
    nbest: int = bounded(1, ge=1, le=1024)  # <= beam (search) or samples (sampling)
    max_len_a: float = bounded(1.5, ge=0, le=1000)  # max output length = a * source length + b
    max_len_b: int = bounded(10, ge=0, le=100_000)
    min_len: int = bounded(1, ge=0, le=100_000)
    len_penalty: float = bounded(1.0, ge=0, le=10)  # score / length ** len_penalty
    eos_in_length: bool = True  # beam: that length counts the eos (false: CTranslate2's rule)
    no_repeat_ngram: int = bounded(
        0, ge=0, le=1024
    )  # forbid repeating any n-gram of this size; 0 = off
    repetition_penalty: float = bounded(
        1.0, gt=0, le=100
    )  # CTRL penalty on already generated tokens; 1.0 = off
    coverage_penalty: float = bounded(
        0.0, ge=0, le=100
    )  # beam: rescore with beta * sum_i log(min(cov_i, 1)); 0 = off
    sampling: bool = False
    temperature: float = bounded(1.0, gt=0, le=100)
    top_k: int = bounded(0, ge=0)  # 0 = off
    top_p: float = bounded(1.0, gt=0, le=1)
    batch_size: int = bounded(32, ge=1, le=100_000)
    mode: str = bounded(
        "attention", choices=("attention", "ctc_greedy", "joint")
    )  # attention | ctc_greedy | joint (speech: CTC head needed)
    ctc_weight: float = bounded(
        0.3, ge=0, le=1
    )  # joint: score = (1 - w) * attention + w * CTC prefix score
    # translation: cut each input into sentences by pysbd's rules for this language (e.g.
    # de) and decode them one by one, outputs joined with spaces; "" = whole inputs
    split_sentences: str = bounded("", choices=SENTENCE_LANGUAGES)

    def check_together(self, where: str = "decode") -> None:
        """Rules between fields: a search returns at most ``beam`` hypotheses; a fixed
        maximum length (``max_len_a`` 0) is not below the minimum length."""
        if not self.sampling and self.nbest > self.beam:
            raise ConfigError(
                f"{where}.nbest ({self.nbest}) must not exceed {where}.beam ({self.beam}): "
                "a beam search returns at most beam hypotheses; raise the beam or lower nbest",
                f"{where}.nbest",
            )
        if self.max_len_a == 0 and self.min_len > self.max_len_b:
            raise ConfigError(
                f"{where}.min_len ({self.min_len}) must not exceed the maximum output length "
                f"{where}.max_len_b ({self.max_len_b}; --max-len, or max_len in a request): "
                "lower min_len or raise the maximum length",
                f"{where}.min_len",
            )


@dataclass
class AudioConfig:
    """Speech recognition: reading audio, features, training augmentation (task: speech)."""

    sample_rate: int = bounded(16000, ge=8000, le=384_000)  # every input is resampled to this
    n_mels: int = bounded(80, ge=1, le=512)  # log-mel bins (25 ms windows, 10 ms hop)
    # logmel (normalized, any length) | whisper (Whisper's, 30 s windows)
    frontend: str = bounded("logmel", choices=("logmel", "whisper"))
    max_seconds: float = bounded(
        20.0, gt=0, le=3600
    )  # training length; longer inputs are split at silences
    min_seconds: float = bounded(0.1, ge=0, le=3600)  # shorter audio is an error
    speed_perturb: list = bounded([], items=Check(ge=0.5, le=2))  # e.g. [0.9, 1.0, 1.1]; [] = off
    noise_prob: float = bounded(0.0, ge=0, le=1)  # share of training clips with added white noise
    noise_snr_db: list = bounded(
        [10.0, 30.0], length=2, items=Check(ge=-30, le=100)
    )  # SNR drawn uniformly
    telephone_prob: float = bounded(
        0.0, ge=0, le=1
    )  # share of training clips band-limited by an 8 kHz round trip
    cache_audio: bool = True  # keep decoded training audio in memory (int16)

    def check_together(self, where: str = "audio") -> None:
        if self.max_seconds <= self.min_seconds:
            raise ConfigError(
                f"{where}.max_seconds ({self.max_seconds}) must be larger than "
                f"{where}.min_seconds ({self.min_seconds})"
            )
        lo, hi = self.noise_snr_db
        if lo > hi:
            raise ConfigError(f"{where}.noise_snr_db: [{lo}, {hi}] must be [low, high]")


@dataclass
class ImageConfig:
    """Image captioning: reading pictures and training augmentation (task: captioning)."""

    size: int = bounded(
        128, ge=16, le=2048
    )  # every picture is letterboxed on white and resized to size x size
    crop_scale: float = bounded(
        0.6, gt=0, le=1
    )  # training: random resized crop of [crop_scale, 1] of the area; 1 = off
    color_jitter: float = bounded(
        0.2, ge=0, lt=1
    )  # training: brightness/contrast/saturation factors in [1-x, 1+x]


@dataclass
class ServeLimits:
    """What one request to ``transduce serve`` may ask for; past a limit is a 413 naming it.

    ``max_work`` bounds the cost of a request, not only its counts: the sum over its
    inputs of (beam, or samples) x (maximum output length in tokens).
    """

    max_inputs: int = bounded(64, ge=1, le=100_000)  # inputs (texts or files) per request
    max_input_chars: int = bounded(5000, ge=1, le=10_000_000)  # characters per text input
    max_upload_bytes: int = bounded(20 * 2**20, ge=1, le=2**34)  # bytes per uploaded file
    max_pixels: int = bounded(20_000_000, ge=1, le=2**32)  # width x height of one image
    max_seconds: float = bounded(600.0, gt=0, le=86_400)  # duration of one audio file
    max_work: int = bounded(1_000_000, ge=1, le=2**40)  # beam x max length, summed over inputs
    timeout: float = bounded(60.0, gt=0, le=86_400)  # seconds one request may decode


# Decoding from the command line: the same measure of cost as the server's
# ServeLimits.max_work, per batch (batch size x beam x maximum output length).
DEFAULT_MAX_WORK = 4_000_000


@dataclass
class Config:
    task: str = "translation"
    name: str = bounded("model", pattern=NAME_PATTERN, what=NAME_WHAT)  # runs/<name>
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    image: ImageConfig = field(default_factory=ImageConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_together(self, where: str = "config") -> None:
        """Rules between sections: one embedding for source and target, or copying source
        tokens into the output, needs one vocabulary (with two of the same size, the same
        id would mean different words on each side, silently)."""
        if self.tokenizer.shared or self.tokenizer.type == "whisper":
            return
        for key, on in (
            ("model.share_embeddings", self.model.share_embeddings),
            ("model.decoder.copy", self.model.decoder.get("copy") is True),
        ):
            if on:
                raise ConfigError(
                    f"{where}.{key}: true needs one vocabulary for source and target "
                    f"({where}.tokenizer.shared: true); set one of them differently",
                    key,
                )


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
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{where}: {value} is too large for a number") from None
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
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {values!r:.80}")
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
    checks = {f.name: f.metadata.get("check") for f in dataclasses.fields(cls)}
    for key, value in kwargs.items():
        if not dataclasses.is_dataclass(value):
            _apply_check(checks[key], value, f"{where}.{key}")
    obj = cls(**kwargs)
    together = getattr(obj, "check_together", None)
    if together is not None:
        together(where)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> ``(["train", "lr"], 0.0003)``; values are read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # yaml_load already reads 3e-4 as a number; a quoted '3e-4' or a form like +.5 still
    # comes back a string and is read as a number, as overrides always were.
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
    cfg = build_dataclass(Config, {} if raw is None else raw, where)
    validate_model_sections(cfg)
    return cfg


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML (or JSON) config file, apply ``a.b=c`` overrides, validate it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml_load(text)
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
