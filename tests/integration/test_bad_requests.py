"""The server's counterpart of test_bad_input: generated bad requests never get a 5xx and
leave /health alive; every request is bounded in cost and time; 24 concurrent clients
on loopback get answers without error; Ctrl+C stops a running decode."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 over httpx; both work
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient  # noqa: E402

from tests.integration.test_bad_input import png_header  # noqa: E402
from transduce.inference import Predictor  # noqa: E402
from transduce.serving import Limits, create_app  # noqa: E402
from transduce.serving.app import DecodeOptions  # noqa: E402
from transduce.serving.server import bind_socket  # noqa: E402

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# small budgets, so that no generated request can hold the test for long
LIMITS = Limits(max_inputs=4, max_input_chars=300, max_work=20_000, timeout=20.0)


@pytest.fixture(scope="module")
def predictor(tiny_run) -> Predictor:
    return Predictor.load(tiny_run / "best")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app({"tiny": predictor}, limits=LIMITS)) as c:
        yield c


@pytest.fixture(scope="module")
def file_client(untrained_file_models):
    models = {k: Predictor.load(v) for k, v in untrained_file_models.items()}
    limits = Limits(max_inputs=2, max_pixels=1_000_000, max_seconds=5.0, max_work=20_000)
    with TestClient(create_app(models, limits=limits)) as c:
        yield c


def post_raw(client, body: str | bytes, content_type: str = "application/json"):
    return client.post("/predict", content=body, headers={"Content-Type": content_type})


def assert_alive(client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# any JSON value, including the ones Python's json writes but JSON forbids (NaN, Infinity)
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
# text with lone surrogates, control characters, anything
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@SETTINGS
@given(
    field=st.sampled_from(sorted(set(DecodeOptions.model_fields) | {"inputs", "bogus"})),
    value=JSON_VALUES,
    text=ANY_TEXT,
)
def test_generated_bad_requests_never_get_a_5xx(client, field, value, text):
    body = {"inputs": [text or "x"], field: value}
    r = post_raw(client, json.dumps(body, allow_nan=True))  # NaN, Infinity, \\ud800 as JSON
    assert r.status_code < 500, (body, r.status_code, r.text)
    assert isinstance(r.json(), dict)  # the answer is JSON, whatever was asked


@pytest.mark.parametrize(
    "body,status",
    [
        ('{"inputs": ["x"], "temperature": NaN, "sampling": true}', 422),
        ('{"inputs": ["x"], "len_penalty": Infinity}', 422),
        ('{"inputs": ["x"], "beam": -Infinity}', 422),
        ('{"inputs": ["\\ud800"]}', 422),
        ('{"inputs": ["ok", "\\udfff tail"]}', 422),
        (b'{"inputs": ["caf\xe9"]}', 400),  # not UTF-8: the body cannot be parsed
        ('{"inputs": ["x"]', 422),  # not JSON
        ('["x"]', 422),
        ('{"inputs": ["x"], "beam": 64, "max_len": 100000}', 413),  # past the work budget
        ('{"inputs": ["x", "y", "z", "w", "v"]}', 413),  # too many inputs
        (json.dumps({"inputs": ["x" * 301]}), 413),  # too long
        ('{"inputs": ["x"], "beam": 2, "nbest": 5}', 422),
        ('{"inputs": ["x"], "min_len": 50, "max_len": 5}', 422),  # was decoded (a 200)
        ('{"inputs": ["x"], "model": ""}', 404),
        ('{"inputs": [1, 2]}', 422),
        ('{"inputs": ["x"], "mode": "joint"}', 422),  # a text model has no CTC head
        ("[" * 100_000 + "]" * 100_000, 400),  # nested too deep to parse
    ],
)
def test_issue_request_cases(client, body, status):
    r = post_raw(client, body)
    assert r.status_code == status, r.text
    assert_alive(client)


def test_deadline_and_shutdown_stop_a_decode(predictor):
    slow = Limits(timeout=1e-6)
    with TestClient(create_app({"tiny": predictor}, limits=slow)) as c:
        r = c.post("/predict", json={"inputs": ["Ein Satz."]})
        assert r.status_code == 503 and "--timeout" in r.json()["detail"]
    app = create_app({"tiny": predictor})
    with TestClient(app) as c:
        app.state.stopping.set()
        r = c.post("/predict", json={"inputs": ["Ein Satz."]})
        assert r.status_code == 503 and "shutting down" in r.json()["detail"]


def test_uploads_are_bounded_by_their_headers(file_client, tmp_path):
    def upload(model: str, name: str, data: bytes):
        files = [("files", (name, data))]
        return file_client.post("/predict/file", data={"model": model}, files=files)

    r = upload("caption", "big.png", png_header(12000, 12000))
    assert r.status_code == 413 and "big.png" in r.text and "--max-pixels" in r.text
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(1000 * 60, dtype=np.int16), 1000)  # one minute, limit 5 s
    r = upload("asr", "long.wav", long.read_bytes())
    assert r.status_code == 413 and "long.wav" in r.text and "--max-seconds" in r.text
    for case in ("nan", "one-hertz"):
        path = tmp_path / f"{case}.wav"
        wave = np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32)
        if case == "nan":
            wave[10] = np.nan
        sf.write(path, wave, 16000 if case == "nan" else 1, subtype="FLOAT")
        r = upload("asr", f"{case}.wav", path.read_bytes())
        assert r.status_code == 400 and f"{case}.wav" in r.text, r.text
    assert_alive(file_client)


def test_concurrent_clients_over_loopback(predictor):
    """24 clients x 4 requests against a real server on 127.0.0.1: no error, bounded time."""
    import uvicorn

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app({"tiny": predictor}, limits=LIMITS, workers=2)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

        def client(i: int) -> list[int]:
            codes = []
            for k in range(4):
                body = {"inputs": [f"Ein Satz {i}.", "Bibliothek"], "beam": 1 + (i + k) % 3}
                request = urllib.request.Request(
                    f"{base}/predict",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=120) as r:
                    codes.append(r.status)
                    assert len(json.load(r)["outputs"]) == 2
            return codes

        start = time.monotonic()
        with ThreadPoolExecutor(24) as pool:
            codes = [c for result in pool.map(client, range(24)) for c in result]
        elapsed = time.monotonic() - start
        assert codes == [200] * 96
        assert elapsed < 240, f"96 requests took {elapsed:.0f} s"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_ctrl_c_stops_a_running_decode(tiny_run, tmp_path):
    """``transduce serve`` gets SIGINT while a long request decodes: it exits promptly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "transduce.cli", "serve", str(Path(tiny_run) / "best")]
    cmd += ["--port", str(port), "--max-work", "100000000", "--timeout", "600"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        # minutes of work: 4 inputs x beam 32 x 5000 forced tokens
        body = {"inputs": ["Ein Satz."] * 4, "beam": 32, "min_len": 5000, "max_len": 5000}
        answers: list = []

        def long_request() -> None:
            request = urllib.request.Request(
                f"{base}/predict",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as r:
                    answers.append(r.status)
            except urllib.error.HTTPError as e:
                answers.append(e.code)
            except OSError as e:
                answers.append(str(e))

        thread = threading.Thread(target=long_request, daemon=True)
        thread.start()
        time.sleep(2.0)  # the decode is running
        assert proc.poll() is None
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert time.monotonic() - stopped_at < 30
        thread.join(timeout=30)
        assert answers and answers[0] != 200, answers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
