"""Training checkpoints (for resuming) and saved model weights (for inference).

Two formats, two purposes:

* A *training checkpoint* is one ``torch.save`` file holding a dict: the model
  state dict, optimizer and scheduler states, RNG states, counters. It is
  loaded with ``torch.load(weights_only=True)``, so it never runs pickled
  code; everything in it must be tensors, numbers, strings, lists, tuples and
  dicts (see :func:`capture_rng_state`). Conventional keys: ``model``,
  ``optimizer``, ``scheduler``, ``rng``, ``step``, ``epoch``, ``batch_in_epoch``,
  ``best_metric``.
* A *saved model* is a folder holding ``model.safetensors`` (plus
  ``config.json`` and the tokenizer files written by others): weights only.

Every file is written atomically: to a temporary file in the same folder,
flushed and fsynced, then moved over the old name with :func:`os.replace`, so
a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from transduce.config import TransduceError

WEIGHTS_NAME = "model.safetensors"
LAST_NAME = "last.pt"
INDEX_NAME = "checkpoints.json"


class CheckpointError(TransduceError):
    """A checkpoint or weights file that is missing, corrupt or does not fit the model."""


# -- atomic writes --------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[IO[bytes], str], None]) -> None:
    """Write ``path`` via a temporary sibling file and :func:`os.replace`.

    ``write(fileobj, tmp_name)`` fills the temporary file, through the open file
    object or by name (it must then leave the file closed or flushed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f, tmp)
            f.flush()
            os.fsync(f.fileno())
        # Writers that went by name wrote through another handle: sync that too.
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


# -- RNG state ------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA when available) RNG states.

    Plain lists, tuples and tensors only, so the result loads with
    ``torch.load(weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`: the next random numbers repeat.

    CUDA states are restored when this machine has the same number of GPUs;
    otherwise they are skipped (resuming on other hardware cannot be bit-exact).
    """
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    np_state = state["numpy"]
    keys = np_state["keys"]
    keys = keys.numpy() if isinstance(keys, Tensor) else np.asarray(keys)
    np.random.set_state(
        (
            np_state["kind"],
            keys.astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu().to(torch.uint8) for s in cuda])


# -- training checkpoints -------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically with ``torch.save``."""
    _atomic_write(Path(path), lambda f, _tmp: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint`.

    Raises :class:`CheckpointError` naming the file when it is missing,
    truncated, corrupt or holds something that is not plain data.
    """
    path = Path(path)
    if not path.is_file():
        why = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {why}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be loaded ({reason}); "
            "delete it, or resume from another checkpoint"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict"
        )
    return state


@dataclass(frozen=True)
class KeptCheckpoint:
    """One of the best checkpoints a :class:`CheckpointManager` keeps."""

    path: Path
    step: int
    metric: float


class CheckpointManager:
    """Keeps ``last.pt`` and the ``keep_best`` best checkpoints of a run.

    Files in ``run_dir``: ``last.pt``; ``ckpt-step{step}-{metric:.4f}.pt`` for
    each kept best checkpoint; ``checkpoints.json``, the index of kept
    checkpoints and their scores, best first, rewritten atomically. A
    checkpoint that falls out of the best ``keep_best`` is deleted. The step is
    read from ``state["step"]``. Ties go to the earlier checkpoint.
    """

    def __init__(
        self,
        run_dir: str | Path,
        keep_best: int,
        higher_is_better: bool,
        metric_name: str | None = None,
    ) -> None:
        if keep_best < 0:
            raise CheckpointError(f"train.keep_best must be >= 0, got {keep_best}")
        self.run_dir = Path(run_dir)
        self.keep_best = keep_best
        self.higher_is_better = higher_is_better
        self.metric_name = metric_name
        self._kept: list[KeptCheckpoint] = []
        self._read_index()

    # -- index ----------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.run_dir / INDEX_NAME

    def _read_index(self) -> None:
        path = self.index_path
        if not path.is_file():
            return
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            entries = [
                KeptCheckpoint(self.run_dir / e["path"], int(e["step"]), float(e["metric"]))
                for e in index["checkpoints"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint index {path} is corrupt ({e}); delete it to start the ranking afresh"
            ) from None
        if index.get("higher_is_better", self.higher_is_better) != self.higher_is_better or (
            self.metric_name is not None and index.get("metric") not in (None, self.metric_name)
        ):
            raise CheckpointError(
                f"{path} ranks checkpoints by {index.get('metric') or 'a metric'} "
                f"(higher_is_better={index.get('higher_is_better')}), but this run ranks by "
                f"{self.metric_name or 'a metric'} (higher_is_better={self.higher_is_better}); "
                "use a new run directory or delete the index"
            )
        # A file deleted by hand is simply forgotten.
        self._kept = self._sorted(e for e in entries if e.path.is_file())

    def _write_index(self) -> None:
        index = {
            "metric": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "keep_best": self.keep_best,
            "checkpoints": [
                {"path": e.path.name, "step": e.step, "metric": e.metric} for e in self._kept
            ],
        }
        data = (json.dumps(index, indent=2) + "\n").encode("utf-8")
        _atomic_write(self.index_path, lambda f, _tmp: f.write(data))

    def _sorted(self, entries: Iterable[KeptCheckpoint]) -> list[KeptCheckpoint]:
        sign = -1.0 if self.higher_is_better else 1.0
        return sorted(entries, key=lambda e: (sign * e.metric, e.step))

    # -- saving -----------------------------------------------------------------

    def save_last(self, state: dict[str, Any]) -> Path:
        """Write ``last.pt`` (the resume point); returns its path."""
        path = self.run_dir / LAST_NAME
        save_checkpoint(path, state)
        return path

    def is_better(self, metric: float) -> bool:
        """Whether ``metric`` would enter the kept best checkpoints."""
        if self.keep_best == 0 or not math.isfinite(metric):
            return False
        if len(self._kept) < self.keep_best:
            return True
        worst = self._kept[-1].metric
        return metric > worst if self.higher_is_better else metric < worst

    def save_if_best(self, state: dict[str, Any], metric: float) -> bool:
        """Save ``state`` if ``metric`` ranks among the best ``keep_best``; True if saved."""
        metric = float(metric)
        step = int(state.get("step", 0))
        # A step validated again (e.g. after a resume) replaces its earlier entry.
        previous = [e for e in self._kept if e.step == step]
        others = [e for e in self._kept if e.step != step]
        if previous:
            self._kept = others
        if not self.is_better(metric):
            if previous:
                self._kept = self._sorted(others + previous)
            return False
        path = self.run_dir / f"ckpt-step{step}-{metric:.4f}.pt"
        save_checkpoint(path, state)
        entry = KeptCheckpoint(path, step, metric)
        ranked = self._sorted([*self._kept, entry])
        self._kept, dropped = ranked[: self.keep_best], ranked[self.keep_best :]
        self._write_index()  # before deleting, so the index never names a missing file
        for old in [*dropped, *previous]:
            if old.path != path:
                old.path.unlink(missing_ok=True)
        return True

    # -- queries ----------------------------------------------------------------

    def kept(self) -> list[KeptCheckpoint]:
        """The kept best checkpoints, best first."""
        return list(self._kept)

    def best_path(self) -> Path | None:
        """The best checkpoint so far, or None when none was kept."""
        return self._kept[0].path if self._kept else None

    def last_path(self) -> Path | None:
        """``last.pt`` if it exists (the point to resume from), else None."""
        path = self.run_dir / LAST_NAME
        return path if path.is_file() else None


# -- averaging ------------------------------------------------------------------


def _alias_groups(state: dict[str, Tensor]) -> dict[str, str]:
    """Map each key to the first key viewing the same memory (tied weights)."""
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for key, t in state.items():
        if not isinstance(t, Tensor) or t.numel() == 0:
            alias[key] = key
            continue
        ident = (
            t.device.type,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        alias[key] = seen.setdefault(ident, key)
    return alias


def _model_state(state: dict[str, Any], path: Path) -> dict[str, Tensor]:
    model = state.get("model", state)
    if not isinstance(model, dict) or not all(isinstance(v, Tensor) for v in model.values()):
        raise CheckpointError(f"checkpoint {path} holds no model state dict")
    return model


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Tensor]:
    """The mean of the model weights in ``paths`` (training checkpoints).

    Float tensors are averaged (accumulated in at least float32, returned in
    their own dtype); other tensors (counters, int buffers) are copied from the
    first checkpoint. Keys tied to each other in the first checkpoint (same
    memory) are tied in the result too. All checkpoints must hold the same keys
    and shapes.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise CheckpointError("average_checkpoints needs at least one checkpoint")
    first = _model_state(load_checkpoint(paths[0]), paths[0])
    alias = _alias_groups(first)
    roots = [k for k, a in alias.items() if a == k]
    sums: dict[str, Tensor] = {}
    for k in roots:
        t = first[k]
        if t.is_floating_point():
            sums[k] = t.to(torch.promote_types(t.dtype, torch.float32), copy=True)
    for path in paths[1:]:
        other = _model_state(load_checkpoint(path), path)
        missing = sorted(set(first) - set(other))
        extra = sorted(set(other) - set(first))
        shapes = [k for k in first if k in other and first[k].shape != other[k].shape]
        if missing or extra or shapes:
            raise CheckpointError(
                f"cannot average {paths[0]} with {path}: "
                + "; ".join(
                    part
                    for part in (
                        f"keys only in the first: {_names(missing)}" if missing else "",
                        f"keys only in {path.name}: {_names(extra)}" if extra else "",
                        f"shapes differ for {_names(shapes)}" if shapes else "",
                    )
                    if part
                )
            )
        for k, acc in sums.items():
            acc.add_(other[k].to(acc.dtype))
        del other
    out: dict[str, Tensor] = {}
    for k in roots:
        out[k] = (sums[k] / len(paths)).to(first[k].dtype) if k in sums else first[k].clone()
    return {k: out[alias[k]] for k in first}


# -- saved model weights (safetensors) ------------------------------------------


def _names(keys: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _weights_file(path: str | Path) -> Path:
    """``path`` itself if it names a ``.safetensors`` file, else ``path/model.safetensors``."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / WEIGHTS_NAME


def save_model_weights(model: nn.Module, path: str | Path) -> Path:
    """Write the model's weights as safetensors, atomically; returns the file's path.

    ``path`` is a saved-model folder (the file is ``model.safetensors`` in it)
    or a ``.safetensors`` file name. Tied weights are stored once.
    """
    file = _weights_file(path)
    state = model.state_dict()
    alias = _alias_groups(state)
    # Each stored tensor gets memory of its own: on CUDA, cuDNN keeps an RNN's weights
    # as views into one flat buffer, which safetensors refuses to write as such.
    tensors = {
        k: t.detach().to("cpu", copy=True).contiguous() for k, t in state.items() if alias[k] == k
    }
    _atomic_write(file, lambda _f, tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    return file


def check_weights_match(expected: dict[str, Tensor], weights: dict[str, Tensor], what: str) -> None:
    """Raise :class:`CheckpointError` naming the keys when ``weights`` (read from ``what``)
    do not fit a model whose ``state_dict()`` is ``expected``: missing or unknown keys,
    other shapes. A tied key is satisfied when any key sharing its memory is there."""
    alias = _alias_groups(expected)
    stored_roots = {alias[k] for k in weights if k in alias}
    missing = sorted(k for k in expected if k not in weights and alias[k] not in stored_roots)
    unexpected = sorted(k for k in weights if k not in expected)
    shapes = sorted(
        f"{k} (file {tuple(weights[k].shape)}, model {tuple(expected[k].shape)})"
        for k in weights
        if k in expected and weights[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing from the file: {_names(missing)}")
        if unexpected:
            problems.append(f"not in the model: {_names(unexpected)}")
        if shapes:
            problems.append(f"shape mismatch: {_names(shapes)}")
        raise CheckpointError(
            f"{what} do not match the model built from the config: "
            + "; ".join(problems)
            + ". Was the config changed after these weights were saved?"
        )


def load_model_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights written by :func:`save_model_weights` into ``model`` (in place).

    Raises :class:`CheckpointError` when the file is missing or corrupt, or when
    its keys or shapes do not match the model built from the config, naming the
    keys at fault.
    """
    file = _weights_file(path)
    if not file.is_file():
        raise CheckpointError(f"model weights {file} do not exist")
    try:
        weights = load_file(file, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"model weights {file} are corrupt or truncated and cannot be loaded ({e})"
        ) from None
    expected = model.state_dict()
    check_weights_match(expected, weights, f"model weights {file}")
    bad = []
    for k, t in weights.items():
        want = expected.get(k)
        if want is None:
            continue
        if want.is_floating_point() and not t.is_floating_point():
            bad.append(f"{k} has dtype {str(t.dtype).replace('torch.', '')}, not a float type")
        elif t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(f"{k} holds NaN or infinite values")
    if bad:
        raise CheckpointError(
            f"model weights {file} are damaged: {_names(bad, 5)}; retrain, or use another "
            "model folder (e.g. the run's last/ or a kept checkpoint via transduce average)"
        )
    model.load_state_dict(weights, strict=False)
    return model
