"""What the installed TRL says about one of its config fields, read from its source without importing it.

Importing trl takes seconds (it pulls in transformers and torch); a preset that writes `loss_type = "vespo"`
should be checked against the installed TRL's list without paying that. The list lives in the field's help
("Supported values are 'grpo', 'dr_grpo', ... and 'vespo'."), so it is read from there: with `ast` from the
source file (engine/trl_source.py), or from the imported dataclass when the source can't tell.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from grpo_tui.engine.trl_source import config_field_help

# the phrases TRL's helps use to introduce the allowed values
_MARKER = re.compile(r"(Supported values are|Must be one of|Options are|Options:|Possible values are)(:?)")


def _help_from_class(cls_name: str, field_name: str) -> str | None:
    import trl

    cls = getattr(trl, cls_name, None)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    f = fields.get(field_name)
    return str(f.metadata.get("help", "")) if f else None


@functools.cache
def trl_help(cls_name: str, field_name: str) -> str:
    """The help text of trl.<cls_name>.<field_name> ('' when the installed TRL has no such field)."""
    found = config_field_help(cls_name, field_name)
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
