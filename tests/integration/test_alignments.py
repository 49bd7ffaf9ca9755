"""Alignment plots (``predict --attention-plot``) for a tiny model of every task: the
weights drawn are the attention the search returned (rows sum to 1), one label per
source and output token, the pixels follow the weights, and layers/heads/p_gen/CTC
paths appear where the model has them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.integration.tiny_models import (
    caption_raw,
    speech_raw,
    summarization_raw,
    translation_raw,
    untrained_model_dir,
)
from transduce.alignments import alignments, draw
from transduce.cli import main
from transduce.data.readers import SAMPLES_DIR, read_parallel_tsv, resolve_data_path
from transduce.evaluation import plots
from transduce.inference import Predictor

GERMAN = ["Bibliothek zum Lesen von Bilddateien", "Dokumentation für das Paket"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Predictor]:
    root = tmp_path_factory.mktemp("plot-models")
    raws = {
        "translation": translation_raw(),
        "summarization": summarization_raw(),
        "captioning": caption_raw(),
        "speech": speech_raw(),
    }
    return {k: Predictor.load(untrained_model_dir(raw, root / k)) for k, raw in raws.items()}


def first_sample(name: str, suffix: str) -> str:
    return str(sorted((SAMPLES_DIR / name).rglob(f"*{suffix}"))[0])


def rows_sum_to_one(w: torch.Tensor) -> bool:
    return torch.allclose(w.sum(dim=1), torch.ones(w.size(0)), atol=1e-4)


def test_translation_heat_map(models, tmp_path, capsys):
    p = models["translation"]
    folder = tmp_path / "plot.png"
    items = alignments(p, GERMAN, p.decode_config())
    for text, a in zip(GERMAN, items):
        assert a.kind == "text" and a.source == p.task.source_view(text)
        assert a.weights.shape == (len(a.tokens), len(a.source)) and rows_sum_to_one(a.weights)
        assert a.text == p.predict([text])[0]
        assert "layer 2 of 2, mean of 4 heads" in a.what
        fig = plots.heatmap(a.source, a.tokens, a.weights, title=a.text)
        assert fig.x_labels == [plots.label(s) for s in a.source]
        assert len(fig.y_labels) == len(a.tokens)
        left, top = fig.origin
        T, S = a.weights.shape
        assert fig.image.width >= left + S * fig.cell and fig.image.height >= top + T * fig.cell
        # the centre pixel of every cell is the shade of its weight
        pixels = np.asarray(fig.image)
        centres = pixels[top + fig.cell // 2 :: fig.cell][:T, left + fig.cell // 2 :: fig.cell][
            :, :S
        ]
        assert (centres == plots.shade(a.weights)).all()
    draw(items, folder)
    with Image.open(folder) as im:
        assert im.width > 100 and im.height > 100


def test_transformer_layer_and_head_choice(models):
    p = models["translation"]
    dcfg = p.decode_config()
    (default,) = alignments(p, GERMAN[:1], dcfg)
    (first,) = alignments(p, GERMAN[:1], dcfg, layer=0)
    (last_head,) = alignments(p, GERMAN[:1], dcfg, layer=-1, head=0)
    heads = [alignments(p, GERMAN[:1], dcfg, layer=1, head=h)[0].weights for h in range(4)]
    assert torch.equal(last_head.weights, heads[0])
    # the default is the mean of the last layer's heads: the search's own attention
    assert torch.allclose(torch.stack(heads).mean(0), default.weights, atol=1e-5)
    assert not torch.allclose(first.weights, default.weights, atol=1e-3)
    assert "head 2 of 4" in alignments(p, GERMAN[:1], dcfg, layer=0, head=1)[0].what
    for w in [first.weights, *heads]:
        assert rows_sum_to_one(w)


def test_long_input_stays_readable(models):
    p = models["translation"]
    long = " ".join(read_parallel_tsv(resolve_data_path("sample:ddtp-de-en/test.tsv"))[i][0]
                    for i in range(8))  # fmt: skip
    (a,) = alignments(p, [long], p.decode_config(beam=1, max_len_b=12))
    assert len(a.source) >= 50
    fig = plots.heatmap(a.source, a.tokens, a.weights)
    assert fig.cell >= 14 and fig.image.width >= len(a.source) * fig.cell


def test_pointer_generator_shows_p_gen(models, tmp_path):
    p = models["summarization"]
    doc = read_parallel_tsv(resolve_data_path("sample:debian-summaries-en/test.tsv"))[0][0]
    (a,) = alignments(p, [doc], p.decode_config())
    assert a.p_gen is not None and a.p_gen.shape == (len(a.tokens),)
    assert bool(((a.p_gen > 0) & (a.p_gen < 1)).all())
    assert a.weights.shape == (len(a.tokens), len(a.source)) and rows_sum_to_one(a.weights)
    with_gate = plots.heatmap(a.source, a.tokens, a.weights, a.p_gen)
    without = plots.heatmap(a.source, a.tokens, a.weights)
    assert with_gate.image.width > without.image.width
    assert a.to_json()["p_gen"] == [round(float(x), 3) for x in a.p_gen]


def test_captioning_plot(models, tmp_path):
    p = models["captioning"]
    picture = first_sample("emoji", ".png")
    (a,) = alignments(p, [picture], p.decode_config())
    assert a.kind == "image" and a.source.shape[0] == 3
    assert a.weights.shape[0] == len(a.tokens) and rows_sum_to_one(a.weights)
    assert a.to_json()["grid"] is not None
    fig = plots.image_figure([(a.source, a.tokens, a.weights)])
    assert fig.y_labels == a.tokens[:16]
    assert fig.image.size == (128 * (1 + min(len(a.tokens), 16)), 128 + 18)


def test_speech_attention_over_the_spectrogram_and_ctc_path(models, tmp_path):
    p = models["speech"]
    clip = first_sample("speech-tts", ".flac")
    (joint,) = alignments(p, [clip], p.decode_config(mode="joint"))
    assert joint.kind == "audio" and joint.source.dim() == 2  # (N, n_mels)
    S = joint.weights.size(1)
    assert joint.weights.shape == (len(joint.tokens), S) and rows_sum_to_one(joint.weights)
    assert len(joint.ctc) == S and S == (joint.source.size(0) - 1) // 2 // 2 or S > 0
    (greedy,) = alignments(p, [clip], p.decode_config(mode="ctc_greedy"))
    assert greedy.weights is None and greedy.what == "CTC best path"
    # CTC greedy's output is exactly the characters its best path emits
    assert "".join(c for c in greedy.ctc if c is not None) == "".join(
        p.task.output_tokens(
            p.hypotheses([clip], p.decode_config(mode="ctc_greedy"))[0][0].tokens, None
        )
    )
    fig = plots.speech_figure(joint.source, joint.tokens, joint.weights, joint.ctc)
    assert len(fig.y_labels) == len(joint.tokens) and rows_sum_to_one(fig.weights)
    assert fig.x_labels == [c for c in joint.ctc if c is not None]
    out = tmp_path / "speech.png"
    draw([joint, greedy], out)
    assert Image.open(out).height > 2 * 160


@pytest.mark.parametrize("task", ["translation", "summarization", "captioning", "speech"])
def test_predict_attention_plot_cli(models, task, tmp_path, capsys):
    p = models[task]
    folder = tmp_path / "model"
    from transduce.inference import save_model_dir

    save_model_dir(folder, p.model, p.cfg, p.task)
    if task in ("translation", "summarization"):
        source = tmp_path / "in.txt"
        source.write_text(GERMAN[0] + "\n", encoding="utf-8")
        inputs = [str(source)]
    else:
        inputs = [first_sample("emoji" if task == "captioning" else "speech-tts",
                               ".png" if task == "captioning" else ".flac")]  # fmt: skip
    out = tmp_path / "a.png"
    assert main(["predict", str(folder), *inputs, "--attention-plot", str(out)]) == 0
    captured = capsys.readouterr()
    assert "attention plot" in captured.err and len(captured.out.splitlines()) == 1
    with Image.open(out) as im:
        assert im.width > 100 and im.height > 50
    if task == "translation":
        assert main(["predict", str(folder), *inputs, "--attention-plot", str(out),
                     "--attention-layer", "5"]) == 2  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has 2 layers" in err[0]
    if task == "summarization":  # an LSTM decoder has one attention
        assert main(["predict", str(folder), *inputs, "--attention-plot", str(out),
                     "--attention-head", "0"]) == 2  # fmt: skip
        assert "single attention" in capsys.readouterr().err
