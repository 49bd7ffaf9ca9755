"""The HTTP API over loaded models, and the demo page.

``create_app(predictors)`` builds a FastAPI app; ``transduce serve`` runs it with uvicorn.

- ``GET /``: the demo page (``static/index.html``, self-contained, works offline)
- ``GET /health``, ``GET /models``: liveness, and each model's task, languages, metrics
  and decoding defaults
- ``POST /predict``: JSON ``{"model", "inputs": [...], "beam", "nbest", ...}`` for text tasks
- ``POST /predict/file``: multipart uploads (field ``files``, options as form fields) for
  tasks whose inputs are files (captioning: images; speech: audio)

Each model is loaded once. Decoding runs in a thread pool: torch releases the GIL in its
kernels, and the decoders keep no state between calls (state is passed in and returned,
never stored on modules), so concurrent requests can share one model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile

import transduce
from transduce.alignments import alignments
from transduce.config import (
    ConfigError,
    DecodeConfig,
    LimitError,
    ServeLimits,
    TransduceError,
    field_check,
)
from transduce.inference import DecodeBudgetError, DecodeStopped, Predictor
from transduce.serving.server import bind_socket, run_server
from transduce.tasks.base import Task
from transduce.timestamps import transcribe

__all__ = ["Limits", "bind_socket", "create_app", "load_predictors", "run_server"]

STATIC = Path(__file__).resolve().parent / "static"
# What a task whose inputs are files reads; the page's file picker accepts these.
FILE_KINDS = {"captioning": "image", "speech": "audio"}
_CHUNK = 1 << 20


# Request limits; exceeding one is a 413 whose message names the limit. Declared with
# their bounds in transduce.config (the CLI's `serve --max-...` options check the same).
Limits = ServeLimits


def _option(name: str, description: str | None = None) -> Any:
    """A request field with the bounds declared on ``DecodeConfig.<name>``."""
    check = field_check(DecodeConfig, name)
    bounds = {k: getattr(check, k) for k in ("ge", "gt", "le", "lt") if check is not None}
    return Field(
        None, description=description, **{k: v for k, v in bounds.items() if v is not None}
    )


class DecodeOptions(BaseModel):
    """Decoding options; a missing (null) option keeps the model's saved default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = Field(None, description="model name from GET /models; default: first")
    beam: int | None = _option("beam", "beam size; 1 = greedy")
    nbest: int | None = _option("nbest", "outputs per input (<= beam)")
    max_len: int | None = Field(None, ge=1, le=100_000, description="maximum output tokens")
    min_len: int | None = _option("min_len")
    len_penalty: float | None = _option("len_penalty")
    no_repeat_ngram: int | None = _option("no_repeat_ngram")
    repetition_penalty: float | None = _option("repetition_penalty")
    coverage_penalty: float | None = _option("coverage_penalty")
    sampling: bool | None = Field(None, description="sample instead of searching")
    temperature: float | None = _option("temperature")
    top_k: int | None = _option("top_k")
    top_p: float | None = _option("top_p")
    batch_size: int | None = _option("batch_size")
    mode: Literal["attention", "ctc_greedy", "joint"] | None = Field(None, description="speech")
    ctc_weight: float | None = _option("ctc_weight", "speech, joint mode")
    split_sentences: str | None = Field(
        None,
        description="translation: decode each input sentence by sentence by pysbd's rules for "
        'this source language (e.g. "de"), outputs joined with spaces; "" = whole inputs',
    )
    attention: bool = Field(
        False,
        description="also return, per input, the best output's tokens and each token's "
        "attention over the source (weights rounded to 3 decimals)",
    )

    def predictor_options(self) -> dict[str, Any]:
        """The options as :meth:`Predictor.predict` takes them (``max_len`` -> a=0, b=N)."""
        names = set(DecodeOptions.model_fields) - {"model", "max_len", "attention"}
        options = self.model_dump(include=names, exclude_none=True)
        if self.max_len is not None:
            options.update(max_len_a=0.0, max_len_b=self.max_len)
        return options


class PredictRequest(DecodeOptions):
    inputs: list[str] = Field(min_length=1, description="one text per item")

    @field_validator("inputs")
    @classmethod
    def _text(cls, inputs: list[str]) -> list[str]:
        for i, text in enumerate(inputs):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"inputs[{i}] holds a lone surrogate (e.g. \\ud800), which is not text; "
                    "send valid Unicode"
                ) from None
        return inputs


class PredictResponse(BaseModel):
    outputs: list[str] | list[list[str]] = Field(
        description="one string per input, or a best-first list of nbest strings when nbest > 1"
    )
    model: str
    seconds: float = Field(description="wall-clock decoding time")
    files: list[str] | None = Field(None, description="/predict/file: the uploaded file names")
    segments: list[list[dict[str, Any]]] | None = Field(
        None,
        description="/predict/file, speech models (nbest 1): per file, its segments "
        '[{"start", "end", "text", "words": [{"word", "start", "end"}]}], times in seconds '
        "from the start of the recording (words empty when the model gives no word times)",
    )
    attention: list[dict[str, Any]] | None = Field(
        None,
        description='with "attention": true, per input: "tokens" (the best output\'s tokens), '
        '"weights" (one row per token over the source positions, each summing to 1; null '
        'when the decoding has no attention), "what" (which attention), and "source" '
        '(text: the source tokens), "grid" (images: rows and columns of the encoder grid), '
        '"seconds" and "ctc" (audio: the length, and the CTC best path per encoder frame), '
        '"p_gen" (copy models: the copy gate per token)',
    )


def input_kind(task: Task) -> str:
    """``text``, or what the task reads from a file (``image``, ``audio``, ``file``)."""
    if type(task).read_inputs is Task.read_inputs:
        return "text"
    return FILE_KINDS.get(task.name, "file")


def languages(predictor: Predictor) -> dict[str, str] | None:
    """Best effort from the data paths (``ddtp-de-en``, ``debian-summaries-fr``)."""
    cfg = predictor.cfg
    paths = " ".join(str(p) for p in (cfg.data.train, cfg.data.valid, cfg.data.test))
    if cfg.task == "captioning":
        return {"target": cfg.data.caption_lang}
    if cfg.task == "summarization":
        m = re.search(r"summaries-([a-z]{2})(?![a-z])", paths)
        return {"source": m[1], "target": m[1]} if m else None
    m = re.search(r"(?<![a-z])([a-z]{2})-([a-z]{2})(?![a-z])", paths)
    return {"source": m[1], "target": m[2]} if m else None


def model_info(name: str, predictor: Predictor) -> dict[str, Any]:
    cfg, task = predictor.cfg, predictor.task
    return {
        "name": name,
        "task": task.name,
        "input": input_kind(task),
        "languages": languages(predictor),
        "metrics": list(task.metric_names),
        "architecture": {
            "encoder": cfg.model.encoder.get("type"),
            "decoder": cfg.model.decoder.get("type"),
            "attention": cfg.model.decoder.get("attention"),
            "parameters": sum(p.numel() for p in predictor.model.parameters()),
        },
        "vocab": {"source": task.src_vocab_size, "target": task.tgt_vocab_size},
        "decode": dataclasses.asdict(cfg.decode),
        "device": str(predictor.device),
    }


def name_models(predictors: Sequence[Predictor], folders: Sequence[str] | None = None) -> dict:
    """Name each model by its config ``name``; a repeated name gets its folder's name
    (``tiny`` and ``tiny:last``), then a number."""
    named: dict[str, Predictor] = {}
    for i, p in enumerate(predictors):
        name = p.cfg.name
        if name in named and folders is not None:
            name = f"{p.cfg.name}:{Path(folders[i]).name}"
        base, n = name, 2
        while name in named:
            name, n = f"{base}-{n}", n + 1
        named[name] = p
    return named


def load_predictors(
    folders: Sequence[str | Path], device: str = "cpu", precision: str = "fp32"
) -> dict[str, Predictor]:
    """Load each model folder once; returns ``{name: Predictor}`` in the given order."""
    predictors = [Predictor.load(f, device=device, precision=precision) for f in folders]
    return name_models(predictors, [str(f) for f in folders])


def _too_large(message: str) -> HTTPException:
    return HTTPException(status_code=413, detail=message)


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def create_app(
    predictors: Mapping[str, Predictor] | Sequence[Predictor],
    limits: Limits | None = None,
    workers: int | None = None,
) -> FastAPI:
    """A FastAPI app serving ``predictors`` (``{name: Predictor}``, or a list named by
    their configs). ``workers`` threads decode concurrently (default: min(4, CPUs))."""
    if not isinstance(predictors, Mapping):
        predictors = name_models(list(predictors))
    if not predictors:
        raise TransduceError("no models to serve")
    models: dict[str, Predictor] = dict(predictors)
    limits = limits or Limits()
    executor = ThreadPoolExecutor(
        max_workers=workers or min(4, os.cpu_count() or 1), thread_name_prefix="transduce-decode"
    )
    infos = {name: model_info(name, p) for name, p in models.items()}
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    stopping = threading.Event()  # set on shutdown: running decodes stop at their next step

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        stopping.set()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="transduce",
        version=transduce.__version__,
        description="Sequence-to-sequence models: translation, summarization, captioning, "
        "speech recognition.",
        lifespan=lifespan,
    )
    app.state.predictors = models
    app.state.limits = limits
    app.state.executor = executor
    app.state.stopping = stopping

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the bad input, which may not be JSON-encodable
        # (NaN, a lone surrogate) and then becomes a 500; name the field, not the value.
        errors = [
            {k: _plain(v) for k, v in err.items() if k not in ("input", "ctx", "url")}
            for err in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    def pick(name: str | None, kind: str) -> tuple[str, Predictor]:
        if name is None:
            name = next(iter(models))
        if name not in models:
            raise HTTPException(
                status_code=404,
                detail=f"unknown model '{name}'; serving: {', '.join(models)}",
            )
        predictor = models[name]
        have = infos[name]["input"]
        if kind == "text" and have != "text":
            raise HTTPException(
                status_code=400,
                detail=f"model '{name}' ({predictor.task.name}) reads {have} files: "
                "upload them to POST /predict/file",
            )
        if kind == "file" and have == "text":
            raise HTTPException(
                status_code=400,
                detail=f"model '{name}' ({predictor.task.name}) reads text: "
                'send {"inputs": [...]} to POST /predict',
            )
        return name, predictor

    def check_options(predictor: Predictor, options: dict) -> None:
        try:
            dcfg = predictor.decode_config(**options)  # the bounds and rules of DecodeConfig
        except ConfigError as e:
            raise _invalid((e.key or "options").split(".")[-1], str(e)) from None
        except TransduceError as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        if dcfg.mode != "attention" and getattr(predictor.model.encoder, "ctc_head", None) is None:
            raise _invalid("mode", f"mode '{dcfg.mode}' needs a speech encoder with a CTC head")

    def check_count(n: int) -> None:
        if n > limits.max_inputs:
            raise _too_large(
                f"too many inputs: {n} in one request; the limit is {limits.max_inputs} "
                "(send fewer, or start the server with a larger --max-inputs)"
            )

    async def decode(
        predictor: Predictor,
        inputs: list,
        options: dict,
        attention: bool = False,
        times: bool = False,
    ) -> tuple[list, float, list | None, list | None]:
        """Decode in the pool, within the request budget and deadline; errors -> HTTP.
        With ``attention``, also the best output's alignment per input; with ``times``
        (speech, nbest 1), the segments per input (the outputs are then their text)."""
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        deadline = time.monotonic() + limits.timeout

        def should_stop() -> None:
            if stopping.is_set():
                raise DecodeStopped("the server is shutting down")
            if time.monotonic() > deadline:
                raise DecodeStopped(
                    f"decoding took longer than the server's limit of {limits.timeout:g} s "
                    "(--timeout); send fewer inputs or a smaller beam or max_len"
                )

        try:
            aligned = None
            if attention:
                dcfg = predictor.decode_config(**options)
                call = functools.partial(
                    alignments,
                    predictor,
                    inputs,
                    dcfg,
                    should_stop=should_stop,
                    budget=limits.max_work,
                )
                aligned = await loop.run_in_executor(executor, call)
            segments = None
            if times:
                call = functools.partial(
                    transcribe,
                    predictor,
                    inputs,
                    should_stop=should_stop,
                    budget=limits.max_work,
                    **options,
                )
                transcripts = await loop.run_in_executor(executor, call)
                outputs = [t.text for t in transcripts]
                segments = [[s.to_json() for s in t.segments] for t in transcripts]
            elif aligned is not None and predictor.decode_config(**options).nbest <= 1:
                outputs = [a.text for a in aligned]  # one decoding gives both
            else:
                call = functools.partial(
                    predictor.predict,
                    inputs,
                    should_stop=should_stop,
                    budget=limits.max_work,
                    **options,
                )
                outputs = await loop.run_in_executor(executor, call)
        except DecodeBudgetError as e:
            raise _too_large(str(e)) from None
        except DecodeStopped as e:
            raise HTTPException(status_code=503, detail=str(e)) from None
        except RuntimeError:  # the pool refuses work once the server shuts down
            if not stopping.is_set():
                raise
            raise HTTPException(status_code=503, detail="the server is shutting down") from None
        json = [a.to_json() for a in aligned] if aligned is not None else None
        return outputs, time.perf_counter() - start, json, segments

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "version": transduce.__version__, "models": list(models)}

    @app.get("/models")
    async def list_models() -> dict:
        return {"models": list(infos.values()), "limits": dataclasses.asdict(limits)}

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(request: PredictRequest) -> dict:
        name, predictor = pick(request.model, "text")
        check_count(len(request.inputs))
        for i, text in enumerate(request.inputs):
            if len(text) > limits.max_input_chars:
                raise _too_large(
                    f"inputs[{i}] is {len(text)} characters long; the limit is "
                    f"{limits.max_input_chars} (split it, or start the server with a larger "
                    "--max-chars)"
                )
            if not text.strip():
                raise _invalid("inputs", f"inputs[{i}] is empty")
        options = request.predictor_options()
        check_options(predictor, options)
        try:
            outputs, seconds, attention, _ = await decode(
                predictor, list(request.inputs), options, request.attention
            )
        except TransduceError as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        return {
            "outputs": outputs,
            "model": name,
            "seconds": round(seconds, 4),
            "attention": attention,
        }

    @app.post(
        "/predict/file",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                                **DecodeOptions.model_json_schema()["properties"],
                            },
                            "required": ["files"],
                        }
                    }
                },
                "required": True,
            }
        },
    )
    async def predict_file(request: Request) -> dict:
        """Multipart: one or more ``files`` parts plus decoding options as form fields."""
        form = await request.form(max_files=limits.max_inputs + 1)
        uploads = [v for k, v in form.multi_items() if k == "files" and isinstance(v, UploadFile)]
        fields: dict[str, str] = {}
        for key, value in form.multi_items():
            if key == "files":
                continue
            if isinstance(value, UploadFile):
                raise _invalid(key, f"unexpected file field '{key}' (upload files as 'files')")
            fields[key] = value  # empty form fields mean "keep the default"
        try:
            opts = DecodeOptions.model_validate({k: v for k, v in fields.items() if v != ""})
        except ValidationError as e:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)]
            ) from None
        if not uploads:
            raise _invalid("files", "no file uploaded: send one or more 'files' parts")
        name, predictor = pick(opts.model, "file")
        check_count(len(uploads))
        options = opts.predictor_options()
        check_options(predictor, options)
        names = [u.filename or f"upload-{i}" for i, u in enumerate(uploads)]
        with tempfile.TemporaryDirectory(prefix="transduce-upload-") as tmp:
            paths = []
            for i, upload in enumerate(uploads):
                path = Path(tmp) / f"{i}{_suffix(names[i])}"
                await _save_upload(upload, path, limits.max_upload_bytes, names[i])
                _check_header(infos[name]["input"], path, names[i], limits)
                paths.append(str(path))
            try:
                nbest = predictor.decode_config(**options).nbest
                times = predictor.task.name == "speech" and nbest <= 1
                outputs, seconds, attention, segments = await decode(
                    predictor, paths, options, opts.attention, times
                )
            except TransduceError as e:
                message = str(e)
                for path, original in zip(paths, names):  # name the upload, not the temp file
                    message = message.replace(path, original)
                raise HTTPException(status_code=400, detail=message) from None
        return {
            "outputs": outputs,
            "model": name,
            "seconds": round(seconds, 4),
            "files": names,
            "segments": segments,
            "attention": attention,
        }

    return app


def _suffix(filename: str) -> str:
    """The upload's extension, when it is a plain one (some readers look at it)."""
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


async def _save_upload(upload: UploadFile, path: Path, max_bytes: int, name: str) -> None:
    size = 0
    with open(path, "wb") as f:
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(
                    f"file '{name}' is larger than the limit of {max_bytes / 2**20:.1f} MB "
                    "(start the server with a larger --max-upload-mb)"
                )
            f.write(chunk)


def _check_header(kind: str, path: Path, name: str, limits: Limits) -> None:
    """Refuse an upload whose decoded size would pass the limits, from its header alone."""
    try:
        if kind == "image":
            from transduce.data.images import check_image_header

            check_image_header(path, limits.max_pixels)
        elif kind == "audio":
            from transduce.data.audio import check_audio_header

            check_audio_header(path, limits.max_seconds)
    except LimitError as e:
        flag = "--max-pixels" if kind == "image" else "--max-seconds"
        message = str(e).replace(str(path), name) + f" (the server's {flag})"
        raise HTTPException(status_code=413, detail=message) from None
    except TransduceError as e:
        raise HTTPException(status_code=400, detail=str(e).replace(str(path), name)) from None


def _plain(value: Any) -> Any:
    """A JSON-encodable copy of a validation error's field (finite numbers, valid text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
