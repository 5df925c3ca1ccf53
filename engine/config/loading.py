"""Finding and reading presets: shipped names or paths, `extends` includes, --set overrides, a run's config.json.

A preset may also be a TRL YAML recipe (`trl grpo --config` style), translated by recipe.py.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from .recipe import read_recipe
from .schema import SECTIONS, Config, PresetError
from .validation import build_section, config_from_dict, unknown_key

RECIPE_SUFFIXES = (".yaml", ".yml")


def preset_dir() -> Path:
    """Shipped presets, from a source checkout or an installed wheel alike."""
    return Path(str(resources.files("grpo_tui.presets")))


def list_presets() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.toml"))


def find_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".toml", *RECIPE_SUFFIXES) or "/" in name_or_path:
        if not p.is_file():
            raise PresetError(f"{name_or_path}: preset file not found.")
        return p.resolve()
    shipped = preset_dir() / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = list_presets()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PresetError(
            f"unknown preset '{name_or_path}'.{hint} Shipped presets: {', '.join(names)}; "
            "or pass a path to a .toml file (or a TRL .yaml recipe)."
        )
    return shipped


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        # rewards replace as a whole: a preset that lists its rewards means exactly those
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "rewards":
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise PresetError(f"{path}: 'extends' forms a cycle.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{path}: not valid TOML: {e}.") from None
    except OSError as e:
        raise PresetError(f"{path}: can't read: {e.strerror}.") from None
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise PresetError(f"{path}: 'extends' must be a preset name or path.")
        base_path = find_preset(parent) if "/" not in parent else (path.parent / parent).resolve()
        raw = _deep_merge(_read_toml(base_path, seen + (path,)), raw)
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.learning_rate=1e-5' -> (['train', 'learning_rate'], 1e-05).

    Values are TOML literals; bare words are strings.
    """
    if "=" not in text:
        raise PresetError(f"--set {text!r}: expected section.key=value, e.g. train.learning_rate=1e-5.")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise PresetError(f"--set {text!r}: the key must be section.key, e.g. train.max_steps or rewards.correctness.")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def load_config(preset: str, overrides: list[str] = ()) -> Config:
    """Load a preset by name or path, apply --set overrides, validate. Raises PresetError."""
    path = find_preset(preset)
    raw = read_recipe(path).preset if path.suffix in RECIPE_SUFFIXES else _read_toml(path)
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in SECTIONS and section != "rewards":
            raise unknown_key(f"--set {text}", section, list(SECTIONS) + ["rewards"])
        raw.setdefault(section, {})[key] = value
    raw.setdefault("preset", {}).setdefault("name", path.stem)
    try:
        return config_from_dict(raw, str(path))
    except PresetError as e:
        _blame_override(overrides, e, str(path))
        raise


def _blame_override(overrides: list[str], error: PresetError, where: str) -> None:
    """A bad value given with --set is the override's fault, not the preset file's: say so."""
    for text in overrides:
        (section, key), value = parse_override(text)
        if section in SECTIONS:
            build_section(SECTIONS[section], {key: value}, f"--set {text}", section)  # raises, naming the override
        if f"[{section}] {key}" in str(error):
            raise PresetError(f"--set {text}: {str(error).removeprefix(where + ': ')}") from None


def load_resolved(path: Path, overrides: list[str] = ()) -> Config:
    """Read a run directory's config.json back (for --resume), with overrides."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PresetError(f"{path}: can't read the run's config: {e}.") from None
    if not isinstance(raw, dict):
        raise PresetError(
            f"{path}: the run's config is a JSON {type(raw).__name__}, not an object of sections; "
            "restore it from the config field of a run_start event in events.jsonl, or start a new "
            "run with --preset."
        )
    source = raw.pop("source", str(path))
    for text in overrides:
        (section, key), value = parse_override(text)
        raw.setdefault(section, {})[key] = value
    cfg = config_from_dict(raw, str(path))
    cfg.source = source
    return cfg
