"""The structure docs/architecture.md describes, held by the code: short functions, no private
names across modules, no study importing another, and imports that only point down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "deepscope"
STUDY_HELPERS = {"base", "common", "fields", "__init__"}
# part -> the parts of deepscope it may import (besides errors and version, open to all)
ALLOWED = {
    "params": set(), "errors": set(), "version": set(), "models": set(), "plot": set(),
    "store": set(), "executors": set(),
    "stacked_mlp": set(),
    "ensemble": {"params", "stacked_mlp"},
    "data": set(),
    "train": {"ensemble", "data", "params"},
    "probes": {"params", "ensemble", "probes"},
    "specs": {"data", "probes"},
    "context": {"store", "executors", "data"},
    "studies": {"studies", "context", "data", "models", "params", "plot", "probes", "train",
                "specs"},
    "report": {"store", "studies", "plot", "context"},
    "runner": {"context", "data", "executors", "plot", "store", "studies", "specs"},
    "cli": {"runner", "report", "store", "studies", "plot", "context", "executors"},
}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        yield path, rel.parts, ast.parse(path.read_text())


def _target(parts: tuple[str, ...], node: ast.ImportFrom, is_package: bool) -> list[str]:
    """The deepscope module parts an import names (relative imports resolved)."""
    base = list(parts if is_package else parts[:-1])
    base = base[: len(base) - (node.level - 1)] if node.level else []
    if node.level == 0:
        if not (node.module or "").startswith("deepscope"):
            return []
        return (node.module or "").split(".")[1:2] or [a.name for a in node.names]
    mods = base + ((node.module or "").split(".") if node.module else [])
    return mods[:1] if mods else [a.name for a in node.names]


def test_no_function_is_longer_than_80_lines():
    long = [f"{p.relative_to(SRC)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1})"
            for p, _, tree in _modules() for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno - n.lineno + 1 > 80]
    assert not long, long


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{p.relative_to(SRC)}: {n.module} {a.name}" for p, _, tree in _modules()
           for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module != "__future__"
           for a in n.names if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, bad


@pytest.mark.parametrize("path", sorted(p for p in (SRC / "studies").glob("*.py")
                                         if p.name != "__init__.py"), ids=lambda p: p.name)
def test_a_study_never_imports_another_study(path):
    tree = ast.parse(path.read_text())
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.level == 1:
            names = [n.module] if n.module else [a.name for a in n.names]
            assert set(names) <= STUDY_HELPERS, f"{path.name} imports {names}"


def test_imports_only_point_down():
    bad = []
    for path, parts, tree in _modules():
        part = parts[0]
        if part == "__init__":  # the package face re-exports
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom):
                for t in _target(parts, n, path.name == "__init__.py"):
                    if t not in ALLOWED.get(part, set()) | {part, "errors", "version"}:
                        bad.append(f"{path.relative_to(SRC)} imports {t}")
    assert not bad, bad
