"""Train a tiny captioner on the embedded emoji sample, then predict and evaluate by CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from transduce.cli import main
from transduce.config import config_from_dict
from transduce.data.readers import SAMPLES_DIR

SAMPLE = "sample:emoji"


def tiny_caption_config(max_steps: int = 150) -> object:
    return config_from_dict(
        {
            "task": "captioning",
            "name": "tiny-caption",
            "data": {
                "train": f"{SAMPLE}/train.jsonl",
                "valid": f"{SAMPLE}/valid.jsonl",
                "test": f"{SAMPLE}/test.jsonl",
                "max_tgt_len": 16,
            },
            "image": {"size": 32, "crop_scale": 0.85, "color_jitter": 0.1},
            "tokenizer": {"type": "word", "vocab_size": 1000},
            "model": {
                "encoder": {
                    "type": "resnet",
                    "widths": [16, 32, 64],
                    "depths": [1, 1, 1],
                    "d_model": 64,
                },
                "decoder": {
                    "type": "lstm",
                    "embed_dim": 64,
                    "hidden_size": 128,
                    "attention": "bahdanau",
                },
            },
            "train": {
                "batch_tokens": 400,
                "lr": 3e-3,
                "warmup_steps": 10,
                "schedule": "constant",
                "max_steps": max_steps,
                "valid_every": max_steps // 3,
                "valid_max_sentences": 50,
                "label_smoothing": 0.0,
                "aux_losses": {"doubly_stochastic": 0.5},
                "early_stop_metric": "cider",
                "progress": False,
                "threads": 1,
            },
            "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 12},
        }
    )


@pytest.fixture(scope="module")
def caption_run(tmp_path_factory) -> tuple[Path, dict]:
    from transduce.training.trainer import Trainer

    run = tmp_path_factory.mktemp("caption") / "run"
    summary = Trainer(tiny_caption_config(), run).fit()
    return run, summary


def test_learns(caption_run):
    run, summary = caption_run
    history = summary["history"]
    vocab = len((run / "best" / "shared.words.json").read_text().split('",')) + 4
    # Validation emoji are new concepts (variants share a split), so the loss soon
    # rises again as the model overfits 400 pictures; its best is far below uniform
    # and the captions keep improving.
    best_loss = min(h["loss"] for h in history)
    assert best_loss < 0.7 * math.log(vocab), (best_loss, vocab)
    assert history[-1]["cider"] > 20 and history[-1]["bleu1"] > 20
    assert (run / "best" / "model.safetensors").is_file()


def test_predict_prints_captions_and_plots_attention(caption_run, tmp_path, capsys):
    run, _ = caption_run
    png = next(iter(sorted((SAMPLES_DIR / "emoji" / "images").glob("*.png"))))
    jpg = tmp_path / "photo.jpg"  # a JPEG of another size and mode works too
    Image.open(png).convert("RGBA").convert("RGB").resize((50, 40)).save(jpg)
    plot = tmp_path / "att.png"
    code = main(
        [
            "predict",
            str(run / "best"),
            str(png),
            str(jpg),
            "--beam",
            "2",
            "--attention-plot",
            str(plot),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 2 and all(line.strip() for line in out)
    with Image.open(plot) as im:
        assert im.size[0] >= 2 * 128 and im.size[1] >= 2 * 128


def test_predict_corrupt_image_is_one_error(caption_run, tmp_path, capsys):
    run, _ = caption_run
    bad = tmp_path / "notes.png"
    bad.write_text("these are notes, not a picture")
    assert main(["predict", str(run / "best"), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.png" in err[0] and err[0].startswith("error:")


def test_evaluate_prints_metrics_and_baseline(caption_run, capsys):
    run, _ = caption_run
    assert main(["evaluate", str(run / "best"), "--split", "test", "--beam", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("BLEU1", "BLEU4", "CIDER"):
        assert out.count(name) == 2  # model, then the nearest-neighbour baseline
    assert "nearest neighbour" in out
