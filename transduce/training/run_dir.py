"""Checks on a run folder before training writes to it.

* A run folder may not be, contain or lie inside the data it trains on.
* An existing folder is used only when it is a run folder (it has the ``config.yaml``
  training writes first) or empty: ``--run-dir ~`` never scatters files over a home.
* ``--resume`` with a changed config is refused with the differing keys listed, except
  for the keys in :data:`RESUME_MAY_CHANGE` (limits and logging, which do not change
  what the resumed steps compute).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from transduce.config import Config, ConfigError, TransduceError, config_from_dict, yaml_load
from transduce.paths import check_creatable, check_output

# keys a resumed run may take from the new config; every other change is refused
RESUME_MAY_CHANGE = (
    "name",
    "train.max_steps",
    "train.max_epochs",
    "train.max_minutes",
    "train.patience",
    "train.log_every",
    "train.progress",
    "train.threads",
    "train.device",
    "train.keep_freed_memory",
    "decode.batch_size",
)


def data_inputs(cfg: Config) -> list[Path]:
    """The data files a config reads (embedded samples excluded)."""
    return [
        Path(p)
        for p in (cfg.data.train, cfg.data.valid, cfg.data.test)
        if p and not str(p).startswith("sample:")
    ]


def check_run_dir(run: Path, cfg: Config) -> None:
    """Refuse a run folder that would damage the data or a folder that is not a run's."""
    check_output(run, data_inputs(cfg), option="run folder")
    check_creatable(run, "run folder")
    if run.exists() and not run.is_dir():
        raise TransduceError(f"run folder {run} exists and is not a folder; choose another")
    if run.is_dir() and any(run.iterdir()) and not (run / "config.yaml").is_file():
        raise TransduceError(
            f"run folder {run} exists, is not empty and is not a transduce run folder (it has "
            "no config.yaml); choose another --run-dir or config name"
        )


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and not key.startswith("train.aux_losses"):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def check_resume_config(run: Path, cfg: Config) -> None:
    """Refuse resuming ``run`` with a config that differs outside :data:`RESUME_MAY_CHANGE`."""
    path = run / "config.yaml"
    if not path.is_file():
        raise TransduceError(f"cannot resume: {path} does not exist")
    try:
        saved = config_from_dict(yaml_load(path.read_text(encoding="utf-8")), str(path))
    except (yaml.YAMLError, UnicodeDecodeError, ConfigError, OSError) as e:
        raise TransduceError(f"cannot resume: {path} is unreadable ({e})") from None
    old, new = _flatten(saved.to_dict()), _flatten(cfg.to_dict())
    changed = sorted(
        k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUME_MAY_CHANGE
    )
    if changed:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:12])
        more = f" (and {len(changed) - 12} more)" if len(changed) > 12 else ""
        raise TransduceError(
            f"cannot resume {run} with a changed config: {shown}{more}. Resume with the run's "
            f"own config ({path}); a resume may change only {', '.join(RESUME_MAY_CHANGE)}"
        )
