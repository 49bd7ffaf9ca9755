"""Checkpoints: round trips, RNG, atomicity, errors, the best-N manager, averaging, safetensors."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from transduce.config import TransduceError
from transduce.training import checkpoint as ckpt
from transduce.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    average_checkpoints,
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    save_checkpoint,
    save_model_weights,
)
from transduce.training.optim import Scheduler


class Tied(nn.Module):
    def __init__(self, vocab: int = 6, dim: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab)
        self.out.weight = self.embed.weight
        self.register_buffer("count", torch.tensor(3, dtype=torch.long))


def full_state(step: int = 7) -> dict:
    torch.manual_seed(step)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model.out(model.hidden(model.embed(torch.tensor([1, 2])))).sum()
    loss.backward()
    opt.step()
    sched = Scheduler(opt, "inverse_sqrt", 1e-3, 10)
    sched.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": capture_rng_state(),
        "step": step,
        "epoch": 2,
        "batch_in_epoch": 13,
        "best_metric": 21.5,
        "config": {"train": {"lr": 1e-3, "betas": [0.9, 0.98]}},
    }


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    state = full_state()
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded["step"] == 7 and loaded["epoch"] == 2 and loaded["batch_in_epoch"] == 13
    assert loaded["best_metric"] == 21.5 and loaded["config"] == state["config"]
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    # Tied weights stay one tensor after the round trip.
    assert loaded["model"]["embed.weight"].data_ptr() == loaded["model"]["out.weight"].data_ptr()
    opt = torch.optim.AdamW(Tied().parameters(), lr=1e-3)
    opt.load_state_dict(loaded["optimizer"])
    assert loaded["scheduler"]["num_updates"] == 1
    assert [p.name for p in tmp_path.joinpath("run").iterdir()] == ["last.pt"]  # no temp left


def test_rng_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    np.random.randn()  # leaves a cached gaussian in numpy's legacy state
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(5), random.random(), np.random.rand(3), np.random.randn())
    cuda = torch.cuda.is_available()
    expected_cuda = torch.rand(4, device="cuda") if cuda else None
    torch.rand(100), random.random(), np.random.rand(50)  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(5), random.random(), np.random.rand(3), np.random.randn())
    assert torch.equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert np.array_equal(got[2], expected[2]) and got[3] == expected[3]
    if cuda:
        assert torch.equal(torch.rand(4, device="cuda"), expected_cuda)


@pytest.mark.parametrize("fail_in", ["torch.save", "os.replace"])
def test_crash_mid_write_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def crash(*args, **kwargs):
        if fail_in == "torch.save":  # write half a file, then die
            args[1].write(b"PK\x03\x04 half a zip")
        raise OSError("simulated crash")

    target = ckpt.torch if fail_in == "torch.save" else ckpt.os
    monkeypatch.setattr(target, "save" if fail_in == "torch.save" else "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]  # the temporary file was removed


def test_corrupt_truncated_missing(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, full_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, TransduceError)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_unpickling_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"obj": Path("x")}, path)  # an arbitrary class, not plain data
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)


def test_manager_keeps_best_n(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_best=2, higher_is_better=True, metric_name="bleu")
    assert mgr.best_path() is None and mgr.last_path() is None
    results = []
    for step, bleu in [(100, 10.0), (200, 12.5), (300, 11.0), (400, 9.0), (500, 11.0)]:
        results.append(mgr.save_if_best({"step": step}, bleu))
        mgr.save_last({"step": step})
    assert results == [True, True, True, False, False]  # a tie with the worst does not displace it
    names = sorted(p.name for p in tmp_path.glob("ckpt-*.pt"))
    assert names == ["ckpt-step200-12.5000.pt", "ckpt-step300-11.0000.pt"]
    assert [(k.step, k.metric) for k in mgr.kept()] == [(200, 12.5), (300, 11.0)]
    assert mgr.best_path() == tmp_path / "ckpt-step200-12.5000.pt"
    assert mgr.last_path() == tmp_path / "last.pt"
    assert load_checkpoint(mgr.last_path())["step"] == 500
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert index["checkpoints"] == [
        {"path": "ckpt-step200-12.5000.pt", "step": 200, "metric": 12.5},
        {"path": "ckpt-step300-11.0000.pt", "step": 300, "metric": 11.0},
    ]
    # A new manager (a resumed run) reads the ranking back.
    again = CheckpointManager(tmp_path, keep_best=2, higher_is_better=True, metric_name="bleu")
    assert again.kept() == mgr.kept()
    assert again.save_if_best({"step": 600}, 11.5)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == [
        "ckpt-step200-12.5000.pt",
        "ckpt-step600-11.5000.pt",
    ]
    with pytest.raises(CheckpointError, match="new run directory"):
        CheckpointManager(tmp_path, keep_best=2, higher_is_better=False)


def test_manager_lower_is_better(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_best=1, higher_is_better=False)
    assert mgr.save_if_best({"step": 1}, 3.0)
    assert not mgr.save_if_best({"step": 2}, 4.0)
    assert not mgr.save_if_best({"step": 3}, float("nan"))
    assert mgr.save_if_best({"step": 4}, 2.0)
    assert [p.name for p in tmp_path.glob("ckpt-*.pt")] == ["ckpt-step4-2.0000.pt"]


def test_average_two_checkpoints(tmp_path: Path) -> None:
    a, b = Tied().state_dict(), Tied().state_dict()
    b["count"] = torch.tensor(99)
    save_checkpoint(tmp_path / "a.pt", {"model": a, "step": 1})
    save_checkpoint(tmp_path / "b.pt", {"model": b, "step": 2})
    avg = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert set(avg) == set(a)
    for k in ("embed.weight", "hidden.weight", "hidden.bias", "out.bias"):
        torch.testing.assert_close(avg[k], (a[k] + b[k]) / 2)
        assert avg[k].dtype == torch.float32
    assert avg["count"].item() == 3  # non-float: copied from the first
    assert avg["out.weight"] is avg["embed.weight"]  # tied stays tied
    model = Tied()
    model.load_state_dict(avg)
    assert model.out.weight is model.embed.weight


def test_average_rejects_mismatch(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pt", {"model": Tied(vocab=6).state_dict()})
    save_checkpoint(tmp_path / "b.pt", {"model": Tied(vocab=7).state_dict()})
    with pytest.raises(CheckpointError, match="shapes differ for embed.weight"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])


def test_safetensors_round_trip_with_tied_weights(tmp_path: Path) -> None:
    model = Tied()
    file = save_model_weights(model, tmp_path / "best")
    assert file == tmp_path / "best" / "model.safetensors"
    assert os.listdir(tmp_path / "best") == ["model.safetensors"]
    fresh = Tied()
    load_model_weights(fresh, tmp_path / "best")
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert fresh.out.weight is fresh.embed.weight


def test_safetensors_round_trip_with_weights_in_one_flat_buffer(tmp_path: Path) -> None:
    """cuDNN keeps an RNN's weights as views into one flat buffer (found on a real GPU:
    safetensors refused to save such a model); saving must copy them out."""
    rnn = nn.LSTM(4, 3, num_layers=2)
    params = list(rnn.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    with torch.no_grad():
        for p in params:  # make every weight a view of ``flat``, as flatten_parameters does
            n = p.numel()
            p.set_(flat.untyped_storage(), offset, p.shape, p.stride())
            offset += n
    assert params[0].untyped_storage().data_ptr() == params[-1].untyped_storage().data_ptr()
    save_model_weights(rnn, tmp_path / "rnn")
    fresh = nn.LSTM(4, 3, num_layers=2)
    load_model_weights(fresh, tmp_path / "rnn")
    for k, v in rnn.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_safetensors_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="do not exist"):
        load_model_weights(Tied(), tmp_path / "missing")
    save_model_weights(Tied(vocab=6), tmp_path / "m")
    with pytest.raises(CheckpointError) as err:
        load_model_weights(Tied(vocab=8), tmp_path / "m")
    msg = str(err.value)
    assert "shape mismatch" in msg and "embed.weight" in msg and "model.safetensors" in msg

    class Other(Tied):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match="missing from the file: extra.bias, extra.weight"):
        load_model_weights(Other(), tmp_path / "m")
    file = tmp_path / "m" / "model.safetensors"
    file.write_bytes(file.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_weights(Tied(), file)
