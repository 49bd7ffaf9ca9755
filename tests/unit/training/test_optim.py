"""Optimizer parameter groups and learning-rate schedules, checked to exact numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transduce.config import ConfigError, TrainConfig
from transduce.training.optim import (
    SCHEDULES,
    ScheduleError,
    Scheduler,
    build_optimizer,
    build_scheduler,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight  # tied


def make(schedule: str, total: int | None = None, d_model: int | None = None, **kw) -> Scheduler:
    cfg = TrainConfig(schedule=schedule, **kw)
    opt = build_optimizer(nn.Linear(2, 2), cfg)
    return build_scheduler(opt, cfg, total, d_model)


def test_weight_decay_groups() -> None:
    model = Tiny()
    opt = build_optimizer(model, TrainConfig(weight_decay=0.01, betas=[0.9, 0.99], lr=1e-3))
    groups = {g["name"]: g for g in opt.param_groups}
    decay_ids = {id(p) for p in groups["decay"]["params"]}
    no_decay_ids = {id(p) for p in groups["no_decay"]["params"]}
    assert decay_ids == {id(model.proj.weight)}
    assert no_decay_ids == {
        id(model.embed.weight),  # also the tied output projection
        id(model.proj.bias),
        id(model.norm.weight),
        id(model.norm.bias),
    }
    assert groups["decay"]["weight_decay"] == 0.01
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert opt.defaults["betas"] == (0.9, 0.99)
    assert isinstance(opt, torch.optim.AdamW)


def test_bad_betas() -> None:
    with pytest.raises(ConfigError, match="betas"):
        build_optimizer(Tiny(), TrainConfig(betas=[0.9]))


def test_constant() -> None:
    s = make("constant", lr=1.0, warmup_steps=4)
    assert [s.lr_at(n) for n in (1, 2, 4, 5, 1000)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert make("constant", lr=0.3, warmup_steps=0).lr_at(1) == 0.3


def test_inverse_sqrt() -> None:
    s = make("inverse_sqrt", lr=1e-3, warmup_steps=100)
    assert s.lr_at(1) == pytest.approx(1e-5)
    assert s.lr_at(50) == pytest.approx(5e-4)
    assert s.lr_at(100) == pytest.approx(1e-3)
    assert s.lr_at(400) == pytest.approx(5e-4)  # 1e-3 * sqrt(100/400)
    assert s.lr_at(10_000) == pytest.approx(1e-4)


def test_noam_peaks_at_lr_and_matches_the_paper_shape() -> None:
    d, w, lr = 512, 4000, 7e-4
    s = make("noam", d_model=d, lr=lr, warmup_steps=w)
    peak = d**-0.5 * w**-0.5
    for n in (1, 100, 4000, 10_000, 100_000):
        paper = d**-0.5 * min(n**-0.5, n * w**-1.5)
        assert s.lr_at(n) == pytest.approx(lr * paper / peak)
    assert s.lr_at(w) == pytest.approx(lr)
    assert max(s.lr_at(n) for n in range(1, 20_000, 7)) <= lr * (1 + 1e-12)


def test_cosine() -> None:
    s = make("cosine", total=110, lr=1.0, warmup_steps=10, min_lr=0.1)
    assert s.lr_at(5) == pytest.approx(0.5)
    assert s.lr_at(10) == pytest.approx(1.0)
    assert s.lr_at(60) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos(pi/2) = 0
    assert s.lr_at(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert s.lr_at(110) == pytest.approx(0.1)
    assert s.lr_at(500) == pytest.approx(0.1)


@pytest.mark.parametrize("total", [None, 0])
def test_cosine_needs_max_steps(total: int | None) -> None:
    with pytest.raises(ScheduleError, match="train.max_steps") as err:
        make("cosine", total=total)
    assert isinstance(err.value, ValueError)


def test_unknown_schedule_lists_valid_ones() -> None:
    with pytest.raises(ScheduleError) as err:
        make("linear")
    for name in SCHEDULES:
        assert name in str(err.value)


def test_step_drives_optimizer_lr() -> None:
    s = make("inverse_sqrt", lr=1.0, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(s.optimizer.param_groups[0]["lr"])
        assert s.get_lr() == lrs[-1]
        s.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, math.sqrt(4 / 5), math.sqrt(4 / 6)])


def test_plateau() -> None:
    s = make("plateau", lr=1.0, warmup_steps=2, plateau_factor=0.5, plateau_patience=2, min_lr=0.2)
    assert s.get_lr() == 0.5  # update 1 of 2 warmup updates
    s.step()
    assert s.get_lr() == 1.0
    s.step(metric=3.0)  # first validation: best
    s.step(metric=2.0)  # improved
    s.step(metric=2.5)  # 1 bad
    assert s.get_lr() == 1.0
    s.step(metric=2.0)  # 2 bad (a tie is no improvement): reduce
    assert s.get_lr() == 0.5
    s.step()  # updates without a metric change nothing
    assert s.get_lr() == 0.5
    s.step(metric=1.0)  # improved; counter reset
    s.step(metric=1.5)
    assert s.get_lr() == 0.5
    s.step(metric=1.5)
    assert s.get_lr() == 0.25
    s.observe(9.0)
    s.observe(9.0)
    assert s.get_lr() == pytest.approx(0.2)  # floored at min_lr
    s.observe(9.0)
    s.observe(9.0)
    assert s.get_lr() == pytest.approx(0.2)
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(0.2)


def test_metric_is_ignored_by_other_schedules() -> None:
    s = make("constant", lr=1.0, warmup_steps=0)
    for _ in range(5):
        s.step(metric=10.0)
    assert s.get_lr() == 1.0


def test_state_dict_round_trip() -> None:
    kw = dict(lr=1.0, warmup_steps=0, plateau_patience=1, plateau_factor=0.1)
    a = make("plateau", **kw)
    a.step(metric=1.0)
    a.step(metric=2.0)
    assert a.get_lr() == pytest.approx(0.1)
    state = a.state_dict()
    assert all(isinstance(v, (int, float, str, type(None))) for v in state.values())
    b = make("plateau", **kw)
    b.load_state_dict(state)
    assert b.num_updates == 2
    assert b.get_lr() == pytest.approx(0.1)
    assert b.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    b.step(metric=1.5)  # still worse than the restored best of 1.0
    assert b.get_lr() == pytest.approx(0.01)
