"""``"attention": true`` on ``POST /predict`` and ``/predict/file``: per input, the best
output's tokens and one row of rounded weights per token over the source."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("fastapi")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient  # noqa: E402

from tests.integration.tiny_models import (  # noqa: E402
    caption_raw,
    speech_raw,
    summarization_raw,
    translation_raw,
    untrained_model_dir,
)
from transduce.data.readers import SAMPLES_DIR  # noqa: E402
from transduce.inference import Predictor  # noqa: E402
from transduce.serving import create_app  # noqa: E402

TEXTS = ["Bibliothek zum Lesen von Bilddateien", "Ein Satz."]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention-models")
    raws = [translation_raw(), summarization_raw(), caption_raw(), speech_raw()]
    models = {r["name"]: Predictor.load(untrained_model_dir(r, root / r["name"])) for r in raws}
    with TestClient(create_app(models)) as c:
        c.models = models
        yield c


def check_rows(item: dict) -> None:
    assert len(item["weights"]) == len(item["tokens"])
    for row in item["weights"]:
        assert abs(sum(row) - 1.0) < 0.01  # rounded to 3 decimals
        assert all(w == round(w, 3) for w in row)


def test_text_attention(client):
    r = client.post(
        "/predict", json={"model": "tiny-translate", "inputs": TEXTS, "attention": True}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"] == client.models["tiny-translate"].predict(TEXTS)
    assert len(body["attention"]) == 2
    for text, item in zip(TEXTS, body["attention"]):
        check_rows(item)
        assert item["source"] == client.models["tiny-translate"].task.source_view(text)
        assert all(len(row) == len(item["source"]) for row in item["weights"])
        assert "mean of 4 heads" in item["what"]
    # without the flag the response has no attention
    r = client.post("/predict", json={"model": "tiny-translate", "inputs": TEXTS})
    assert "attention" not in r.json()
    # n-best outputs keep their lists; attention is the best hypothesis's
    r = client.post(
        "/predict",
        json={"model": "tiny-translate", "inputs": TEXTS, "beam": 3, "nbest": 2, "attention": True},
    )
    assert all(len(o) == 2 for o in r.json()["outputs"]) and len(r.json()["attention"]) == 2


def test_pointer_generator_returns_p_gen(client):
    r = client.post(
        "/predict", json={"model": "tiny-summarize", "inputs": TEXTS, "attention": True}
    )
    item = r.json()["attention"][0]
    check_rows(item)
    assert len(item["p_gen"]) == len(item["tokens"]) and all(0 <= p <= 1 for p in item["p_gen"])


def test_file_attention(client):
    picture = sorted((SAMPLES_DIR / "emoji").rglob("*.png"))[0]
    r = client.post(
        "/predict/file",
        files=[("files", (picture.name, picture.read_bytes()))],
        data={"model": "tiny-caption", "attention": "true"},
    )
    assert r.status_code == 200, r.text
    (item,) = r.json()["attention"]
    check_rows(item)
    rows, cols = item["grid"]
    assert all(len(row) == rows * cols for row in item["weights"])

    clip = sorted((SAMPLES_DIR / "speech-tts").rglob("*.flac"))[0]
    r = client.post(
        "/predict/file",
        files=[("files", (clip.name, clip.read_bytes()))],
        data={"model": "tiny-asr", "attention": "true"},
    )
    assert r.status_code == 200, r.text
    (item,) = r.json()["attention"]
    check_rows(item)
    assert item["seconds"] > 0.5 and len(item["ctc"]) == len(item["weights"][0])
    r = client.post(
        "/predict/file",
        files=[("files", (clip.name, clip.read_bytes()))],
        data={"model": "tiny-asr", "attention": "true", "mode": "ctc_greedy"},
    )
    (item,) = r.json()["attention"]
    assert item["weights"] is None and item["what"] == "CTC best path"
    assert "".join(c for c in item["ctc"] if c) == r.json()["outputs"][0]
