"""The package tree keeps its layers: each subpackage of insight_lightning imports only the ones its __init__ allows."""

import ast

import pytest
from conftest import ROOT

PACKAGE = ROOT / "insight_lightning"
# What each subpackage may import of insight_lightning besides itself (its __init__.py says the same in words).
ALLOWED = {
    "checkpoints": set(),
    "policy": set(),
    "rollout": {"policy"},
    "selection": set(),
    "training": {"checkpoints", "policy", "rollout", "selection"},
    "cli": {"checkpoints", "policy", "rollout", "selection", "training"},
    "race": {"checkpoints", "policy", "rollout", "selection", "training", "cli"},
}
MAX_LINES = 400
MODULE_MAX_LINES = 250  # the LightningModule reads as the training loop: its parts live in the modules beside it


def imported_parts(path) -> set[str]:
    """The insight_lightning subpackages or top-level modules a source file imports, at any depth of the file."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        parts |= {name.split(".")[1] for name in names if name.startswith("insight_lightning.")}
    return parts


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_a_subpackage_imports_only_the_layers_below_it(subpackage):
    folder = PACKAGE / subpackage
    assert (folder / "__init__.py").read_text(encoding="utf-8").startswith('"""'), f"{folder} has no paragraph"
    wrong = {
        f"{path.relative_to(ROOT)} imports insight_lightning.{part}"
        for path in folder.glob("*.py")
        for part in imported_parts(path) - ALLOWED[subpackage] - {subpackage}
    }
    assert not wrong, sorted(wrong)


def test_every_subpackage_is_placed_in_the_layers():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(ALLOWED), "add the new subpackage to ALLOWED and say in its __init__ why"


def test_no_source_file_is_longer_than_the_limit():
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for folder in ("insight_lightning", "samplers", "tasks")
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not long, long


def test_the_lightning_module_stays_a_readable_loop():
    lines = len((PACKAGE / "training" / "module.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MODULE_MAX_LINES, f"training/module.py has {lines} lines: move a part to the module it belongs to"
