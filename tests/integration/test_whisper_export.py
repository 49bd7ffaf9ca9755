"""`transduce export --format ctranslate2` of Whisper models: faster-whisper runs them.

For the imported Whisper base and a "fine-tuned" one (its decoder weights, embeddings
included, deterministically perturbed and saved as a model folder, as training would):

* faster-whisper (``WhisperModel(DIR)``, float32, beam 5, no VAD, no temperature
  fallback, language en, no timestamps) transcribes committed Asterisk sample clips
  exactly as transduce's own ``predict`` does;
* the exported ``model.bin`` read back by ``transduce import whisper --from DIR`` gives
  bit-identical weights (so the id swap and row permutation are undone exactly);
* ``config.json`` and ``vocabulary.json`` equal the original CTranslate2 folder's
  (also for a folder imported before the import recorded the alignment heads).

Needs the dev dependencies (ctranslate2, faster-whisper, the Whisper base packages).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import transduce
from transduce.cli import main
from transduce.config import TransduceError
from transduce.data.audio import read_audio

pytest.importorskip("ctranslate2")
faster_whisper = pytest.importorskip("faster_whisper")

from transduce.convert.whisper import import_whisper, package_files  # noqa: E402
from transduce.export.ctranslate2 import CT2Translator, export_ctranslate2  # noqa: E402
from transduce.inference import Predictor, save_model_dir  # noqa: E402

SAMPLES = Path(transduce.__file__).parent / "data" / "samples" / "asterisk"
N_CLIPS = 4


@pytest.fixture(scope="module")
def paths() -> list[str]:
    """The N_CLIPS longest committed sample clips (the most words to get right)."""
    rows = [json.loads(line) for line in (SAMPLES / "test.jsonl").read_text().splitlines()]
    rows.sort(key=lambda r: -r["duration"])
    return [str(SAMPLES / r["audio"]) for r in rows[:N_CLIPS]]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """{"imported": Whisper base folder, "tuned": the same with perturbed decoder weights}."""
    root = tmp_path_factory.mktemp("whisper-export")
    imported = import_whisper(root / "imported", size="base")
    predictor = Predictor.load(imported)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in predictor.model.named_parameters():
            if name.startswith("decoder.") and p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05 * p.std())
    save_model_dir(root / "tuned", predictor.model, predictor.cfg, predictor.task)
    return {"imported": imported, "tuned": root / "tuned"}


def faster_whisper_transcripts(folder: Path, paths: list[str], compute_type: str) -> list[str]:
    model = faster_whisper.WhisperModel(
        str(folder), device="cpu", compute_type=compute_type, cpu_threads=2
    )
    texts = []
    for path in paths:
        segments, _ = model.transcribe(
            read_audio(path, 16000),
            language="en",
            beam_size=5,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        texts.append("".join(s.text for s in segments).strip())
    return texts


@pytest.mark.parametrize("which", ["imported", "tuned"])
def test_faster_whisper_runs_the_export_as_transduce_decodes(models, paths, which, tmp_path):
    model_dir = models[which]
    out = export_ctranslate2(model_dir, tmp_path / "ct2")
    theirs = faster_whisper_transcripts(out, paths, "float32")
    ours = Predictor.load(model_dir).predict(paths, beam=5)
    assert ours == theirs
    assert all(t.split() for t in ours)  # real speech: words came out

    # Back through the import: the same weights, bit for bit.
    back = import_whisper(tmp_path / "back", source=out)
    want, got = load_file(model_dir / "model.safetensors"), load_file(back / "model.safetensors")
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), [
        k for k in want if not torch.equal(want[k], got[k])
    ][:5]

    # The CTranslate2 files are the original folder's.
    _, original = package_files("base")
    for name in ("config.json", "vocabulary.json"):
        assert json.loads((out / name).read_text()) == json.loads((original / name).read_text())


def test_int8_export_is_int8_and_reads_back_close(models, paths, tmp_path):
    out = export_ctranslate2(models["imported"], tmp_path / "ct2", quantization="int8")
    float_size = sum(p.stat().st_size for p in package_files("base")[0])  # float16
    assert (out / "model.bin").stat().st_size < 0.6 * float_size
    texts = faster_whisper_transcripts(out, paths[:2], "int8")
    assert all(t.split() for t in texts)
    back = load_file(import_whisper(tmp_path / "back", source=out) / "model.safetensors")
    want = load_file(models["imported"] / "model.safetensors")
    for key in ("decoder.layers.0.ff.fc1.weight", "encoder.layers.3.self_attn.q_proj.weight"):
        w, b = want[key].numpy(), back[key].numpy()
        # int8 with one scale per row: at most half a step (row max / 127 / 2) off
        step = np.abs(w).max(axis=1, keepdims=True) / 127
        assert np.all(np.abs(w - b) <= 0.5 * step + 1e-6)
        assert not np.array_equal(w, b)


def test_bad_whisper_exports_are_one_error_line(models, tmp_path, capsys):
    # A Whisper encoder with a decoder CTranslate2's Whisper cannot express.
    bad = tmp_path / "relu"
    bad.mkdir()
    for f in models["imported"].iterdir():
        if f.name != "config.json":
            (bad / f.name).symlink_to(f)
    cfg = json.loads((models["imported"] / "config.json").read_text())
    cfg["model"]["decoder"]["activation"] = "relu"
    (bad / "config.json").write_text(json.dumps(cfg))
    assert main(["export", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "activation is 'relu'" in err[0]
    assert not (tmp_path / "out").exists()

    # A Whisper export is not a text model for `predict --engine ctranslate2`.
    out = tmp_path / "ct2"
    assert main(["export", str(models["imported"]), "--out", str(out)]) == 0
    assert "WhisperModel" in capsys.readouterr().out
    with pytest.raises(TransduceError, match="faster-whisper"):
        CT2Translator(out)
    shutil.rmtree(out / "transduce")  # not an export of ours any more: --force refuses
    assert main(["export", str(models["imported"]), "--out", str(out), "--force"]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert (out / "model.bin").is_file()  # and the folder is left as it was


def test_config_of_a_model_imported_without_alignment_heads(models):
    """Folders imported before the import kept the alignment heads still export them."""
    from transduce.data.tokenizers import load_tokenizers
    from transduce.export.whisper import whisper_ct2_config

    _, tok = load_tokenizers(models["imported"])
    original = json.loads((package_files("base")[1] / "config.json").read_text())
    assert whisper_ct2_config(tok, 6, 8) == original
    del tok.meta["alignment_heads"]
    assert whisper_ct2_config(tok, 6, 8) == original  # from the installed package
    default = whisper_ct2_config(tok, 4, 6)["alignment_heads"]  # no package of this shape
    assert default == [[layer, head] for layer in (2, 3) for head in range(6)]
