"""transduce's speed on the workloads of ../shared/bench/peers, plus real-model decoding.

Three measurements, each printed as a table and appended as JSON lines to
--out (default benchmarks/results.jsonl):

* ``decode``: the peers' fixed-length decoding workload. A random-weight
  Transformer with the peers' "small" or "base" shape (Marian layout: 3+3 layers,
  d_model 256, 4 heads, ffn 1024, vocab 8000 / 6+6, 512, 8, 2048, 32000) decodes
  a batch of 32 random source sentences of 25 tokens and exactly 25 target
  tokens per sentence (eos forbidden before the last step, forced on it), greedy
  and beam 4. Reported: target tokens per second (batch * 25 / median time).
* ``train``: forward + backward + AdamW step on batches of 4096 source and 4096
  target tokens (128 sentences of 32), target tokens per second; ``lstm`` is the
  attention LSTM of the peers' ``bench_rnn.py`` (2+2 layers, 512, input feeding).
* ``translate MODEL_DIR``: inputs (sentences, documents, pictures) per second when a
  trained model of any task decodes a data split with beam 5 (the real workload).

Examples:
    python benchmarks/bench_transduce.py decode --configs small base --beams 1 4 [--precision int8]
    python benchmarks/bench_transduce.py train --configs small [--precision bf16]
    python benchmarks/bench_transduce.py translate runs/ddtp-de-en-transformer/best --split test
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from transduce.config import ModelConfig
from transduce.decoding import beam_search, greedy_search
from transduce.memory import keep_freed_memory
from transduce.models.quantize import apply_precision
from transduce.models.seq2seq import build_model
from transduce.training.loss import label_smoothed_nll
from transduce.training.trainer import autocast_context

CONFIGS = {
    "small": dict(layers=3, d_model=256, heads=4, ffn=1024, vocab=8000),
    "base": dict(layers=6, d_model=512, heads=8, ffn=2048, vocab=32000),
    # ../shared/bench/peers/bench_rnn.py's reference (OpenNMT-py's default shape): 2-layer
    # bi-LSTM encoder (256 per direction), 2-layer LSTM decoder of 512, Luong "general"
    # attention with input feeding, embeddings 512, separate source/target embeddings
    # and generator, vocab 8000
    "lstm": dict(layers=2, emb=512, hidden=512, vocab=8000),
}


def lstm_model() -> torch.nn.Module:
    c = CONFIGS["lstm"]
    enc = dict(type="lstm", embed_dim=c["emb"], hidden_size=c["hidden"] // 2,
               layers=c["layers"], bidirectional=True, dropout=0.0)  # fmt: skip
    dec = dict(type="lstm", embed_dim=c["emb"], hidden_size=c["hidden"], layers=c["layers"],
               dropout=0.0, attention="general", input_feed=True, bridge=True)  # fmt: skip
    cfg = ModelConfig(encoder=enc, decoder=dec, share_embeddings=False, tie_embeddings=False)
    torch.manual_seed(0)
    return build_model(cfg, c["vocab"], c["vocab"])


def peer_model(name: str) -> torch.nn.Module:
    if name == "lstm":
        return lstm_model()
    c = CONFIGS[name]
    side = {
        "type": "transformer",
        "d_model": c["d_model"],
        "heads": c["heads"],
        "ff_dim": c["ffn"],
        "layers": c["layers"],
        "dropout": 0.1,
        # as the peers' MarianConfig: dropout 0.1 on embeddings and sublayer outputs,
        # none on attention weights or inside the feed-forward (activation_dropout 0)
        "activation_dropout": 0.0,
    }
    cfg = ModelConfig(encoder=dict(side), decoder=dict(side), share_embeddings=True)
    torch.manual_seed(0)
    model = build_model(cfg, c["vocab"], c["vocab"])
    for p in model.parameters():  # small weights like the HF init the peers use
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    return model


def timed(fn, reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def decode_case(model, src, mask, beam: int, n: int):
    """Decode exactly ``n`` tokens (+ eos) per sentence."""
    with torch.inference_mode():
        if beam == 1:
            return greedy_search(model, src, mask, max_len=n, min_len=n)
        return beam_search(model, src, mask, beam, max_len=n, min_len=n)


def bench_decode(args) -> list[dict]:
    if args.keep_freed_memory:  # as `transduce predict` and `evaluate` do on the CPU
        keep_freed_memory()
    rows = []
    for name in args.configs:
        model = apply_precision(peer_model(name).eval(), args.precision)
        vocab = CONFIGS[name]["vocab"]
        g = torch.Generator().manual_seed(0)
        src = torch.randint(4, vocab, (args.batch, args.src_len), generator=g)
        src[:, -1] = 3  # eos, as the peers' sources end with </s>
        mask = torch.ones_like(src, dtype=torch.bool)
        # T outputs per sentence = T-1 tokens + the forced eos: T decoder steps, like the peers
        n = args.tgt_len - 1
        for beam in args.beams:
            out = decode_case(model, src, mask, beam, n)
            assert all(len(h[0].tokens) == n for h in out), "every hypothesis must have T-1 tokens"
            times = timed(functools.partial(decode_case, model, src, mask, beam, n), args.reps)
            t = statistics.median(times)
            rows.append(
                dict(
                    bench="decode",
                    config=name,
                    beam=beam,
                    batch=args.batch,
                    precision=args.precision,
                    tgt_tok_s=round(args.batch * args.tgt_len / t, 1),
                    best_tgt_tok_s=round(args.batch * args.tgt_len / min(times), 1),
                    time_s=round(t, 4),
                )
            )
            print(rows[-1])
    return rows


def train_step(model, opt, batches, mask, i: int, world: int = 1, precision: str = "fp32") -> None:
    src, tgt = batches[i % len(batches)]
    with autocast_context(precision, torch.device("cpu")):  # as the trainer does
        logits, _ = model(src, mask, tgt, need_attention=False)
    loss, _, n = label_smoothed_nll(logits.float(), tgt, 0, 0.1)
    (loss / (n * world)).backward()  # every rank holds the same number of tokens
    if world > 1:  # as the trainer does: one all-reduce of the summed gradients
        from transduce.training.distributed import all_reduce_gradients

        all_reduce_gradients(model)
    opt.step()
    opt.zero_grad(set_to_none=True)


def _train_one(args, name: str, rank: int = 0, world: int = 1) -> dict:
    """Time training steps of ``name``; with ``world`` processes each takes 1/world of
    every batch (the same 4096-token update as one process). The C library keeps freed
    memory for reuse, as the trainer has it on the CPU (``train.keep_freed_memory``)."""
    if args.keep_freed_memory:
        keep_freed_memory()
    model = peer_model(name).train()
    vocab = CONFIGS[name]["vocab"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    bsz = args.batch_tokens // args.seq_len
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randint(4, vocab, (bsz, args.seq_len), generator=g),
         torch.randint(4, vocab, (bsz, args.seq_len), generator=g))
        for _ in range(2)
    ]  # fmt: skip
    share = bsz // world
    batches = [(s[rank * share : (rank + 1) * share], t[rank * share : (rank + 1) * share])
               for s, t in batches]  # fmt: skip
    mask = torch.ones(share, args.seq_len, dtype=torch.bool)
    counter = iter(range(10**9))
    times = timed(
        lambda: train_step(model, opt, batches, mask, next(counter), world, args.precision),
        args.steps,
        warmup=2,
    )
    t = statistics.median(times)
    return dict(
        bench="train",
        config=name,
        batch=bsz,
        seq_len=args.seq_len,
        nproc=world,
        precision=args.precision,
        s_per_step=round(t, 3),
        tgt_tok_s=round(bsz * args.seq_len / t, 1),
    )


def _train_rank(rank: int, args, name: str, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(max(1, args.threads // args.nproc))
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.nproc
    )
    try:
        row = _train_one(args, name, rank, args.nproc)
        if rank == 0:
            Path(out).write_text(json.dumps(row))
    finally:
        dist.destroy_process_group()


def bench_train(args) -> list[dict]:
    rows = []
    for name in args.configs:
        if args.nproc > 1:
            import tempfile

            import torch.multiprocessing as mp

            from transduce.training.distributed import free_port

            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / "row.json")
                mp.spawn(_train_rank, args=(args, name, free_port(), out), nprocs=args.nproc)
                rows.append(json.loads(Path(out).read_text()))
        else:
            rows.append(_train_one(args, name))
        print(rows[-1])
    return rows


def bench_translate(args) -> list[dict]:
    from transduce.inference import Predictor

    predictor = Predictor.load(
        args.model, precision=args.precision, keep_freed_memory=args.keep_freed_memory
    )
    examples = predictor.task.examples(predictor.task.read_split(args.split))
    inputs = [e.src_text for e in examples][: args.limit or None]  # any task's inputs
    predictor.predict(inputs[:16], beam=args.beam)  # warm-up
    start = time.perf_counter()
    outputs = predictor.predict(inputs, beam=args.beam, batch_size=args.batch)
    seconds = time.perf_counter() - start
    words = sum(len(o.split()) for o in outputs)
    row = dict(
        bench="translate",
        model=str(args.model),
        split=args.split,
        beam=args.beam,
        batch=args.batch,
        precision=args.precision,
        sentences=len(inputs),
        seconds=round(seconds, 2),
        sent_s=round(len(inputs) / seconds, 1),
        out_words_s=round(words / seconds, 1),
    )
    print(row)
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results.jsonl")
    ap.add_argument(
        "--no-keep-freed-memory",
        dest="keep_freed_memory",
        action="store_false",
        help="leave glibc's malloc as it is (the trainer's `train.keep_freed_memory: false`; "
        "`transduce predict`/`evaluate` without it)",
    )
    sub = ap.add_subparsers(dest="bench", required=True)
    d = sub.add_parser("decode")
    d.add_argument("--configs", nargs="+", default=["small", "base"])
    d.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    d.add_argument("--batch", type=int, default=32)
    d.add_argument("--src-len", type=int, default=25)
    d.add_argument("--tgt-len", type=int, default=25)
    d.add_argument("--reps", type=int, default=5)
    d.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    t = sub.add_parser("train")
    t.add_argument("--configs", nargs="+", default=["small"])
    t.add_argument("--batch-tokens", type=int, default=4096)
    t.add_argument("--seq-len", type=int, default=32)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes (gloo), --threads split between them, each taking "
        "its share of every batch (as `transduce train --nproc N`)",
    )
    t.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: autocast around the forward, as `train.precision: bf16`",
    )
    r = sub.add_parser("translate")
    r.add_argument("model")
    r.add_argument("--split", default="test")
    r.add_argument("--beam", type=int, default=5)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--limit", type=int, default=0)
    r.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {"decode": bench_decode, "train": bench_train, "translate": bench_translate}[args.bench](
        args
    )
    stamp = dict(
        date=time.strftime("%Y-%m-%d"),
        machine=platform.processor() or platform.machine(),
        threads=args.threads,
        torch=torch.__version__,
    )
    with open(Path(args.out), "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, **stamp}) + "\n")


if __name__ == "__main__":
    main()
