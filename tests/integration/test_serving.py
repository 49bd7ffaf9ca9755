"""The HTTP API and demo page (``transduce serve``) on tiny models.

Text requests go to the session's tiny trained translator; uploads go to untrained tiny
captioning and speech models (the API, not their quality, is under test).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 over httpx; both work
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient  # noqa: E402

from transduce.config import config_from_dict  # noqa: E402
from transduce.data.readers import SAMPLES_DIR  # noqa: E402
from transduce.inference import Predictor, save_model_dir  # noqa: E402
from transduce.models.seq2seq import build_model  # noqa: E402
from transduce.serving import Limits, create_app  # noqa: E402
from transduce.tasks import build_task  # noqa: E402

SENTENCES = ["Dokumentation für das Paket", "Ein Satz.", "Bibliothek zum Lesen von Bilddateien"]


@pytest.fixture(scope="module")
def translator(trained_model) -> Predictor:
    run, _ = trained_model
    return Predictor.load(run / "best")


@pytest.fixture(scope="module")
def client(translator):
    app = create_app({"tiny": translator}, limits=Limits(max_inputs=8, max_input_chars=200))
    with TestClient(app) as c:
        yield c


def untrained_model_dir(raw: dict, directory: Path) -> Path:
    """A model folder with random weights: tokenizers fitted on the sample, no training."""
    cfg = config_from_dict(raw)
    task = build_task(cfg)
    task.fit(task.read_split("train"))
    torch.manual_seed(0)
    model = build_model(cfg.model, task.src_vocab_size, task.tgt_vocab_size)
    save_model_dir(directory, model, cfg, task)
    return directory


def caption_raw() -> dict:
    return {
        "task": "captioning",
        "name": "tiny-caption",
        "data": {f"{s}": f"sample:emoji/{s}.jsonl" for s in ("train", "valid", "test")},
        "image": {"size": 32},
        "tokenizer": {"type": "word", "vocab_size": 500},
        "model": {
            "encoder": {"type": "resnet", "widths": [8, 16], "depths": [1, 1], "d_model": 32},
            "decoder": {"type": "lstm", "embed_dim": 32, "hidden_size": 32, "attention": "dot"},
        },
        "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 6},
    }


def speech_raw() -> dict:
    layer = {"d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1, "dropout": 0.0}
    return {
        "task": "speech",
        "name": "tiny-asr",
        "data": {f"{s}": f"sample:speech-tts/{s}.jsonl" for s in ("train", "valid", "test")},
        "tokenizer": {"type": "char"},
        "model": {
            "encoder": {"type": "conformer", "subsampling_channels": 8, **layer},
            "decoder": {"type": "transformer", **layer},
        },
        "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 8, "mode": "ctc_greedy"},
    }


@pytest.fixture(scope="module")
def file_models(tmp_path_factory) -> dict[str, Predictor]:
    root = tmp_path_factory.mktemp("serving-models")
    return {
        "caption": Predictor.load(untrained_model_dir(caption_raw(), root / "caption")),
        "asr": Predictor.load(untrained_model_dir(speech_raw(), root / "asr")),
    }


@pytest.fixture(scope="module")
def file_client(file_models):
    app = create_app(file_models, limits=Limits(max_inputs=3, max_upload_bytes=200_000))
    with TestClient(app) as c:
        yield c


def first_sample(name: str, suffix: str) -> Path:
    return sorted((SAMPLES_DIR / name).rglob(f"*{suffix}"))[0]


# --------------------------------------------------------------------------- text models


def test_health_models_and_page(client):
    assert client.get("/health").json() == {
        "status": "ok",
        "version": client.app.version,
        "models": ["tiny"],
    }
    body = client.get("/models").json()
    (info,) = body["models"]
    assert info["name"] == "tiny" and info["task"] == "translation" and info["input"] == "text"
    assert info["metrics"] == ["bleu", "chrf"]
    assert info["decode"]["beam"] == 2 and info["decode"]["max_len_b"] == 20
    assert info["architecture"]["encoder"] == "transformer"
    assert body["limits"]["max_inputs"] == 8
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # self-contained: no scripts, styles, fonts or images fetched from elsewhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert "@import" not in page.text and "url(http" not in page.text


def test_predict_equals_the_python_api(client, translator):
    r = client.post("/predict", json={"inputs": SENTENCES, "beam": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny" and body["seconds"] >= 0
    assert body["outputs"] == translator.predict(SENTENCES, beam=3)

    r = client.post(
        "/predict", json={"model": "tiny", "inputs": SENTENCES[:1], "beam": 4, "nbest": 3}
    )
    (nbest,) = r.json()["outputs"]
    assert nbest == translator.predict(SENTENCES[:1], beam=4, nbest=3)[0] and len(nbest) == 3

    options = {"sampling": True, "top_k": 5, "temperature": 0.8, "max_len": 6}
    r = client.post("/predict", json={"inputs": SENTENCES, **options})
    expected = translator.predict(SENTENCES, sampling=True, top_k=5, temperature=0.8,
                                  max_len_a=0.0, max_len_b=6)  # fmt: skip
    assert r.json()["outputs"] == expected


def test_bad_requests_name_the_problem(client):
    def detail(payload, status, path="/predict"):
        r = client.post(path, json=payload)
        assert r.status_code == status, r.text
        return r.json()["detail"]

    locs = [e["loc"] for e in detail({"inputs": ["x"], "beam": 0}, 422)]
    assert ["body", "beam"] in locs
    locs = [e["loc"] for e in detail({"inputs": ["x"], "bam": 3}, 422)]  # typo: unknown field
    assert ["body", "bam"] in locs
    assert ["body", "inputs"] in [e["loc"] for e in detail({"beam": 2}, 422)]
    assert ["body", "inputs"] in [e["loc"] for e in detail({"inputs": []}, 422)]
    assert ["body", "top_p"] in [e["loc"] for e in detail({"inputs": ["x"], "top_p": 2}, 422)]
    nbest = detail({"inputs": ["x"], "beam": 2, "nbest": 5}, 422)
    assert nbest[0]["loc"] == ["body", "nbest"] and "beam" in nbest[0]["msg"]
    assert "inputs[1] is empty" in detail({"inputs": ["x", "  "]}, 422)[0]["msg"]
    assert "needs a speech encoder" in detail({"inputs": ["x"], "mode": "joint"}, 422)[0]["msg"]

    assert "unknown model 'nope'" in detail({"model": "nope", "inputs": ["x"]}, 404)
    too_many = detail({"inputs": ["x"] * 9}, 413)
    assert "too many inputs: 9" in too_many and "limit is 8" in too_many
    too_long = detail({"inputs": ["x", "y" * 201]}, 413)
    assert "inputs[1] is 201 characters" in too_long and "200" in too_long

    r = client.post("/predict/file", files=[("files", ("a.txt", b"Ein Satz."))])
    assert r.status_code == 400 and "POST /predict" in r.json()["detail"]


def test_concurrent_requests_give_the_sequential_outputs(translator):
    """One model, four decoding threads: every output equals the one decoded alone."""
    app = create_app({"tiny": translator}, workers=4)
    requests = []
    for i, text in enumerate(SENTENCES * 4):
        options = [{"beam": 1}, {"beam": 3}, {"beam": 4, "nbest": 2}, {"sampling": True}][i % 4]
        requests.append({"inputs": [text, SENTENCES[(i + 1) % 3]], **options})
    with TestClient(app) as c:
        sequential = [c.post("/predict", json=r).json()["outputs"] for r in requests]
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda r: c.post("/predict", json=r), requests))
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["outputs"] for r in responses] == sequential


# --------------------------------------------------------------------------- file uploads


def test_image_upload_captions_like_predict(file_client, file_models):
    png = first_sample("emoji", ".png")
    info = {m["name"]: m for m in file_client.get("/models").json()["models"]}
    assert info["caption"]["input"] == "image" and info["asr"]["input"] == "audio"
    assert info["caption"]["languages"] == {"target": "en"}

    files = [("files", ("cat.png", png.read_bytes())), ("files", ("two.png", png.read_bytes()))]
    r = file_client.post("/predict/file", data={"model": "caption", "beam": "2"}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["files"] == ["cat.png", "two.png"] and body["model"] == "caption"
    expected = file_models["caption"].predict([str(png)], beam=2)[0]
    assert body["outputs"] == [expected, expected]

    r = file_client.post("/predict/file", data={"model": "caption", "nbest": "2", "beam": "2"},
                         files=files[:1])  # fmt: skip
    assert len(r.json()["outputs"][0]) == 2


def test_bad_uploads(file_client):
    def post(data, files):
        return file_client.post("/predict/file", data=data, files=files)

    r = post({"model": "caption"}, [("files", ("broken.png", b"this is not a picture"))])
    assert r.status_code == 400
    assert "'broken.png' is not an image" in r.json()["detail"]
    assert "transduce-upload" not in r.json()["detail"]  # the temp path is not shown

    r = post({"model": "asr"}, [("files", ("noise.wav", b"RIFF....WAVEfmt garbage"))])
    assert r.status_code == 400 and "cannot read audio file noise.wav" in r.json()["detail"]

    png = first_sample("emoji", ".png").read_bytes()
    r = post({"model": "caption", "beam": "0"}, [("files", ("a.png", png))])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "beam"]
    r = post({"model": "caption", "bem": "2"}, [("files", ("a.png", png))])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "bem"]
    r = post({"model": "caption"}, [])
    assert r.status_code == 422 and "no file uploaded" in r.text
    r = post({"model": "caption"}, [("files", ("big.png", b"\0" * 200_001))])
    assert r.status_code == 413 and "big.png" in r.json()["detail"]
    r = post({"model": "caption"}, [("files", (f"{i}.png", png)) for i in range(4)])
    assert r.status_code == 413 and "too many inputs: 4" in r.json()["detail"]
    r = post({"model": "other"}, [("files", ("a.png", png))])
    assert r.status_code == 404

    r = file_client.post("/predict", json={"model": "caption", "inputs": ["/etc/passwd"]})
    assert r.status_code == 400 and "/predict/file" in r.json()["detail"]


def test_audio_upload_transcribes_like_predict(file_client, file_models):
    clip = first_sample("speech-tts", ".flac")
    files = [("files", ("clip.flac", clip.read_bytes()))]
    r = file_client.post("/predict/file", data={"model": "asr"}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == file_models["asr"].predict([str(clip)])


# --------------------------------------------------------------------------- real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transduce_serve_answers_over_loopback(trained_model):
    """``transduce serve`` in a subprocess on 127.0.0.1: /health, /predict, then stop."""
    run, _ = trained_model
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "transduce.cli", "serve", str(run / "best"), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--threads", "1", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start in 90 s"
                time.sleep(0.3)
        assert health["status"] == "ok" and health["models"] == ["tiny"]
        request = urllib.request.Request(
            f"{base}/predict",
            data=json.dumps({"inputs": SENTENCES[:2], "beam": 2}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            body = json.load(r)
        assert len(body["outputs"]) == 2 and body["model"] == "tiny"
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            assert b"<title>transduce</title>" in r.read()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_models_are_named_by_config_then_folder(trained_model):
    from transduce.serving import load_predictors

    run, _ = trained_model
    assert list(load_predictors([run / "best", run / "last", run / "best"])) == [
        "tiny",
        "tiny:last",
        "tiny:best",
    ]
