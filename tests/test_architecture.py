"""ARCHITECTURE.md names real modules: every path it mentions exists, and every `module.py` `Name` pair names a
class or function defined in that module."""

from __future__ import annotations

import ast
import re

from support.paths import REPO

DOC = (REPO / "ARCHITECTURE.md").read_text()


def test_every_path_it_names_exists():
    paths = set(re.findall(r"`((?:engine|rundir|tui|docs|tests|bench|presets)/[\w/.]*)`", DOC))
    assert len(paths) > 30
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == []


def test_every_name_it_gives_a_module_is_defined_there():
    pairs = re.findall(r"`((?:engine|rundir|tui)/[\w/]+\.py)` `(\w+)`", DOC)
    assert len(pairs) >= 8
    for path, name in pairs:
        tree = ast.parse((REPO / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        assert name in defined, f"{path} defines no {name}"
