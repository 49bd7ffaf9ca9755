"""Nothing imports upward: config/registry at the bottom; models, data, decoding and
evaluation above them; tasks above those; training and inference above tasks; the
CLI, serving and export on top (docs/design.md). Read from the source, so a lazy
import inside a function counts as much as one at the top of a file."""

from __future__ import annotations

import ast
from pathlib import Path

import transduce

PACKAGE = Path(transduce.__file__).parent

LAYERS = {
    "__init__": 0,  # `transduce.load` imports inference lazily: the package's front door
    "config": 0,
    "registry": 0,
    "paths": 0,
    "checks": 0,
    "memory": 0,
    "models": 1,
    "data": 1,
    "decoding": 1,
    "evaluation": 1,
    "timestamps": 1,
    "tasks": 2,
    "training": 3,
    "inference": 3,
    "alignments": 3,
    "convert": 3,
    "cli": 4,
    "serving": 4,
    "export": 4,
}

# (importer, imported): why it may look upward.
ALLOWED = {
    ("__init__", "inference"): "transduce.load() is the Python API's entry point",
    ("registry", "models"): "resolving a type name first imports the built-in modules "
    "so that they register themselves",
}


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of transduce (``models``, ``config``, ...) ``path`` imports."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "transduce":
                names = [f"transduce.{a.name}" for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            bits = name.split(".")
            if bits[0] == "transduce" and len(bits) > 1:
                parts.add(bits[1])
    return parts


def test_every_part_has_a_layer() -> None:
    found = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    found = {name for name in found if not name.startswith(("_", ".")) or name == "__init__"}
    found.discard("__pycache__")
    missing = sorted(found - set(LAYERS))
    assert not missing, f"give these a layer in LAYERS: {missing}"


def test_nothing_imports_upward() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        part = rel.parts[0].removesuffix(".py")
        for target in imported_parts(path):
            if target in LAYERS and LAYERS[target] > LAYERS[part]:
                if (part, target) not in ALLOWED:
                    upward.append(f"{rel} imports transduce.{target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from transduce.training.loss import register_aux_loss\n")
    assert imported_parts(bad) == {"training"}
