"""The optimizer and learning-rate schedules.

:func:`build_optimizer` makes an AdamW whose weight decay skips biases, norm
weights and embeddings. :func:`build_scheduler` makes a :class:`Scheduler` that
sets the learning rate of every parameter group before each update.

Step numbering: updates are counted from 1. A fresh scheduler has already set
the rate for update 1; each call to :meth:`Scheduler.step` (one per optimizer
update) moves it on to the rate of the next update. :meth:`Scheduler.lr_at`
gives the rate of any update ``n`` as a pure function, which is what the tests
check against exact numbers.

Schedules (``lr`` is ``train.lr``, ``w`` is ``train.warmup_steps``):

* ``constant``: ``lr * min(1, n / w)``.
* ``inverse_sqrt``: ``lr * n / w`` while ``n < w``, then ``lr * sqrt(w / n)``.
* ``noam``: ``d_model ** -0.5 * min(n ** -0.5, n * w ** -1.5)`` (Vaswani et al.),
  scaled by ``lr / peak`` where ``peak`` is its value at ``n = w``, so that
  ``train.lr`` is always the peak rate whatever the model width. Once scaled,
  ``d_model`` cancels out and the curve equals ``inverse_sqrt``; the name is
  kept so configs written for the paper's recipe read as intended.
* ``cosine``: linear warmup, then half a cosine from ``lr`` down to
  ``train.min_lr`` at ``total_steps`` (``train.max_steps``); held at
  ``min_lr`` after that.
* ``plateau``: linear warmup to ``lr``; then, each time ``train.plateau_patience``
  validations in a row have not improved on the best metric, the rate is
  multiplied by ``train.plateau_factor``, never below ``train.min_lr``. Lower
  metric values are better: pass a loss, or a negated BLEU. A patience of 0
  acts like 1 (reduce at every validation without improvement); a tie is no
  improvement.

A warmup of 0 steps starts at the full rate (``inverse_sqrt`` and ``noam`` then
decay as if ``w = 1``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from transduce.config import ConfigError, TrainConfig

SCHEDULES = ("constant", "inverse_sqrt", "noam", "cosine", "plateau")

# Modules whose weights are scales/lookup tables rather than projections: decaying
# them towards zero hurts (a zero LayerNorm gain or an all-zero embedding row).
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


class ScheduleError(ConfigError, ValueError):
    """A learning-rate schedule that cannot be built from the config."""


def _no_decay_ids(model: nn.Module) -> set[int]:
    """ids of parameters that must not be weight-decayed.

    Checked by identity so that a weight tied between an embedding and an output
    projection is excluded wherever else it appears.
    """
    ids: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if (
                isinstance(module, _NO_DECAY_MODULES)
                or name.endswith("bias")
                or "embed" in name.lower()
                or param.ndim < 2  # gains, scales, custom norm weights
            ):
                ids.add(id(param))
    return ids


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model``.

    Two parameter groups: ``decay`` (matrices and convolution kernels, with
    ``cfg.weight_decay``) and ``no_decay`` (biases, norm weights, embeddings and
    any other parameter with fewer than 2 dimensions, with weight decay 0).
    Groups that would be empty are left out. The rate starts at ``cfg.lr``;
    the scheduler overwrites it before the first update.
    """
    if len(cfg.betas) != 2:
        raise ConfigError(f"train.betas must hold two numbers, got {cfg.betas!r}")
    skip = _no_decay_ids(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():  # deduplicated: a tied weight appears once
        if not param.requires_grad:
            continue
        (no_decay if id(param) in skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


class Scheduler:
    """Sets the learning rate of every parameter group, update by update.

    Call :meth:`step` once after each ``optimizer.step()``. After a validation,
    pass the metric (lower is better) to that update's :meth:`step` call, or
    report it separately with :meth:`observe`; only ``plateau`` uses it.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        name: str,
        lr: float,
        warmup_steps: int = 0,
        *,
        min_lr: float = 0.0,
        total_steps: int | None = None,
        d_model: int | None = None,
        plateau_factor: float = 0.5,
        plateau_patience: int = 2,
    ) -> None:
        if name not in SCHEDULES:
            raise ScheduleError(
                f"unknown train.schedule '{name}' (valid schedules: {', '.join(SCHEDULES)})"
            )
        if lr <= 0:
            raise ScheduleError(f"train.lr must be positive, got {lr}")
        if warmup_steps < 0:
            raise ScheduleError(f"train.warmup_steps must be >= 0, got {warmup_steps}")
        if name == "cosine":
            if not total_steps:
                raise ScheduleError(
                    "the cosine schedule needs to know the total number of updates: "
                    "set train.max_steps (e.g. train.max_steps=100000) or pick another "
                    "train.schedule"
                )
            if total_steps <= warmup_steps:
                raise ScheduleError(
                    f"the cosine schedule needs train.max_steps ({total_steps}) to be "
                    f"larger than train.warmup_steps ({warmup_steps})"
                )
        if name == "plateau":
            if not 0 < plateau_factor < 1:
                raise ScheduleError(
                    f"train.plateau_factor must be between 0 and 1, got {plateau_factor}"
                )
            if plateau_patience < 0:
                raise ScheduleError(f"train.plateau_patience must be >= 0, got {plateau_patience}")
        self.optimizer = optimizer
        self.name = name
        self.base_lr = float(lr)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)
        self.total_steps = total_steps
        self.d_model = d_model
        self.plateau_factor = float(plateau_factor)
        self.plateau_patience = int(plateau_patience)
        # Mutable state (saved in checkpoints).
        self.num_updates = 0
        self.scale = 1.0  # plateau: product of the reductions so far
        self.best: float | None = None  # plateau: best (lowest) metric seen
        self.num_bad = 0  # plateau: validations since the last improvement
        self._apply()

    # -- the curves -----------------------------------------------------------

    def _warmup(self, n: int) -> float:
        """Linear warmup factor in (0, 1] for update ``n``."""
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, n / self.warmup_steps)

    def lr_at(self, n: int) -> float:
        """The learning rate of update ``n`` (1-based) under the current plateau scale."""
        n = max(1, int(n))
        lr, w = self.base_lr, max(1, self.warmup_steps)
        if self.name == "constant":
            return lr * self._warmup(n)
        if self.name == "inverse_sqrt":
            return lr * n / w if n < w else lr * math.sqrt(w / n)
        if self.name == "noam":
            d = float(self.d_model or 1)
            raw = d**-0.5 * min(n**-0.5, n * w**-1.5)
            peak = d**-0.5 * w**-0.5
            return lr * raw / peak
        if self.name == "cosine":
            if n <= self.warmup_steps:
                return lr * self._warmup(n)
            assert self.total_steps is not None
            progress = min(1.0, (n - self.warmup_steps) / (self.total_steps - self.warmup_steps))
            return self.min_lr + (lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        # plateau
        if n < self.warmup_steps:
            return lr * self._warmup(n) * self.scale
        return max(self.min_lr, lr * self.scale)

    # -- driving it ------------------------------------------------------------

    def _apply(self) -> None:
        lr = self.lr_at(self.num_updates + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def observe(self, metric: float) -> None:
        """Record a validation result (lower is better) without counting an update."""
        if self.name != "plateau":
            return
        metric = float(metric)
        if math.isnan(metric):
            improved = False
        else:
            improved = self.best is None or metric < self.best
        if improved:
            self.best = metric
            self.num_bad = 0
        else:
            self.num_bad += 1
            if self.num_bad >= max(1, self.plateau_patience):
                floor = self.min_lr / self.base_lr
                self.scale = max(floor, self.scale * self.plateau_factor)
                self.num_bad = 0
        self._apply()

    def step(self, metric: float | None = None) -> None:
        """Count one optimizer update; ``metric`` (lower is better) after a validation."""
        self.num_updates += 1
        if metric is not None:
            self.observe(metric)
        self._apply()

    def get_lr(self) -> float:
        """The rate the next update will use."""
        return self.lr_at(self.num_updates + 1)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only, so it loads with ``torch.load(weights_only=True)``."""
        return {
            "name": self.name,
            "num_updates": self.num_updates,
            "scale": self.scale,
            "best": self.best,
            "num_bad": self.num_bad,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters (the curve itself comes from the config)."""
        self.num_updates = int(state["num_updates"])
        self.scale = float(state.get("scale", 1.0))
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.num_bad = int(state.get("num_bad", 0))
        self._apply()


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    total_steps: int | None,
    d_model: int | None,
) -> Scheduler:
    """The :class:`Scheduler` named by ``cfg.schedule``.

    ``total_steps``: the planned number of updates (``train.max_steps``), needed
    by ``cosine``; ``None`` or 0 when unknown. ``d_model``: the model width, used
    by ``noam`` (where it cancels out, see the module docstring).
    """
    return Scheduler(
        optimizer,
        cfg.schedule,
        cfg.lr,
        cfg.warmup_steps,
        min_lr=cfg.min_lr,
        total_steps=total_steps,
        d_model=d_model,
        plateau_factor=cfg.plateau_factor,
        plateau_patience=cfg.plateau_patience,
    )
