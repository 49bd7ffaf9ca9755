"""A tiny pointer-generator summarizer on the committed debian-summaries sample."""

from __future__ import annotations

import pytest

from transduce.cli import main
from transduce.config import config_from_dict
from transduce.training.trainer import Trainer

SAMPLE = "sample:debian-summaries-en"


def tiny_summarizer(**train) -> object:
    return config_from_dict(
        {
            "task": "summarization",
            "name": "tiny-sum",
            "data": {
                "train": f"{SAMPLE}/train.tsv",
                "valid": f"{SAMPLE}/valid.tsv",
                "test": f"{SAMPLE}/test.tsv",
                "max_src_len": 48,
                "max_tgt_len": 16,
            },
            "tokenizer": {"type": "word", "vocab_size": 2000, "shared": True},
            "model": {
                "encoder": {"type": "lstm", "embed_dim": 48, "hidden_size": 48},
                "decoder": {
                    "type": "lstm",
                    "embed_dim": 48,
                    "hidden_size": 64,
                    "attention": "general",
                    "input_feed": False,  # one RNN call per batch: the fastest pointer
                    "copy": True,
                },
                "share_embeddings": True,
            },
            "train": {
                "batch_tokens": 1500,
                "lr": 1e-2,
                "warmup_steps": 5,
                "max_steps": 60,
                "valid_every": 15,
                "valid_max_sentences": 10,
                "label_smoothing": 0.0,
                "aux_losses": {"coverage": 1.0},
                "early_stop_metric": "rougel",
                "progress": False,
                "threads": 1,
                **train,
            },
            "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 12, "no_repeat_ngram": 2},
        }
    )


@pytest.fixture(scope="module")
def summarizer(tmp_path_factory):
    run = tmp_path_factory.mktemp("sum") / "run"
    summary = Trainer(tiny_summarizer(), run).fit()
    return run, summary


def test_pointer_generator_learns(summarizer):
    run, summary = summarizer
    history = summary["history"]
    assert [h["step"] for h in history] == [15, 30, 45, 60]
    assert history[-1]["loss"] < 0.9 * history[0]["loss"]
    assert {"rouge1", "rouge2", "rougel"} <= set(history[-1])
    assert (run / "best" / "tokenizer.json").is_file()


def test_evaluate_prints_rouge_and_lead_baseline(summarizer, capsys):
    run, _ = summarizer
    args = ["evaluate", str(run / "best"), "--split", "test", "--limit", "20", "--beam", "2"]
    assert main([*args, "--no-repeat-ngram", "2", "--coverage-penalty", "0.2"]) == 0
    out = capsys.readouterr().out
    assert out.count("ROUGE1") == 2 and out.count("ROUGEL") == 2
    assert "baseline: lead" in out and "stem:yes" in out


def test_predict_lines_and_whole_files(summarizer, tmp_path, capsys):
    run, _ = summarizer
    lines = tmp_path / "docs.txt"
    lines.write_text(
        "This package provides the Perl module Foo::Bar. <p> It parses files.\n"
        "A library for drawing " + "very " * 200 + "big bars.\n",  # over max_src_len
        encoding="utf-8",
    )
    assert main(["predict", str(run / "best"), str(lines), "--beam", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    doc = tmp_path / "readme.txt"
    doc.write_text("Frobnicator is a tool.\n\nIt frobs\nfiles quickly.\n", encoding="utf-8")
    args = ["predict", str(run / "best"), "--docs", str(doc), str(doc)]
    assert main([*args, "--repetition-penalty", "1.5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
