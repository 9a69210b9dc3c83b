"""The package's layers: every module imports only from layers below its own (or from its own package).

    errors < config, fs < classes < metrics       (0: the foundation, in this order)
    data                                            (1)
    synth, models, labelset                         (2)
    generate, train, evaluate, review               (3)
    report                                          (4)
    workflows                                       (5)
    api                                             (6)
    cli < __main__                                  (7)

A stage that needs another stage's code is a sign that the code belongs a layer down.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import autolabel

PACKAGE = Path(autolabel.__file__).parent
LAYERS = {
    "errors": 0, "config": 0.1, "fs": 0.1, "classes": 0.2, "metrics": 0.3,
    "data": 1,
    "synth": 2, "models": 2, "labelset": 2,
    "generate": 3, "train": 3, "evaluate": 3, "review": 3,
    "report": 4,
    "workflows": 5,
    "api": 6,
    "cli": 7, "__main__": 7.1,
}  # fmt: skip


def unit_of(module: str) -> str | None:
    """``autolabel.generate.runner`` -> ``generate``; None for the package root and foreign modules."""
    parts = module.split(".")
    return parts[1] if parts[0] == "autolabel" and len(parts) > 1 else None


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file under ``root``, relative imports resolved."""
    package = ".".join(("autolabel", *path.relative_to(root).with_suffix("").parts))
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: -node.level], *([base] if base else [])])
            # `from autolabel import labelset` imports the unit named after the module, not autolabel itself
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "autolabel" else [base]
            found += [(node.lineno, name) for name in names]
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """Every import that goes sideways (another unit of the same layer) or up."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        unit = path.relative_to(root).parts[0].removesuffix(".py")
        if unit not in LAYERS:
            continue
        for line, module in imported_modules(path, root):
            other = unit_of(module)
            if other is None or other == unit or other not in LAYERS:
                continue
            if LAYERS[other] >= LAYERS[unit]:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {unit} (layer {LAYERS[unit]}) imports "
                                f"{module} (layer {LAYERS[other]})")  # fmt: skip
    return problems


def test_every_unit_of_the_package_has_a_layer():
    units = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert units - {"__init__"} <= set(LAYERS), sorted(units - {"__init__"} - set(LAYERS))


def test_imports_only_go_down_the_layers():
    assert violations() == []


@pytest.mark.parametrize(
    "unit, line",
    [
        ("train/extra.py", "from autolabel.evaluate.audit import audit_table\n"),  # sideways: stage -> stage
        ("models/extra.py", "from autolabel.generate import runner\n"),  # up
        ("labelset/extra.py", "from autolabel import models\n"),  # sideways, `from autolabel import X` form
        ("data/extra.py", "from ..labelset import meta\n"),  # up, as a relative import
    ],
)
def test_the_check_catches_sideways_and_upward_imports(tmp_path, unit, line):
    root = tmp_path / "autolabel"
    for name in ("train", "models", "labelset", "data", "evaluate", "generate"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
    (root / unit).write_text(line)
    found = violations(root)
    assert len(found) == 1 and unit in found[0]
