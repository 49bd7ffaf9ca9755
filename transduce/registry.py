"""Name -> class registries for encoders and decoders, and for auxiliary loss terms.

Adding an encoder is one file plus one import line in ``models/__init__.py``::

    @dataclass
    class ConformerConfig:
        d_model: int = 256

    @register_encoder("conformer", ConformerConfig)
    class ConformerEncoder(Encoder):
        def __init__(self, cfg: ConformerConfig, ctx: BuildContext): ...

and a YAML config says ``encoder: {type: conformer, d_model: 256}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transduce.config import ConfigError, _nearest, build_dataclass

ENCODERS: dict[str, tuple[type, type]] = {}
DECODERS: dict[str, tuple[type, type]] = {}
_TABLES = {"encoder": ENCODERS, "decoder": DECODERS}


@dataclass
class BuildContext:
    """What a module needs to know about its neighbours when it is built.

    src_vocab_size: source vocabulary size (text encoders).
    tgt_vocab_size: target vocabulary size (decoders).
    pad_id: the padding id shared by both vocabularies.
    memory_dim: width ``D`` of the encoder's memory (decoders).
    encoder: the built encoder, for decoders that start from its final state.
    """

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    pad_id: int = 0
    memory_dim: int = 0
    encoder: Any = None


def _register(table: dict, name: str, config_cls: type) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in table and table[name][0] is not cls:
            raise ValueError(f"'{name}' is registered twice")
        table[name] = (cls, config_cls)
        cls.registered_name = name
        return cls

    return wrap


def register_encoder(name: str, config_cls: type) -> Callable[[type], type]:
    return _register(ENCODERS, name, config_cls)


def register_decoder(name: str, config_cls: type) -> Callable[[type], type]:
    return _register(DECODERS, name, config_cls)


def resolve_config(part: str, section: dict, where: str) -> tuple[type, Any]:
    """Return ``(module class, validated config dataclass)`` for a model section."""
    import transduce.models  # noqa: F401  (registers the built-in modules)

    table = _TABLES[part]
    if not isinstance(section, dict) or "type" not in section:
        raise ConfigError(f"{where} needs a 'type' (one of: {', '.join(sorted(table))})")
    name = section["type"]
    if name not in table:
        raise ConfigError(
            f"{where}.type: unknown {part} '{name}'{_nearest(str(name), table)} "
            f"(registered: {', '.join(sorted(table))})"
        )
    cls, config_cls = table[name]
    params = {k: v for k, v in section.items() if k != "type"}
    return cls, build_dataclass(config_cls, params, where)


# Auxiliary loss terms -------------------------------------------------------------
#
# Some models add a term to the cross entropy: coverage (summarization), doubly
# stochastic attention (captioning), CTC on the encoder (speech). Each term is a
# function registered by name and switched on in the config with a weight:
#
#     train:
#       aux_losses: {coverage: 1.0}
#
# A term is called as ``fn(model, batch, enc_out, attn) -> Tensor``: a 0-dim sum over
# the batch on the same scale as the cross entropy's summed loss
# (``training.loss.label_smoothed_nll``: summed, not averaged, over target tokens or
# sequences), so the trainer can divide everything by the number of target tokens at
# once. ``attn`` is the decoder's ``(B, T, S)`` attention (or None), ``enc_out`` the
# :class:`EncoderOutput`.

AuxLoss = Callable[..., Any]  # -> a 0-dim Tensor
AUX_LOSSES: dict[str, AuxLoss] = {}


def register_aux_loss(name: str) -> Callable[[AuxLoss], AuxLoss]:
    def wrap(fn: AuxLoss) -> AuxLoss:
        AUX_LOSSES[name] = fn
        return fn

    return wrap


def build_aux_losses(weights: dict[str, float]) -> list[tuple[str, float, AuxLoss]]:
    """``{"coverage": 1.0}`` -> ``[("coverage", 1.0, fn)]``; unknown names are a ConfigError."""
    terms = []
    for name, weight in weights.items():
        if name not in AUX_LOSSES:
            known = ", ".join(sorted(AUX_LOSSES)) or "none registered"
            raise ConfigError(f"train.aux_losses: unknown loss '{name}' (known: {known})")
        terms.append((name, float(weight), AUX_LOSSES[name]))
    return terms


def build_encoder(section: dict, ctx: BuildContext, where: str = "model.encoder") -> Any:
    cls, cfg = resolve_config("encoder", section, where)
    return cls(cfg, ctx)


def build_decoder(section: dict, ctx: BuildContext, where: str = "model.decoder") -> Any:
    cls, cfg = resolve_config("decoder", section, where)
    return cls(cfg, ctx)
