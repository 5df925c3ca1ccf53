"""What the installed TRL says about one of its config fields, read from its source without importing it.

Importing trl takes seconds (it pulls in transformers and torch); a preset that writes `loss_type = "vespo"`
should be checked against the installed TRL's list without paying that. The list lives in the field's help
("Supported values are 'grpo', 'dr_grpo', ... and 'vespo'."), so it is read from there: with `ast` from the
source file, or from the imported dataclass when the source can't be read.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import re
from pathlib import Path

# class -> module file under trl/, where it is defined
_SOURCES = {
    "GRPOConfig": "trainer/grpo_config.py",
    "SFTConfig": "trainer/sft_config.py",
    "ModelConfig": "trainer/model_config.py",
    "ScriptArguments": "scripts/utils.py",
}

# the phrases TRL's helps use to introduce the allowed values
_MARKER = re.compile(r"(Supported values are|Must be one of|Options are|Options:|Possible values are)(:?)")


def _trl_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("trl")  # finds the package without running its __init__
    except (ImportError, ValueError):
        return None
    locations = spec.submodule_search_locations if spec else None
    return Path(list(locations)[0]) if locations else None


def _help_from_source(cls_name: str, field_name: str) -> str | None:
    root = _trl_dir()
    if root is None or cls_name not in _SOURCES:
        return None
    try:
        tree = ast.parse((root / _SOURCES[cls_name]).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name), None)
    for node in cls.body if cls else []:
        if not (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == field_name
            and isinstance(node.value, ast.Call)
        ):
            continue
        for kw in node.value.keywords:
            if kw.arg == "metadata":
                try:
                    meta = ast.literal_eval(kw.value)
                except ValueError:
                    return None
                return str(meta.get("help", "")) if isinstance(meta, dict) else None
    # a field defined in a base class (transformers' TrainingArguments) is not here: ask the class itself
    return None


def _help_from_class(cls_name: str, field_name: str) -> str | None:
    import trl

    cls = getattr(trl, cls_name, None)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    f = fields.get(field_name)
    return str(f.metadata.get("help", "")) if f else None


@functools.cache
def trl_help(cls_name: str, field_name: str) -> str:
    """The help text of trl.<cls_name>.<field_name> ('' when the installed TRL has no such field)."""
    found = _help_from_source(cls_name, field_name)
    return found if found is not None else (_help_from_class(cls_name, field_name) or "")


def choices_in_help(text: str) -> tuple[str, ...]:
    """The quoted values a TRL help lists after 'Supported values are' (or 'Must be one of').

    Two styles occur: one sentence listing them ("Supported values are 'grpo', 'dapo' and 'vespo'."), or a
    colon followed by one description per value, each opening with the value in backticks ("`'batch'`: ...").
    """
    m = _MARKER.search(text)
    if m is None:
        return ()
    rest = text[m.end() :]
    if m.group(2):  # "Supported values are: `'a'`: ... `'b'`: ..." (a value may lack its opening quote)
        found = re.findall(r"`'?([\w.-]+)'`", rest)
    else:
        sentence = re.split(r"\.\s", rest, maxsplit=1)[0]
        found = re.findall(r"'([\w.-]+)'", sentence)
    return tuple(dict.fromkeys(found))


@dataclasses.dataclass(frozen=True)
class TrlChoices:
    """The allowed values of a field copied from TRL, resolved from the installed TRL when first needed."""

    cls_name: str
    field_name: str

    def values(self) -> tuple[str, ...]:
        """Empty when the help lists none: any value is then passed on, and TRL itself judges it."""
        return choices_in_help(trl_help(self.cls_name, self.field_name))
