"""The field names of TRL's GRPOConfig / SFTConfig, read from the installed sources without importing them.

Importing trl takes seconds (it pulls in transformers and torch), and the one question a preset with a misspelled
[train] key asks is "is this a field at all?". The answer is in the source: each config is a dataclass whose
fields are annotated assignments in the class bodies of GRPOConfig -> trl's _BaseConfig -> transformers'
TrainingArguments. This module follows that chain with `ast`; anything it does not recognise (a base class it
can't find, a file that moved) gives None, and the caller imports trl as before. tests/test_config.py checks that
the names equal `dataclasses.fields` of the installed classes.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

# a base class imported from a package's __init__ (a lazy re-export) -> the file that defines it
REEXPORTS = {("transformers", "TrainingArguments"): "training_args.py"}


def _package_dir(name: str) -> Path | None:
    """A top-level package's directory, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = spec.submodule_search_locations if spec else None
    return Path(list(locations)[0]) if locations else None


def _init_fields(cls: ast.ClassDef) -> dict[str, ast.AnnAssign]:
    """Annotated assignments of a dataclass body, less ClassVars and `field(init=False)`."""
    names = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if "ClassVar" in ast.unparse(node.annotation):
            continue
        value = node.value
        if isinstance(value, ast.Call) and any(
            k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False for k in value.keywords
        ):
            continue
        names[node.target.id] = node
    return names


def _base_file(tree: ast.Module, here: Path, base: str) -> Path | None:
    """The file defining `base`, from the `from X import base` of the module at `here`."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == base and a.asname is None for a in node.names):
            if node.level:  # relative: from .base_config import _BaseConfig
                pkg = here.parent
                for _ in range(node.level - 1):
                    pkg = pkg.parent
                parts = (node.module or "").split(".") if node.module else []
                return pkg.joinpath(*parts).with_suffix(".py") if parts else None
            module = node.module or ""
            top = _package_dir(module.split(".")[0])
            if top is None:
                return None
            if (module, base) in REEXPORTS:
                return top / REEXPORTS[(module, base)]
            rest = module.split(".")[1:]
            return top.joinpath(*rest).with_suffix(".py") if rest else None
    return None


def _fields(path: Path, cls_name: str, depth: int = 0) -> dict[str, ast.AnnAssign] | None:
    if depth > 6 or not path.is_file():
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    if cls is None:
        return None
    names = _init_fields(cls)
    for base in cls.bases:
        if not isinstance(base, ast.Name):
            return None  # a base we can't follow: let the caller import
        found = _base_file(tree, path, base.id)
        inherited = _fields(found, base.id, depth + 1) if found else None
        if inherited is None:
            return None
        names = {**inherited, **names}  # a subclass's own declaration wins
    return names


@functools.cache
def _config_fields(cls_name: str) -> dict[str, ast.AnnAssign] | None:
    trl = _package_dir("trl")
    if trl is None:
        return None
    module = {"GRPOConfig": "grpo_config.py", "SFTConfig": "sft_config.py"}.get(cls_name)
    return _fields(trl / "trainer" / module, cls_name) if module else None


def config_field_names(cls_name: str) -> frozenset[str] | None:
    """Init field names of trl.<cls_name> (GRPOConfig, SFTConfig) from the installed sources; None if unsure."""
    found = _config_fields(cls_name)
    return frozenset(found) if found else None


def config_field_annotation(cls_name: str, name: str) -> str | None:
    """The field's annotation as written in the source (e.g. "dict | None"); None if unsure."""
    node = (_config_fields(cls_name) or {}).get(name)
    return ast.unparse(node.annotation) if node is not None else None


def config_field_help(cls_name: str, name: str) -> str | None:
    """The field's `metadata={"help": ...}` as written in the source; None if unsure (no such field, or a
    metadata only importing trl can tell)."""
    node = (_config_fields(cls_name) or {}).get(name)
    if node is None or not isinstance(node.value, ast.Call):
        return None
    for kw in node.value.keywords:
        if kw.arg == "metadata":
            try:
                meta = ast.literal_eval(kw.value)
            except (ValueError, SyntaxError):
                return None
            return str(meta.get("help", "")) if isinstance(meta, dict) else None
    return None


def config_field_choices(cls_name: str, name: str) -> list | None:
    """The literal `metadata={"choices": [...]}` of the field; None without one. LookupError when the choices
    are computed (only importing trl can tell them)."""
    node = (_config_fields(cls_name) or {}).get(name)
    if node is None or not isinstance(node.value, ast.Call):
        return None
    for kw in node.value.keywords:
        if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
            for key, value in zip(kw.value.keys, kw.value.values):
                if isinstance(key, ast.Constant) and key.value == "choices":
                    try:
                        return list(ast.literal_eval(value))
                    except (ValueError, SyntaxError):
                        raise LookupError(f"{cls_name}.{name}: choices computed at import") from None
    return None
