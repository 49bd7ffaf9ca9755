"""The command line and the Python API on a tiny trained model, and their error messages."""

from __future__ import annotations

import io
import shutil

import pytest

import transduce
from transduce.cli import main


def test_python_api_predicts(trained_model):
    run, _ = trained_model
    model = transduce.load(run / "best")
    out = model.predict(["Dokumentation für das Paket", "Ein Satz."], beam=5)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    nbest = model.predict(["Dokumentation für das Paket"], beam=4, nbest=3)
    assert len(nbest) == 1 and len(nbest[0]) == 3
    assert len(set(nbest[0])) == 3  # distinct hypotheses


def test_predict_streams_stdin(trained_model, monkeypatch, capsys):
    run, _ = trained_model
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\nNoch ein Satz.\nDrei\n"))
    assert main(["predict", str(run / "best"), "--beam", "2", "--chunk", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_predict_sampling_and_files(trained_model, tmp_path, capsys):
    run, _ = trained_model
    src = tmp_path / "in.de"
    src.write_text("Ein Satz.\nBibliothek für Bilder\n", encoding="utf-8")
    args = ["predict", str(run / "best"), str(src), "--sampling", "--top-k", "5", "--max-len", "8"]
    assert main(args) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_evaluate_prints_bleu_and_chrf_with_signatures(trained_model, capsys):
    run, _ = trained_model
    assert main(["evaluate", str(run / "best"), "--split", "test", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "BLEU" in out and "CHRF" in out
    assert "nrefs:1" in out and "tok:13a" in out
    assert "baseline: copy" in out  # the source copied unchanged, a reference point for BLEU


def test_unknown_config_key_names_the_nearest(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  learning_rat: 0.1\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "train.learning_rat" in err and str(cfg) in err
    cfg.write_text("train:\n  max_step: 10\n")
    assert main(["train", str(cfg)]) == 2
    assert "did you mean 'max_steps'" in capsys.readouterr().err


def test_missing_and_corrupt_model_folders(trained_model, tmp_path, capsys):
    run, _ = trained_model
    assert main(["predict", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(run / "best", broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage")
    assert main(["predict", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "Traceback" not in err


def test_bad_data_file_names_file_and_line(trained_model, tmp_path, capsys):
    run, _ = trained_model
    bad = tmp_path / "bad.tsv"
    bad.write_text("Ein Satz.\tA sentence.\nkein Tabulator hier\n", encoding="utf-8")
    assert main(["evaluate", str(run / "best"), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "2" in err


@pytest.mark.parametrize("split", ["valid"])
def test_evaluate_limit(trained_model, capsys, split):
    run, _ = trained_model
    assert (
        main(["evaluate", str(run / "best"), "--split", split, "--limit", "5", "--beam", "1"]) == 0
    )
    assert "5 examples" in capsys.readouterr().out


def test_int8_precision_mostly_agrees_with_fp32(trained_model, capsys):
    """--precision int8 / transduce.load(precision="int8") on a trained model: the
    next-token choice of float32 on almost every reference position, outputs close;
    the CLI scores it; misuse is one line."""
    import sacrebleu
    import torch

    run, _ = trained_model
    fp32 = transduce.load(run / "best")
    int8 = transduce.load(run / "best", precision="int8")
    assert int8.precision == "int8"
    examples = fp32.task.examples(fp32.task.read_split("test"))[:40]
    batch = fp32.task.collate(examples)
    with torch.inference_mode():
        ref_logits, _ = fp32.model(batch.src, batch.src_mask, batch.tgt_in)
        logits, _ = int8.model(batch.src, batch.src_mask, batch.tgt_in)
    real = batch.tgt_out != 0
    agree = (ref_logits.argmax(-1) == logits.argmax(-1))[real].float().mean().item()
    assert agree > 0.95, f"int8 picks float32's next token at only {agree:.1%} of positions"
    # Whole outputs of a barely trained model are fragile (one changed token changes
    # the rest), so they are compared by BLEU (about 77 measured), not for identity.
    inputs = [e.src_text for e in examples]
    out, ref = int8.predict(inputs, beam=2), fp32.predict(inputs, beam=2)
    assert sacrebleu.corpus_bleu(out, [ref]).score > 50
    assert main(["evaluate", str(run / "best"), "--precision", "int8", "--limit", "10"]) == 0
    assert "BLEU" in capsys.readouterr().out
    assert main(["predict", str(run / "best"), "--precision", "int8", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    # refused in one line: int8 is CPU only (or, on a machine without CUDA, the device)
    assert ("CPU only" in err or "no CUDA device" in err) and err.count("error:") == 1
    assert "Traceback" not in err
