"""Typed config: YAML loading, dotted overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from transduce.config import Config, ConfigError, apply_overrides, config_from_dict, load_config


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  lr: 0.001\nmodel:\n  encoder: {type: lstm}\n")
    cfg = load_config(path, ["train.lr=3e-4", "train.max_steps=7", "model.encoder.layers=2"])
    assert isinstance(cfg, Config)
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.max_steps == 7
    assert cfg.model.encoder == {"type": "lstm", "layers": 2}
    assert cfg.decode.beam == 5  # untouched default


def test_int_widens_to_float_but_not_the_reverse():
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer"):
        config_from_dict({"train": {"max_steps": 1.5}})
    with pytest.raises(ConfigError, match="expected true or false"):
        config_from_dict({"train": {"progress": "yes"}})


def test_unknown_keys_name_the_nearest():
    with pytest.raises(ConfigError, match=r"train\.warmup_step'; did you mean 'warmup_steps'"):
        config_from_dict({"train": {"warmup_step": 10}})
    with pytest.raises(ConfigError, match=r"unknown key 'config\.trian'; did you mean 'train'"):
        config_from_dict({"trian": {}})


def test_model_sections_are_checked_against_their_registered_type():
    with pytest.raises(
        ConfigError, match=r"model\.encoder\.hidden_sise'; did you mean 'hidden_size'"
    ):
        config_from_dict({"model": {"encoder": {"type": "lstm", "hidden_sise": 3}}})
    with pytest.raises(
        ConfigError, match=r"unknown encoder 'transfomer'; did you mean 'transformer'"
    ):
        config_from_dict({"model": {"encoder": {"type": "transfomer"}}})
    with pytest.raises(ConfigError, match="needs a 'type'"):
        config_from_dict({"model": {"decoder": {"layers": 2}}})


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)


def test_override_syntax():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"train": 3}, ["train.lr=1"])
    assert apply_overrides({}, ["decode.beam=4", "name=abc"]) == {
        "decode": {"beam": 4},
        "name": "abc",
    }


def test_every_preset_loads():
    from pathlib import Path

    presets = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))
    assert presets
    for path in presets:
        load_config(path)


def test_sentence_languages_are_pysbds() -> None:
    """decode.split_sentences accepts exactly the languages pysbd splits, and off ("")."""
    from pysbd.languages import LANGUAGE_CODES

    from transduce.config import SENTENCE_LANGUAGES

    assert SENTENCE_LANGUAGES[0] == ""
    assert sorted(SENTENCE_LANGUAGES[1:]) == sorted(LANGUAGE_CODES)
