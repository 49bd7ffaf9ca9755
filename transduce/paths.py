"""Output folders that never damage what exists: one rule for every command that writes.

* An output that is, contains or lies inside one of the command's inputs is refused
  (:func:`check_output`).
* An existing output is replaced only with ``--force`` and only when the command
  recognises it as its own kind of output (a model folder, a data set, an export);
  anything else is refused, whatever the flags (:func:`replace_folder`).
* The new output is written beside the old one and moved into place only once it is
  complete, so a failure half-way leaves the old output (and everything else) as it was.
* An output *file* (``evaluate --output``, ``predict --attention-plot``) is checked
  before any work: not a folder, its folder exists, and it does not overwrite a file of
  something transduce made (a run folder, a model folder, a data set, an export)
  (:func:`check_output_file`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from transduce.config import TransduceError


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_output(
    out: str | Path,
    inputs: Iterable[str | Path],
    option: str = "--out",
    inside_ok: bool = False,
) -> Path:
    """Refuse an output that is, contains or lies inside an input; returns ``out`` resolved.

    ``inside_ok``: the inputs are folders the command only reads files from by name, so
    a new folder inside one of them damages nothing (``data prepare --lists-dir``).
    """
    target = _resolved(out)
    for item in inputs:
        src = _resolved(item)
        if target == src:
            relation = "is"
        elif target in src.parents:
            relation = "contains"
        elif src in target.parents and not inside_ok:
            relation = "lies inside"
        else:
            continue
        raise TransduceError(
            f"{option} {out} {relation} the input {item}; writing there would damage the input. "
            "Choose an output folder outside it"
        )
    return target


def check_creatable(out: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, a folder ``out`` that could not be made: a file on its path
    (``--out notes.txt/model``) or a nearest existing folder this process cannot write."""
    target = _resolved(out)
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == target:
        return  # an existing output: each command decides whether it may replace it
    if not existing.is_dir():
        raise TransduceError(
            f"{option} {out}: {existing} is a file, so no folder can be made under it; "
            "choose another path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TransduceError(f"{option} {out}: cannot write in {existing} (permission denied)")


def make_folder(path: str | Path, option: str) -> Path:
    """``mkdir -p path``; an OSError is one error naming ``option`` and the path."""
    path = Path(path)
    check_creatable(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TransduceError(f"{option} {path}: cannot create it ({e.strerror})") from None
    return path


def temp_folder_beside(out: Path, option: str = "--out") -> Path:
    """A new empty folder beside ``out`` (same file system, so that it can be renamed to
    ``out``), its parent made when missing; one error naming ``option`` if impossible."""
    check_creatable(out, option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as e:
        raise TransduceError(f"{option} {out}: cannot write there ({e.strerror})") from None


# What training writes at the top of a run folder (its subfolders are all its own); a
# config.yaml beside one of the first three marks a run folder.
_RUN_MARKS = ("train.log", "checkpoints.json", "last.pt")
RUN_FILES = ("config.yaml", *_RUN_MARKS, "summary.json")


# meta.json "format" of a corpus `transduce data binarize` wrote (transduce/tasks/binarize.py)
BINARIZED_FORMAT = "transduce-binarized"


def is_data_set(folder: Path) -> bool:
    """A folder ``transduce data prepare`` wrote (its ``card.json``)."""
    return (folder / "card.json").is_file()


def is_export_folder(folder: Path) -> bool:
    """A folder ``transduce export`` wrote (its ``transduce/export.json``)."""
    return (folder / "transduce" / "export.json").is_file()


def is_binarized_folder(folder: Path) -> bool:
    """A folder ``transduce data binarize`` wrote (``meta.json`` of its format)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == BINARIZED_FORMAT


def made_by_transduce(folder: Path) -> str | None:
    """What ``folder`` is when transduce made it (a run folder, a model folder, a data set,
    a CTranslate2 export, a binarized corpus), else None."""
    if (folder / "config.yaml").is_file() and any((folder / n).exists() for n in _RUN_MARKS):
        return "run folder"
    if is_model_folder(folder):
        return "model folder"
    if is_data_set(folder):
        return "data set"
    if is_export_folder(folder):
        return "CTranslate2 export"
    if is_binarized_folder(folder):
        return "binarized corpus"
    return None


def is_run_file(name: str) -> bool:
    """Whether a file of this name at the top of a run folder is one training wrote."""
    return name in RUN_FILES or (name.startswith("ckpt-") and name.endswith(".pt"))


def check_output_file(out: str | Path, inputs: Iterable[str | Path], option: str) -> Path:
    """Refuse, before any work, an output file that cannot be written or would damage
    something: one of the inputs (:func:`check_output`), a folder, a path whose folder
    does not exist, or an existing file inside a folder transduce made (a run's
    ``last.pt``, a data set's ``train.tsv``). A new file in such a folder is fine, and so
    is an existing one at the top of a run folder that training did not write (the
    hypotheses an earlier ``evaluate --output`` put there)."""
    out = Path(out)
    target = check_output(out, inputs, option)
    if target.is_dir():
        raise TransduceError(f"{option} {out} is a folder; give the name of a file to write")
    if target.parent.exists() and not target.parent.is_dir():
        raise TransduceError(f"{option} {out}: {target.parent} is a file, not a folder")
    if not target.parent.is_dir():
        raise TransduceError(
            f"{option} {out}: the folder {target.parent} does not exist; create it first"
        )
    if target.exists() or target.is_symlink():
        for folder in target.parents:
            kind = made_by_transduce(folder)
            if kind == "run folder" and folder == target.parent and not is_run_file(target.name):
                continue  # the user's own file beside the run's (an earlier --output)
            if kind is not None:
                raise TransduceError(
                    f"{option} {out} would overwrite a file of the {kind} {folder}; "
                    "choose a new file name"
                )
    return target


def replace_folder(
    out: str | Path,
    build: Callable[[Path], None],
    *,
    force: bool,
    is_own: Callable[[Path], bool],
    kind: str,
    option: str = "--out",
) -> Path:
    """Make folder ``out`` by ``build(tmp)`` into a sibling temporary folder, then rename.

    An existing ``out`` is replaced only when ``force`` is set and ``is_own(out)`` says
    it is a ``kind`` this command made; the old one is removed only after the new one is
    in place. ``build`` failing leaves ``out`` untouched.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise TransduceError(f"{option} {out} already exists; pass --force to replace it")
        if out.is_symlink() or not out.is_dir() or not is_own(out):
            raise TransduceError(
                f"{option} {out} exists and is not a {kind}; refusing to replace it even with "
                "--force. Choose another output path"
            )
    tmp = temp_folder_beside(out, option)
    try:
        build(tmp)
        install_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def install_folder(tmp: Path, out: Path) -> None:
    """Move the complete folder ``tmp`` to ``out``; an old ``out`` goes only afterwards."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_model_folder(path: Path) -> bool:
    """A folder ``transduce`` wrote as a model: ``config.json`` and ``model.safetensors``."""
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()
