"""The training loop: read it top to bottom in :meth:`Trainer.fit`.

A run folder holds:

* ``config.yaml``: the full resolved config,
* ``vocab/``: the tokenizer files,
* ``last.pt`` and ``ckpt-*.pt``: training checkpoints (model, optimizer,
  scheduler, random states, position in the data), written atomically,
* ``best/`` and ``last/``: model folders for ``transduce predict``,
* ``tb/``: TensorBoard logs, ``train.log``: the text log.

With several processes (:mod:`transduce.training.distributed`) every rank trains on
its share of each update's batches; only rank 0 validates and writes the run folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from transduce import inference, memory
from transduce.config import Config, ConfigError, TransduceError
from transduce.data.batching import token_batches
from transduce.data.binarized import BinarizedExamples, example_lengths
from transduce.inference import read_model_config, save_model_dir, search
from transduce.models.seq2seq import EncoderDecoder, build_model, check_model_size
from transduce.paths import make_folder
from transduce.tasks import Example, Task, build_task
from transduce.tasks.base import read_split_nonempty
from transduce.tasks.binarize import binarize, open_binarized
from transduce.training import distributed
from transduce.training.checkpoint import (
    CheckpointManager,
    average_checkpoints,
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
)
from transduce.training.distributed import World
from transduce.training.finetune import freeze, init_from_dir, merge_init_config
from transduce.training.loss import build_aux_losses, label_smoothed_nll, register_aux_loss
from transduce.training.optim import build_optimizer, build_scheduler
from transduce.training.run_dir import check_resume_config, check_run_dir

log = logging.getLogger("transduce.train")
MAX_SKIPS_IN_A_ROW = 20  # past this a run has diverged (fp32/bf16; fp16 lowers its scale)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly."""

    step: int = 0  # optimizer updates done
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    seconds: float = 0.0  # training time so far, across resumes
    best: float | None = None
    bad_validations: int = 0
    last_valid_step: int = -1
    history: list = field(default_factory=list)
    skipped: int = 0  # updates skipped for non-finite gradients
    skipped_in_a_row: int = 0


@register_aux_loss("coverage")
def coverage_loss(model, batch, enc_out, attn) -> torch.Tensor:
    """See et al.'s coverage loss ``sum_t sum_i min(a_t,i, c_t,i)`` over real target tokens.

    attn: ``(B, T, S)``; ``c_t = sum_{t' < t} a_t'`` is the attention before step t.
    Switch it on with ``train.aux_losses: {coverage: 1.0}``.
    """
    if attn is None:
        raise ConfigError("train.aux_losses.coverage needs a decoder with attention")
    attn = attn.float()
    coverage = attn.cumsum(dim=1) - attn  # (B, T, S): attention before each step
    per_step = torch.minimum(attn, coverage).sum(dim=-1)  # (B, T)
    return per_step.masked_fill(batch.tgt_out.eq(0), 0.0).sum()


def resolve_device(name: str) -> torch.device:
    return inference.resolve_device(name, where="train.device")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices natively (faster than fp32).

    CUDA: what torch reports (Ampere and newer). CPU: the instructions in
    ``/proc/cpuinfo`` (x86: AVX512-BF16 or AMX-BF16; Arm: BF16). Without them a bf16
    product is emulated and slower than fp32; with them (AVX512-BF16, this project's
    CPU) it ran at 1.7-2x the fp32 rate.
    """
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # older torch without the argument
            return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    flags = set(value.split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``train.precision`` with ``auto`` replaced by bf16 or fp32 for ``device``."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast_context(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ConfigError(f"train.precision: '{precision}' is not one of fp32, bf16, fp16")


def model_width(cfg: Config) -> int | None:
    dec = cfg.model.decoder
    return dec.get("d_model") or dec.get("hidden_size")


class Trainer:
    """Train ``cfg`` into ``run_dir``; ``resume=True`` continues from ``run_dir/last.pt``.

    ``world`` places this process among several training processes (see
    :mod:`transduce.training.distributed`); the default is a single process.
    """

    def __init__(
        self, cfg: Config, run_dir: str | Path, resume: bool = False, world: World | None = None
    ) -> None:
        t = cfg.train
        if not (t.max_steps or t.max_epochs or t.max_minutes):
            raise ConfigError("set one of train.max_steps, train.max_epochs, train.max_minutes")
        self.init_dir = init_from_dir(cfg)
        if self.init_dir is not None:  # fine-tuning: the saved model's architecture
            cfg = merge_init_config(cfg, read_model_config(self.init_dir))
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.world = world or World()
        self.device = resolve_device(t.device)
        if self.world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        if t.threads:
            torch.set_num_threads(t.threads)  # per process
        elif self.world.distributed and self.device.type == "cpu":
            # processes on one machine share its cores; torch's default would oversubscribe
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.world.local_size))
        if t.keep_freed_memory and self.device.type == "cpu":
            memory.keep_freed_memory()
        self.precision = resolve_precision(t.precision, self.device)
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(
                "train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU",
                "train.precision",
            )
        self.task: Task = build_task(cfg)
        self.aux_losses = build_aux_losses(t.aux_losses)
        self.metric = t.early_stop_metric
        self.higher_is_better = self.task.higher_is_better.get(self.metric, True)
        if self.metric != "loss" and self.metric not in self.task.metric_names:
            raise ConfigError(
                f"train.early_stop_metric: '{self.metric}' is not reported by task "
                f"'{cfg.task}' (choose loss or one of {', '.join(self.task.metric_names)})"
            )

    # set-up --------------------------------------------------------------------
    def _prepare(self) -> None:
        """Check everything, then write: a failed start or resume leaves the run folder as
        it was (config.yaml, checkpoints, model folders)."""
        cfg, run = self.cfg, self.run_dir
        last = run / "last.pt"
        if last.exists() and not self.resume:
            raise TransduceError(
                f"{run} already holds a training run; pass --resume to continue it "
                "or choose another --run-dir"
            )
        if self.resume and not last.exists():
            raise TransduceError(f"cannot resume: {last} does not exist")
        check_run_dir(run, cfg)
        main = self.world.is_main
        state = None
        if self.resume:
            check_resume_config(run, cfg)
            state = load_checkpoint(last)
            saved_world = int(state.get("world_size", 1))
            if saved_world != self.world.size:
                raise TransduceError(
                    f"{last} was written by {saved_world} training process(es), this run has "
                    f"{self.world.size}; resume with --nproc {saved_world} so the data order "
                    "and random states continue exactly"
                )
        torch.manual_seed(cfg.train.seed)
        binarized = Path(cfg.data.binarized) if cfg.data.binarized else None
        if binarized is not None:
            # token ids stay on disk (memory maps); made here on the first use
            if main and not binarized.exists():
                binarize(cfg, binarized)
            distributed.barrier()
            train_items = open_binarized(cfg, binarized)
        else:
            train_items = read_split_nonempty(self.task, "train")
        valid_items = read_split_nonempty(self.task, "valid")
        if self.resume:  # everything is read and checked before anything is written
            self.task.load(run / "vocab")
            self._make_examples(train_items, valid_items)
            self._build(state, last)
        distributed.barrier()  # every rank has checked the run folder before rank 0 writes it
        if main:
            make_folder(run, "run folder")
            (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            handler = logging.FileHandler(run / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False  # the progress bar speaks to the terminal; the log to the file
        if not self.resume:
            if main:
                if binarized is not None:
                    self.task.load(binarized / "vocab")  # the folder's vocabulary
                elif self.init_dir is not None:
                    self.task.load(self.init_dir)  # the pretrained model's tokenizers
                else:
                    self.task.fit(train_items)
                self.task.save(run / "vocab")
            distributed.barrier()
            if not main:
                self.task.load(run / "vocab")  # rank 0's vocabulary, not a second fit
            self._make_examples(train_items, valid_items)
            self._build(None, last)
        if self.resume:
            log.info("resumed at step %d (epoch %d, batch %d)", *self._position())
        elif self.world.rank > 0:
            # a different dropout stream per rank; rank 0 keeps the single-process one
            seed = cfg.train.seed + self.world.rank
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        distributed.broadcast_module(self.model)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "%d training and %d validation examples; model with %.2fM parameters on %s%s, %s%s",
            len(self.train_examples),
            len(self.valid_examples),
            n_params / 1e6,
            self.device,
            f" x {self.world.size} processes" if self.world.distributed else "",
            self.precision,
            " (train.precision auto)" if cfg.train.precision == "auto" else "",
        )
        self.tb = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tb"), purge_step=self.progress.step or None)

    def _make_examples(self, train_items, valid_items: list) -> None:
        """``train_items``: the split's items, or a binarized corpus (examples already)."""
        if isinstance(train_items, BinarizedExamples):
            self.train_examples: Sequence[Example] = train_items
        else:
            self.train_examples = self.task.examples(train_items, train=True)
        self.valid_examples: list[Example] = self.task.examples(valid_items)
        for split, examples in (("train", self.train_examples), ("valid", self.valid_examples)):
            if not examples:
                raise TransduceError(
                    f"data.{split}: no usable example in {getattr(self.cfg.data, split)} (every "
                    "item was skipped, e.g. longer than audio.max_seconds); check the data"
                )

    def _build(self, state: dict | None, last: Path) -> None:
        """Model, optimizer, schedule and progress: fresh, or from checkpoint ``state``."""
        cfg = self.cfg
        src_v, tgt_v = self.task.src_vocab_size, self.task.tgt_vocab_size
        check_model_size(cfg.model, src_v, tgt_v, copies=4)  # weights, gradients, Adam
        self.model: EncoderDecoder = build_model(cfg.model, src_v, tgt_v)
        if self.init_dir is not None and state is None:
            load_model_weights(self.model, self.init_dir / "model.safetensors")
        self.model = self.model.to(self.device)
        if cfg.train.freeze:
            frozen = freeze(self.model, cfg.train.freeze)
            log.info("froze %.2fM parameters (%s)", frozen / 1e6, ", ".join(cfg.train.freeze))
        self.optimizer = build_optimizer(self.model, cfg.train)
        # fp16 gradients underflow without loss scaling; the scaler is a no-op otherwise
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.scheduler = build_scheduler(
            self.optimizer, cfg.train, cfg.train.max_steps or None, model_width(cfg)
        )
        self.checkpoints = CheckpointManager(
            self.run_dir, cfg.train.keep_best, self.higher_is_better
        )
        self.progress = Progress()
        if state is None:
            return
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            self.progress = Progress(**state["progress"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TransduceError(
                f"cannot resume from {last}: it does not fit the model and optimizer built "
                f"from the config ({reason[:300]}); resume with the run's own config.yaml"
            ) from None
        restore_rng_state(state.get("rng_ranks", [state["rng"]])[self.world.rank])

    def _position(self) -> tuple[int, int, int]:
        p = self.progress
        return p.step, p.epoch, p.batch

    def _state(self, rng_ranks: list[dict]) -> dict:
        """The checkpoint; ``rng_ranks`` holds every rank's random states, rank 0's first."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": self.progress.__dict__.copy(),
            "step": self.progress.step,
            "rng": rng_ranks[0],
            "world_size": self.world.size,
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.world.distributed:
            state["rng_ranks"] = rng_ranks
        return state

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        src_lens, tgt_lens = example_lengths(self.train_examples)
        return token_batches(
            src_lens,
            tgt_lens,
            self.cfg.train.batch_tokens,
            shuffle=True,
            seed=self.cfg.train.seed,
            epoch=epoch,
            as_arrays=True,
        )

    def _update_groups(self, batches: list[np.ndarray]) -> list[list[np.ndarray]]:
        """This rank's batches for each update of the epoch.

        Update k consumes batches ``[k*N*A, (k+1)*N*A)`` of the shared epoch list (N
        processes, A = ``train.accumulate``); rank r takes the r-th run of A. In one
        process a shorter last group is kept; with several an incomplete one is dropped.
        """
        a, n, r = self.cfg.train.accumulate, self.world.size, self.world.rank
        if n == 1:
            return [batches[i : i + a] for i in range(0, len(batches), a)]
        if len(batches) < n * a:
            raise TransduceError(
                f"an epoch has only {len(batches)} batches, fewer than the {n * a} one update "
                f"needs with {n} processes and train.accumulate={a}; lower train.batch_tokens"
            )
        starts = range(0, len(batches) - n * a + 1, n * a)
        return [batches[i + r * a : i + (r + 1) * a] for i in starts]

    # the loop ------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until a limit is reached; return a summary of the run (rank 0's)."""
        joined = distributed.setup(self.world, self.device)
        try:
            return self._fit()
        finally:
            if joined:
                distributed.shutdown()

    def _fit(self) -> dict:
        self._prepare()
        t, p = self.cfg.train, self.progress
        main = self.world.is_main
        per_update = self.world.size * t.accumulate  # batches, over all ranks
        total = t.max_steps or None
        bar = tqdm(
            total=total,
            initial=p.step,
            disable=not (t.progress and main),
            unit="step",
            dynamic_ncols=True,
        )
        started = time.monotonic() - p.seconds
        self.comm_seconds = 0.0  # in the gradient all-reduce since the last log line
        tokens_seen, window_start = 0, time.monotonic()
        stop = self._should_stop(started)
        while not stop:
            groups = self._update_groups(self._epoch_batches(p.epoch))
            for k in range(p.batch // per_update, len(groups)):
                loss, n_tokens = self._update(groups[k])
                # a non-finite loss has non-finite gradients: _step skipped the update,
                # and stops the run once MAX_SKIPS_IN_A_ROW updates in a row were skipped
                p.step += 1
                p.batch = (k + 1) * per_update
                p.seconds = time.monotonic() - started
                tokens_seen += n_tokens
                bar.update(1)
                if main and (p.step % t.log_every == 0 or p.step == 1):
                    window = max(time.monotonic() - window_start, 1e-9)
                    rate = tokens_seen / window
                    comm, self.comm_seconds = self.comm_seconds / window, 0.0
                    tokens_seen, window_start = 0, time.monotonic()
                    self._log_train(bar, loss, rate, started, comm)
                if p.step % t.valid_every == 0:
                    stop = self._validate_and_save()
                stop = stop or self._should_stop(started)
                if stop:
                    break
            else:
                p.epoch += 1
                p.batch = 0
                stop = self._should_stop(started)
        bar.close()
        if p.last_valid_step != p.step:
            self._validate_and_save()
        summary = self._finish() if main else {}
        distributed.barrier()  # the run folder is complete before any rank returns
        return summary

    def _should_stop(self, started: float) -> bool:
        """Whether a limit is reached; with several processes rank 0 decides for all."""
        return distributed.broadcast_flag(self._limit_reached(started))

    def _limit_reached(self, started: float) -> bool:
        t, p = self.cfg.train, self.progress
        if t.max_steps and p.step >= t.max_steps:
            return True
        if t.max_epochs and p.epoch >= t.max_epochs:
            return True
        if t.max_minutes and time.monotonic() - started >= 60 * t.max_minutes:
            return True
        return bool(t.patience and p.bad_validations >= t.patience)

    def _update(self, group: list[list[int]]) -> tuple[float, int]:
        """One optimizer update over a group of batches (gradient accumulation).

        With several processes ``group`` is this rank's share; the loss is divided by
        the target tokens of the whole update on all ranks and the gradients are summed
        over the ranks, so the update equals one process accumulating all the batches.
        Returns the update's mean NLL per token and its target tokens (all ranks).
        """
        self.model.train()
        batches = [
            self.task.collate([self.train_examples[i] for i in b], train=True) for b in group
        ]
        group_tokens = distributed.all_reduce_sum(sum(b.n_tokens for b in batches))
        self.optimizer.zero_grad(set_to_none=True)
        nll_sum: torch.Tensor | float = 0.0  # stays on the device: read once per update
        for batch in batches:
            batch = batch.to(self.device)
            with autocast_context(self.precision, self.device):
                enc_out = self.model.encode(batch.src, batch.src_mask)
                # Attention weights cost a by-hand attention in the last layer: only
                # the auxiliary terms (coverage, doubly stochastic, ...) read them.
                logits, _, attn = self.model.decode(
                    batch.tgt_in, enc_out, need_attention=bool(self.aux_losses)
                )
            loss, nll, _ = label_smoothed_nll(
                logits.float(), batch.tgt_out, 0, self.cfg.train.label_smoothing
            )
            for _, weight, term in self.aux_losses:
                loss = loss + weight * term(self.model, batch, enc_out, attn)
            self.scaler.scale(loss / group_tokens).backward()
            nll_sum = nll_sum + nll.detach()
        comm_start = time.monotonic()
        distributed.all_reduce_gradients(self.model)
        nll_total = distributed.all_reduce_sum(float(nll_sum))
        self.comm_seconds += time.monotonic() - comm_start
        self._step()
        return nll_total / max(group_tokens, 1), group_tokens

    def _step(self) -> None:
        """Clip and apply the summed gradients, or skip an update whose gradients are not
        finite (fp16 overflow, or a NaN/inf anywhere): the weights, optimizer moments and
        learning rate stay as they were, and the skip is counted in the log. Every rank
        holds the same summed gradients, so every rank decides alike."""
        self.scaler.unscale_(self.optimizer)  # a no-op unless fp16 scales the loss
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.train.clip_norm
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        finite = bool(torch.isfinite(norm))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips by itself on inf/NaN
            self.scaler.update()  # and lowers the loss scale
        elif finite:
            self.optimizer.step()
        if finite:
            self.scheduler.step()
            self.progress.skipped_in_a_row = 0
            return
        self.progress.skipped += 1
        self.progress.skipped_in_a_row += 1
        log.info(
            "step %d: gradients not finite, update skipped (%d skipped so far)",
            self.progress.step + 1,
            self.progress.skipped,
        )
        if self.progress.skipped_in_a_row >= MAX_SKIPS_IN_A_ROW and not self.scaler.is_enabled():
            raise TransduceError(
                f"{MAX_SKIPS_IN_A_ROW} updates in a row had NaN or infinite gradients; the "
                "model diverged: lower train.lr, set train.clip_norm, or use train.precision: fp32"
            )

    def _log_train(
        self, bar: tqdm, loss: float, tokens_per_s: float, started: float, comm: float = 0.0
    ) -> None:
        """``comm``: the share of the wall time spent in the gradient all-reduce."""
        p, t = self.progress, self.cfg.train
        lr = self.scheduler.get_lr()
        postfix = {"loss": f"{loss:.3f}", "lr": f"{lr:.2e}", "tok/s": f"{tokens_per_s:,.0f}"}
        if t.max_minutes:
            left = max(0.0, 60 * t.max_minutes - (time.monotonic() - started))
            postfix["left"] = f"{left / 60:.1f}m"
        bar.set_postfix(postfix, refresh=False)
        self.tb.add_scalar("train/loss", loss, p.step)
        self.tb.add_scalar("train/lr", lr, p.step)
        self.tb.add_scalar("train/tokens_per_second", tokens_per_s, p.step)
        if self.world.distributed:
            self.tb.add_scalar("train/allreduce_share", comm, p.step)
            log.info(
                "step %d loss %.4f lr %.3e tok/s %.0f allreduce %.1f%%",
                *(p.step, loss, lr, tokens_per_s, 100 * comm),
            )
        else:
            log.info("step %d loss %.4f lr %.3e tok/s %.0f", p.step, loss, lr, tokens_per_s)

    # validation ----------------------------------------------------------------
    @torch.inference_mode()
    def evaluate(self, examples: list[Example], max_sentences: int | None = None) -> dict:
        """Loss over ``examples`` and the task's metrics on the first ``max_sentences``."""
        self.model.eval()
        batches = token_batches(
            [e.src_len for e in examples],
            [len(e.tgt) + 1 for e in examples],
            self.cfg.train.batch_tokens,
            shuffle=False,
        )
        nll_sum, n_tokens = 0.0, 0
        for b in batches:
            batch = self.task.collate([examples[i] for i in b]).to(self.device)
            logits, _ = self.model(batch.src, batch.src_mask, batch.tgt_in, need_attention=False)
            _, nll, n = label_smoothed_nll(logits.float(), batch.tgt_out, 0, 0.0)
            nll_sum += float(nll)
            n_tokens += int(n)
        results = {"loss": nll_sum / max(n_tokens, 1)}
        results["ppl"] = math.exp(min(results["loss"], 50))
        subset = examples[:max_sentences] if max_sentences else examples
        dcfg = self.cfg.decode
        dcfg = type(dcfg)(**{**dcfg.__dict__, "beam": self.cfg.train.valid_beam, "nbest": 1})
        dcfg.sampling = False
        hyps = decode_examples(self.model, self.task, subset, dcfg, self.device)
        for name, metric in self.task.score(hyps, [e.ref for e in subset]).items():
            results[name] = metric.score
        results["sample"] = hyps[:3]
        return results

    def _validate_and_save(self) -> bool:
        """Validate, keep the best checkpoints, write model folders; True = stop early.

        Every rank calls it; rank 0 does the work while the others wait for its decision.
        """
        main, t = self.world.is_main, self.cfg.train
        results = self.evaluate(self.valid_examples, t.valid_max_sentences) if main else {}
        # the random states after validation, as a run that never stops continues from them
        rng_ranks = distributed.gather_objects(capture_rng_state())
        self.progress.last_valid_step = self.progress.step
        stop, observed = self._record_validation(results, rng_ranks) if main else (False, 0.0)
        if self.cfg.train.schedule == "plateau":  # every rank's learning rate must follow
            observed = distributed.broadcast_number(observed)
            if not self.world.is_main:
                self.scheduler.observe(observed)
        return distributed.broadcast_flag(stop)

    def _record_validation(self, results: dict, rng_ranks: list[dict]) -> tuple[bool, float]:
        """Rank 0's part: returns (stop early, the value a plateau schedule observed)."""
        p, t = self.progress, self.cfg.train
        score = results[self.metric]
        improved = p.best is None or (score > p.best if self.higher_is_better else score < p.best)
        if improved:
            p.best, p.bad_validations = score, 0
        else:
            p.bad_validations += 1
        # plateau schedules want a value where lower is better
        observed = -score if self.higher_is_better else score
        if t.schedule == "plateau":
            self.scheduler.observe(observed)
        numbers = {k: v for k, v in results.items() if isinstance(v, float)}
        p.history.append({"step": p.step, **numbers})
        for name, value in numbers.items():
            self.tb.add_scalar(f"valid/{name}", value, p.step)
        line = f"valid step {p.step}: " + " ".join(f"{k} {v:.3f}" for k, v in numbers.items())
        line += "  (best)" if improved else f"  (no improvement {p.bad_validations}x)"
        tqdm.write(line)
        log.info(line)
        log.info("sample: %s", " | ".join(results["sample"]))
        state = self._state(rng_ranks)
        self.checkpoints.save_if_best(state, score)
        self.checkpoints.save_last(state)
        if improved:
            save_model_dir(self.run_dir / "best", self.model, self.cfg, self.task)
        return bool(t.patience and p.bad_validations >= t.patience), observed

    def _finish(self) -> dict:
        save_model_dir(self.run_dir / "last", self.model, self.cfg, self.task)
        summary = {
            "steps": self.progress.step,
            "skipped_updates": self.progress.skipped,
            "epochs": self.progress.epoch,
            "seconds": round(self.progress.seconds, 1),
            f"best_valid_{self.metric}": self.progress.best,
            "history": self.progress.history,
        }
        if self.cfg.train.average_best and len(self.checkpoints.kept()) > 1:
            self.model.load_state_dict(
                average_checkpoints([k.path for k in self.checkpoints.kept()])
            )
            results = self.evaluate(self.valid_examples, self.cfg.train.valid_max_sentences)
            save_model_dir(self.run_dir / "averaged", self.model, self.cfg, self.task)
            summary[f"averaged_valid_{self.metric}"] = results[self.metric]
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.tb.close()
        return summary


def decode_examples(
    model: EncoderDecoder, task: Task, examples: list[Example], dcfg, device: torch.device
) -> list[str]:
    """Decode examples in length-sorted batches; return detokenized texts in order."""
    order = sorted(range(len(examples)), key=lambda i: examples[i].src_len)
    out = [""] * len(examples)
    for start in range(0, len(order), dcfg.batch_size):
        idx = order[start : start + dcfg.batch_size]
        batch = task.collate([examples[i] for i in idx]).to(device)
        hyps = search(model, batch.src, batch.src_mask, dcfg, **task.search_options(len(idx)))
        for i, h in zip(idx, hyps):
            out[i] = task.output_text(h[0].tokens, examples[i].src_text)
    return out
