"""The reference tables of docs/presets.md, generated from the schema and the recipe rules.

    python -m grpo_tui.engine.config.reference docs/presets.md     rewrite the generated parts of the page

Each table sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; tests/test_trl_recipe.py fails when
the page differs from what this module generates, so the page follows the code (and the installed TRL).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from pathlib import Path

from .recipe import rule_rows
from .schema import SECTIONS, field_choices, field_default, type_name


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fields_table() -> str:
    """Every preset field: section.key, type, default, allowed values, help."""
    lines = ["| key | type | default | allowed | help |", "|---|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            choices = field_choices(f)
            bounds = f.metadata.get("range")
            allowed = ", ".join(map(repr, choices)) if choices else (str(bounds) if bounds else "")
            lines.append(
                f"| `{section}.{f.name}` | {_cell(type_name(hints[f.name]))} | "
                f"`{_cell(repr(field_default(f)))}` | {_cell(allowed)} | {_cell(f.metadata['help'])} |"
            )
    return "\n".join(lines)


def recipe_table() -> str:
    """Every recipe key that is not simply a [train] field, with what grpo-tui does with it."""
    lines = ["| key | TRL class | in grpo-tui | why / how |", "|---|---|---|---|"]
    for key, owner, action, reason in rule_rows():
        lines.append(f"| `{key}` | {owner} | {_cell(action)} | {_cell(reason)} |")
    return "\n".join(lines)


TABLES = {"config-fields": fields_table, "recipe-keys": recipe_table}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- end: {name} -->)", re.S)


def generated_parts(text: str) -> dict[str, str]:
    """name -> the text between a table's markers in a page."""
    return {name: m.group(2).strip() for name in TABLES if (m := _pattern(name).search(text))}


def rewrite(text: str) -> str:
    for name, make in TABLES.items():
        table = make()
        text = _pattern(name).sub(lambda m, t=table: f"{m.group(1)}{t}\n{m.group(3)}", text)
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m grpo_tui.engine.config.reference docs/presets.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
