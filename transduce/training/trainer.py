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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from transduce import inference
from transduce.config import Config, ConfigError, TransduceError
from transduce.data.batching import token_batches
from transduce.inference import save_model_dir, search
from transduce.models.seq2seq import EncoderDecoder, build_model, check_model_size
from transduce.tasks import Example, Task, build_task
from transduce.tasks.base import read_split_nonempty
from transduce.training import distributed
from transduce.training.checkpoint import (
    CheckpointManager,
    average_checkpoints,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from transduce.training.distributed import World
from transduce.training.loss import build_aux_losses, label_smoothed_nll, register_aux_loss
from transduce.training.optim import build_optimizer, build_scheduler
from transduce.training.run_dir import check_resume_config, check_run_dir

log = logging.getLogger("transduce.train")


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
        train_items = read_split_nonempty(self.task, "train")
        valid_items = read_split_nonempty(self.task, "valid")
        if self.resume:  # everything is read and checked before anything is written
            self.task.load(run / "vocab")
            self._make_examples(train_items, valid_items)
            self._build(state, last)
        distributed.barrier()  # every rank has checked the run folder before rank 0 writes it
        if main:
            run.mkdir(parents=True, exist_ok=True)
            (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            handler = logging.FileHandler(run / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False  # the progress bar speaks to the terminal; the log to the file
        if not self.resume:
            if main:
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
            "%d training and %d validation examples; model with %.2fM parameters on %s%s",
            len(self.train_examples),
            len(self.valid_examples),
            n_params / 1e6,
            self.device,
            f" x {self.world.size} processes" if self.world.distributed else "",
        )
        self.tb = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tb"), purge_step=self.progress.step or None)

    def _make_examples(self, train_items: list, valid_items: list) -> None:
        self.train_examples: list[Example] = self.task.examples(train_items, train=True)
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
        self.model: EncoderDecoder = build_model(cfg.model, src_v, tgt_v).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.train)
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
        if self.world.distributed:
            state["rng_ranks"] = rng_ranks
        return state

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        ex = self.train_examples
        return token_batches(
            [e.src_len for e in ex],
            [len(e.tgt) + 1 for e in ex],
            self.cfg.train.batch_tokens,
            shuffle=True,
            seed=self.cfg.train.seed,
            epoch=epoch,
        )

    def _update_groups(self, batches: list[list[int]]) -> list[list[list[int]]]:
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
        tokens_seen, window_start = 0, time.monotonic()
        stop = self._should_stop(started)
        while not stop:
            groups = self._update_groups(self._epoch_batches(p.epoch))
            for k in range(p.batch // per_update, len(groups)):
                loss, n_tokens = self._update(groups[k])
                if not math.isfinite(loss):  # every rank sees the same all-reduced loss
                    raise TransduceError(
                        f"training diverged: the loss is {loss} at step {p.step + 1}; nothing "
                        "of this step was saved. Lower train.lr or raise train.warmup_steps, "
                        "and resume from the last checkpoint or start again"
                    )
                p.step += 1
                p.batch = (k + 1) * per_update
                p.seconds = time.monotonic() - started
                tokens_seen += n_tokens
                bar.update(1)
                if main and (p.step % t.log_every == 0 or p.step == 1):
                    rate = tokens_seen / max(time.monotonic() - window_start, 1e-9)
                    tokens_seen, window_start = 0, time.monotonic()
                    self._log_train(bar, loss, rate, started)
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
        nll_total = 0.0
        for batch in batches:
            batch = batch.to(self.device)
            with autocast_context(self.cfg.train.precision, self.device):
                enc_out = self.model.encode(batch.src, batch.src_mask)
                logits, _, attn = self.model.decode(batch.tgt_in, enc_out)
            loss, nll, _ = label_smoothed_nll(
                logits.float(), batch.tgt_out, 0, self.cfg.train.label_smoothing
            )
            for _, weight, term in self.aux_losses:
                loss = loss + weight * term(self.model, batch, enc_out, attn)
            (loss / group_tokens).backward()
            nll_total += float(nll)
        distributed.all_reduce_gradients(self.model)
        nll_total = distributed.all_reduce_sum(nll_total)
        if self.cfg.train.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        return nll_total / max(group_tokens, 1), group_tokens

    def _log_train(self, bar: tqdm, loss: float, tokens_per_s: float, started: float) -> None:
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
            logits, _ = self.model(batch.src, batch.src_mask, batch.tgt_in)
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
        hyps = search(model, batch.src, batch.src_mask, dcfg)
        for i, h in zip(idx, hyps):
            out[i] = task.output_text(h[0].tokens, examples[i].src_text)
    return out
