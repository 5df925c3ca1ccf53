"""Turning a preset's reward spec into a function.

A spec is a built-in name, ``path/to/file.py:function``, ``package.module:function`` (an installed module,
``trl.rewards:accuracy_reward`` among them) or ``model:PATH_OR_ID`` (a sequence-classification reward model,
built by engine/rewards/reward_model.py).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from grpo_tui.rundir.errors import GrpoTuiError
from grpo_tui.rundir.private_io import trusted_file_problem

from .builtin import REWARDS
from .isolated import CALL_PARAMS, ProcessReward, RewardCallError

MODEL_PREFIX = "model:"
_MODULE_SPEC = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
# Keys a preset's reward table may carry that are for the engine, not the function.
ENGINE_KEYS = frozenset({"weight"})


class RewardSpecError(GrpoTuiError, ValueError):
    """A reward spec or its options cannot be used; the message names the fix."""


def reward_options(fn: Callable[..., Any]) -> dict[str, Any]:
    """The options a reward accepts: its keyword parameters with defaults, minus the call's own."""
    declared = getattr(fn, "declared_options", None)  # a ProcessReward: its worker inspected the function
    if isinstance(declared, dict):
        return declared
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is not p.empty
        and p.name not in CALL_PARAMS
    }


def _is_file_spec(spec: str) -> bool:
    return ".py:" in spec or spec.endswith(".py") or "/" in spec or "\\" in spec


def spec_kind(spec: str) -> str:
    """ "builtin", "model", "file", "module" or "unknown" for a (stripped) reward spec."""
    if spec in REWARDS:
        return "builtin"
    if spec.startswith(MODEL_PREFIX):
        return "model"
    if _is_file_spec(spec):
        return "file"
    if _MODULE_SPEC.fullmatch(spec):
        return "module"
    return "unknown"


def _trl_reward_names() -> list[str]:
    """The reward functions the installed trl.rewards offers (for a suggestion only; [] without TRL)."""
    try:
        import trl.rewards  # a lazy module: its names without importing the functions
    except Exception:  # noqa: BLE001
        return []
    return [n for n in getattr(trl.rewards, "__all__", ()) if not n.endswith("_rewards")]


def label(spec: str) -> str:
    """The name a reward is shown and recorded under: the function's name, or the reward model's last part."""
    if spec.startswith(MODEL_PREFIX):
        return spec[len(MODEL_PREFIX) :].rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or spec
    return spec.rsplit(":", 1)[-1] if ":" in spec else spec


def _load_file(spec: str, base_dir: Path | None) -> tuple[Callable[..., Any], str]:
    if ":" not in spec.rstrip(":") or spec.endswith(".py"):
        raise RewardSpecError(
            f"reward {spec!r}: a user reward is 'path/to/file.py:function_name'; add ':' and the function's name"
        )
    path_s, func = spec.rsplit(":", 1)
    func = func.strip()
    path = Path(path_s).expanduser()
    if not path.is_absolute():
        path = (Path(base_dir) if base_dir is not None else Path.cwd()) / path
    path = path.resolve()
    where = (
        f"relative paths are resolved against {base_dir}"
        if base_dir is not None
        else "relative to the current directory"
    )
    if not path.is_file():
        raise RewardSpecError(
            f"reward {spec!r}: file not found: {path} ({where}); fix the path in the preset or use an absolute path"
        )
    if not func.isidentifier():
        raise RewardSpecError(f"reward {spec!r}: {func!r} is not a function name (expected 'file.py:function_name')")
    problem = trusted_file_problem(path, "reward file")
    if problem:
        # it would run as you: only files you (or root, for installed ones) own and nobody else can change
        raise RewardSpecError(f"reward {spec!r}: {problem}")
    # A hash keeps same-named files apart. The file is imported in its own worker process (isolated.py):
    # an exit or endless loop at import time becomes this error instead of ending or hanging the engine.
    mod_name = "grpo_user_reward_" + path.stem + "_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    try:
        fn = ProcessReward(path, func, mod_name)
    except RewardCallError as e:
        raise RewardSpecError(f"reward {spec!r}: {e}; fix the file") from None
    return _checked(fn, spec, func, str(path)), func


def _module_files(module: str) -> list[Path]:
    """The files Python runs to import ``module`` (each package's __init__ and the module), found without running
    any of them; on the import path of the engine's worker, which never holds the current directory."""
    search: list[str] | None = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != Path.cwd()]
    files: list[Path] = []
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        if search is None:
            raise RewardSpecError(f"{'.'.join(parts[:i])} is a module, not a package: it has no {parts[i]!r}")
        found = PathFinder.find_spec(name, search)
        if found is None and i == 0:  # an install through an import hook (an editable install): ask the hooks
            found = importlib.util.find_spec(name)  # a top-level name: nothing is imported to find it
        if found is None:
            raise RewardSpecError(
                f"no module named {name!r} on the import path (install it, or name a file: 'path/to/file.py:function')"
            )
        if found.has_location and found.origin:
            files.append(Path(found.origin))
        search = list(found.submodule_search_locations) if found.submodule_search_locations is not None else None
    return files


def _load_module(spec: str) -> tuple[Callable[..., Any], str]:
    module, func = spec.split(":", 1)
    try:
        files = _module_files(module)
    except RewardSpecError as e:
        raise RewardSpecError(f"reward {spec!r}: {e}") from None
    for f in files:
        problem = trusted_file_problem(f, "reward module file")
        if problem:  # it would run as you: the same rule as for reward files
            raise RewardSpecError(f"reward {spec!r}: {problem}")
    try:
        fn = ProcessReward(module, func, module, kind="module")
    except RewardCallError as e:
        raise RewardSpecError(f"reward {spec!r}: {e}; fix the module or the spec") from None
    loaded = fn.info.get("file")
    if files and loaded and Path(loaded).resolve() != files[-1].resolve():
        fn.close()  # the worker found another file than the one checked: refuse rather than guess
        raise RewardSpecError(
            f"reward {spec!r}: the worker imported {loaded}, not the checked {files[-1]}; "
            "remove the other copy from the import path"
        )
    return _checked(fn, spec, func, module), func


def _checked(fn: ProcessReward, spec: str, func: str, where: str) -> ProcessReward:
    """The loaded function, or RewardSpecError (the worker stopped) when it can't be called as TRL calls it."""
    info = fn.info
    if not info["callable"]:
        fn.close()
        names = info["functions"]
        found = "is not callable" if info["defined"] else "is not defined"
        hint = difflib.get_close_matches(func, names, n=1)
        raise RewardSpecError(
            f"reward {spec!r}: {func!r} {found} in {where}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + (f" (functions there: {', '.join(names)})" if names else " (it defines no functions)")
        )
    if not info["var_kw"]:
        fn.close()
        raise RewardSpecError(
            f"reward {spec!r}: {func}{info['signature']} must accept **kwargs; the trainer passes prompts, "
            f"completions, completion_ids, trainer_state and every dataset column as keywords, as TRL does. "
            f"Write: def {func}(completions, **kwargs)"
        )
    return fn


def resolve_reward(spec: str, options: dict | None = None, base_dir: Path | None = None) -> Callable[..., Any]:
    """The reward function for a preset's spec, with its options bound.

    ``spec``: a built-in name (see ``REWARDS``), ``path/to/file.py:function_name``
    (relative to ``base_dir``, the preset's folder), ``package.module:function_name``
    (an installed module) or ``model:PATH_OR_ID`` (a reward model). ``options``:
    keyword options for that reward; a ``weight`` key is ignored (the engine's).
    Raises RewardSpecError naming the reward and the fix.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise RewardSpecError(f"reward spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    kind = spec_kind(spec)
    if kind == "builtin":
        fn, name = REWARDS[spec], spec
    elif kind == "model":
        from .reward_model import RewardModelError, reward_model  # checks the path; loads nothing yet

        try:
            fn, name = reward_model(spec[len(MODEL_PREFIX) :], base_dir), label(spec)
        except RewardModelError as e:
            raise RewardSpecError(str(e)) from None
    elif kind == "file":
        fn, name = _load_file(spec, base_dir)
    elif kind == "module":
        fn, name = _load_module(spec)
    else:
        trl_names = _trl_reward_names()
        close = difflib.get_close_matches(spec, list(REWARDS) + trl_names, n=1, cutoff=0.5)
        if close and close[0] in trl_names and close[0] not in REWARDS:
            close = [f"trl.rewards:{close[0]}"]
        raise RewardSpecError(
            f"unknown reward {spec!r}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f". Built-in rewards: {', '.join(REWARDS)}. Your own: 'path/to/file.py:function', an installed "
            "'package.module:function' (e.g. 'trl.rewards:accuracy_reward') or 'model:PATH_OR_HUB_ID'."
        )
    options = {k: v for k, v in (options or {}).items() if k not in ENGINE_KEYS}
    if not options:
        return fn
    allowed = reward_options(fn)
    unknown = [k for k in options if k not in allowed]
    if unknown:
        listed = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
        close = difflib.get_close_matches(unknown[0], list(allowed), n=1)
        raise RewardSpecError(
            f"reward {name!r}: unknown option {unknown[0]!r}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f". Options it accepts: {listed}"
        )
    if isinstance(fn, ProcessReward):
        return fn.bind(options)
    validate = getattr(fn, "validate_options", None)
    if validate is not None:
        try:
            validate(**options)
        except (TypeError, ValueError) as e:
            raise RewardSpecError(f"reward {name!r}: bad options {options}: {e}") from e
    bound = functools.partial(fn, **options)
    functools.update_wrapper(bound, fn)
    return bound
