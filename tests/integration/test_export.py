"""CTranslate2 export: the exported model computes what the transduce model computes.

Random-weight models (fixed seed, no training) check the conversion itself for each
architecture variant: CTranslate2's teacher-forced log-probs equal transduce's and greedy
outputs are identical. The session's trained model checks the searches: greedy and
beam outputs identical, int8 close.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sacrebleu
import torch

from tests.integration.conftest import TINY_LSTM, tiny_config
from transduce.cli import main
from transduce.config import TransduceError

pytest.importorskip("ctranslate2")

from transduce.export.ctranslate2 import CT2Translator, export_ctranslate2  # noqa: E402
from transduce.inference import Predictor, save_model_dir  # noqa: E402
from transduce.models.seq2seq import build_model  # noqa: E402
from transduce.tasks import build_task  # noqa: E402
from transduce.tasks.translation import split_sentences  # noqa: E402

N_SENTENCES = 40


def _layer(**kw) -> dict:
    return {"type": "transformer", "d_model": 64, "heads": 4, "ff_dim": 128, "layers": 2, **kw}


VARIANTS = {
    "pre-sinusoidal-relu-tied": ({"norm_first": True, "positions": "sinusoidal"}, {}),
    "post-learned-gelu-shared": (
        {"norm_first": False, "positions": "learned", "activation": "gelu"},
        {"share_embeddings": True},
    ),
    "pre-learned-unscaled-untied": (
        {"norm_first": True, "positions": "learned", "embed_scale": False},
        {"tie_embeddings": False},
    ),
    "post-sinusoidal-gelu": ({"norm_first": False, "activation": "gelu"}, {}),
}


def _random_model_dir(root: Path, data_dir: Path, model: dict) -> Path:
    """A model folder with seeded random weights (biases and norms perturbed too)."""
    cfg = tiny_config(data_dir, model)
    task = build_task(cfg)
    task.fit(task.read_split("train"))
    torch.manual_seed(0)
    net = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1:  # LayerNorm gains/biases and linear biases: not 1 and 0
                p.add_(torch.randn_like(p) * 0.1)
            elif "positions" in name:
                p.mul_(10.0)  # learned positions large enough to matter
    out = root / "model"
    save_model_dir(out, net, cfg, task)
    return out


def _sources(predictor: Predictor) -> list[str]:
    return [s for s, _ in predictor.task.read_split("test")][:N_SENTENCES]


def _teacher_forced_log_probs(predictor: Predictor, src_ids: list[int], tgt_ids: list[int]):
    src = torch.tensor([src_ids])
    with torch.inference_mode():
        logits, _ = predictor.model(
            src, torch.ones_like(src, dtype=torch.bool), torch.tensor([[2, *tgt_ids]])
        )
    lp = logits.float().log_softmax(-1)[0]
    return [float(lp[i, t]) for i, t in enumerate([*tgt_ids, 3])]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_conversion_is_exact_on_random_weights(variant, data_dir, tmp_path):
    layer, top = VARIANTS[variant]
    model_dir = _random_model_dir(
        tmp_path, data_dir, {"encoder": _layer(**layer), "decoder": _layer(**layer), **top}
    )
    export_ctranslate2(model_dir, tmp_path / "ct2")
    predictor = Predictor.load(model_dir)
    ct2 = CT2Translator(tmp_path / "ct2", inter_threads=1)
    items = predictor.task.read_split("test")[:N_SENTENCES]
    srcs = [s for s, _ in items]
    src_ids = ct2.source_ids(srcs)
    worst = 0.0
    for ids, (_, tgt) in zip(src_ids, items):
        tgt_ids = predictor.task.tgt_tok.encode(tgt)[:30]
        ours = _teacher_forced_log_probs(predictor, ids, tgt_ids)
        (theirs,) = ct2.translator.score_batch(
            [[ct2.src_vocab[i] for i in ids]], [[ct2.src_vocab[i] for i in tgt_ids]]
        )
        assert len(theirs.log_probs) == len(ours)
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, theirs.log_probs)))
    assert worst < 1e-4, f"largest log-prob difference {worst}"

    options = dict(beam=1, max_len_a=0.0, max_len_b=20, min_len=0)
    ours = predictor.hypotheses(srcs, predictor.decode_config(**options))
    theirs = ct2.hypotheses(srcs, ct2.decode_config(**options))
    assert [h[0].tokens for h in ours] == [h[0].tokens for h in theirs]


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    run, _ = trained_model
    out = tmp_path_factory.mktemp("ct2")
    export_ctranslate2(run / "best", out / "f32")
    export_ctranslate2(run / "best", out / "int8", quantization="int8")
    return Predictor.load(run / "best"), out


def test_trained_model_greedy_outputs_identical(exported):
    predictor, out = exported
    ct2 = CT2Translator(out / "f32")
    srcs = _sources(predictor)
    # default min_len (1) and the config's max length; batch_size 1 gives CTranslate2
    # each sentence's own length limit
    options = dict(beam=1, batch_size=1)
    ours = predictor.hypotheses(srcs, predictor.decode_config(**options))
    theirs = ct2.hypotheses(srcs, ct2.decode_config(**options))
    assert [h[0].tokens for h in ours] == [h[0].tokens for h in theirs]
    assert ct2.predict(srcs, **options) == predictor.predict(srcs, **options)


def test_the_engine_splits_sentences_as_torch_does(exported):
    predictor, out = exported
    ct2 = CT2Translator(out / "f32")
    srcs = _sources(predictor)
    paragraph = " ".join(s if s.rstrip()[-1:] in ".!?" else s + "." for s in srcs[:3])
    sentences = split_sentences(paragraph, "de")
    assert len(sentences) >= 3
    options = dict(beam=1, batch_size=1)
    alone = ct2.predict(sentences, **options)
    assert ct2.predict([paragraph], **options, split_sentences="de") == [" ".join(alone)]
    assert predictor.predict([paragraph], **options, split_sentences="de") == [" ".join(alone)]


def test_trained_model_beam_outputs_identical_or_tie(exported):
    predictor, out = exported
    ct2 = CT2Translator(out / "f32")
    srcs = _sources(predictor)
    options = dict(beam=4, min_len=0, max_len_a=0.0, max_len_b=40)
    ours = predictor.hypotheses(srcs, predictor.decode_config(**options))
    theirs = ct2.hypotheses(srcs, ct2.decode_config(**options))
    # At the length limit transduce scores a forced eos and CTranslate2 stops without
    # one, so hypotheses that reach it may rank differently; all others must agree.
    ended = [(a[0], b[0]) for a, b in zip(ours, theirs) if len(a[0].tokens) < 40]
    assert len(ended) >= 20
    for a, b in ended:
        assert a.tokens == b.tokens
        # both normalize by (tokens + eos) ** len_penalty
        assert a.score == pytest.approx(b.score, abs=1e-3)


def test_int8_export_mostly_agrees(exported):
    predictor, out = exported
    ct2 = CT2Translator(out / "int8")
    srcs = _sources(predictor)
    options = dict(beam=1, batch_size=1)
    ours = predictor.hypotheses(srcs, predictor.decode_config(**options))
    theirs = ct2.hypotheses(srcs, ct2.decode_config(**options))
    same = sum(a[0].tokens == b[0].tokens for a, b in zip(ours, theirs))
    # the tiny model is unsure of itself, so int8 rounding flips some argmaxes; the
    # outputs stay close (chrF about 90 against the float32 outputs)
    assert same >= 0.4 * len(srcs)
    text_ours = predictor.predict(srcs, **options)
    text_int8 = ct2.predict(srcs, **options)
    assert sacrebleu.corpus_chrf(text_int8, [text_ours]).score > 75


def test_cli_export_and_predict(trained_model, tmp_path, monkeypatch, capsys):
    run, _ = trained_model
    out = tmp_path / "ct2"
    args = ["export", str(run / "best"), "--format", "ctranslate2", "--out", str(out)]
    assert main(args) == 0
    assert (out / "model.bin").is_file() and (out / "transduce" / "config.json").is_file()
    assert main(args) == 2  # exists: needs --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force", "--quantization", "int8"]) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\nBibliothek für Bilder\n"))
    assert main(["predict", str(out), "--engine", "ctranslate2", "--beam", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_unsupported_models_name_what_can_be_exported(data_dir, tmp_path, capsys):
    cfg = tiny_config(data_dir, TINY_LSTM)
    task = build_task(cfg)
    task.fit(task.read_split("train"))
    model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
    save_model_dir(tmp_path / "lstm", model, cfg, task)
    with pytest.raises(TransduceError, match="Transformer encoder and a Transformer decoder"):
        export_ctranslate2(tmp_path / "lstm", tmp_path / "out")
    assert main(["export", str(tmp_path / "lstm"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the encoder is 'lstm'" in err and "the decoder is 'lstm'" in err
    assert not (tmp_path / "out").exists()
