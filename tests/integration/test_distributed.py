"""Data-parallel training with two gloo processes on the loopback interface."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from tests.integration.conftest import TINY_TRANSFORMER, tiny_config
from transduce.cli import main
from transduce.config import TransduceError
from transduce.training import distributed
from transduce.training.checkpoint import load_checkpoint
from transduce.training.trainer import Trainer

SMALL = dict(max_steps=4, valid_every=4, batch_tokens=400, valid_max_sentences=4, threads=1)


def _model(dropout: float) -> dict:
    return {k: {**v, "dropout": dropout} for k, v in TINY_TRANSFORMER.items()}


def test_two_processes_equal_one_process_accumulating(data_dir, tmp_path):
    """2 ranks x 1 batch per update == 1 process x accumulate 2 over the same batches."""
    model = _model(0.0)
    Trainer(tiny_config(data_dir, model, accumulate=2, **SMALL), tmp_path / "one").fit()
    summary = distributed.spawn(2, tiny_config(data_dir, model, **SMALL), tmp_path / "two")
    assert summary["steps"] == 4
    one = load_checkpoint(tmp_path / "one" / "last.pt")
    two = load_checkpoint(tmp_path / "two" / "last.pt")
    assert one["progress"]["batch"] == two["progress"]["batch"] == 8  # same place in the data
    assert two["world_size"] == 2 and len(two["rng_ranks"]) == 2
    assert one["model"].keys() == two["model"].keys()
    for key in one["model"]:
        torch.testing.assert_close(two["model"][key], one["model"][key], rtol=0, atol=1e-6)
    a, b = one["progress"]["history"][-1], two["progress"]["history"][-1]
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def test_resume_with_two_processes_is_exact(data_dir, tmp_path):
    """Dropout on: each rank's random state is saved and restored with the checkpoint."""
    cfg = dict(SMALL, valid_every=2)
    model = _model(0.3)
    distributed.spawn(2, tiny_config(data_dir, model, **cfg), tmp_path / "straight")
    distributed.spawn(2, tiny_config(data_dir, model, **{**cfg, "max_steps": 2}), tmp_path / "cut")
    with pytest.raises(TransduceError, match="--nproc 2"):
        Trainer(tiny_config(data_dir, model, **cfg), tmp_path / "cut", resume=True).fit()
    distributed.spawn(2, tiny_config(data_dir, model, **cfg), tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cli_nproc_2_trains_and_writes_best(data_dir, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    cfg = tiny_config(data_dir, TINY_TRANSFORMER, **{**SMALL, "max_steps": 3, "valid_every": 3})
    config.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run), "--nproc", "2"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[: out.rindex("}") + 1])["steps"] == 3
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (run / "best" / name).is_file()
    assert (run / "last.pt").is_file() and (run / "train.log").is_file()
    # the run exists: a second start without --resume is one clear error from the workers
    assert main(["train", str(config), "--run-dir", str(run), "--nproc", "2"]) == 2
    assert "--resume" in capsys.readouterr().err


def _torchrun_nodes(config, run, port, *extra):
    """Two torchrun "nodes" of one process each on this machine, rendezvous over c10d."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        f"t{port}",
        "-m",
        "transduce.cli",
        "train",
        str(config),
        "--run-dir",
        str(run),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outs):
        assert node.returncode == 0, err[-3000:]


def test_two_torchrun_nodes_equal_one_process_accumulating(data_dir, tmp_path):
    """`torchrun --nnodes 2` launched twice (two "machines" sharing a filesystem path):
    same weights as one process with accumulate 2; only rank 0 writes the run folder;
    both nodes resume from it."""
    model = _model(0.0)
    cfg = dict(SMALL, valid_every=2)
    Trainer(tiny_config(data_dir, model, accumulate=2, **cfg), tmp_path / "one").fit()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data_dir, model, **cfg).to_dict()))
    cut = tmp_path / "cut.yaml"
    cut.write_text(
        yaml.safe_dump(tiny_config(data_dir, model, **{**cfg, "max_steps": 2}).to_dict())
    )
    _torchrun_nodes(cut, tmp_path / "nodes", distributed.free_port())
    assert load_checkpoint(tmp_path / "nodes" / "last.pt")["progress"]["step"] == 2
    _torchrun_nodes(config, tmp_path / "nodes", distributed.free_port(), "--resume")
    one = load_checkpoint(tmp_path / "one" / "last.pt")
    two = load_checkpoint(tmp_path / "nodes" / "last.pt")
    assert two["world_size"] == 2 and two["progress"]["step"] == 4
    for key in one["model"]:
        torch.testing.assert_close(two["model"][key], one["model"][key], rtol=0, atol=1e-6)
    written = sorted(p.name for p in (tmp_path / "nodes").iterdir())
    assert "best" in written and "last.pt" in written and "summary.json" in written
