"""Turning a preset's reward spec (a built-in name or ``file.py:function``) into a function."""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

from rundir.errors import GrpoTuiError

from .builtin import REWARDS

# Keyword parameters every reward may receive from the trainer: never options.
CALL_PARAMS = frozenset(
    {"prompts", "completions", "answer", "completion_ids", "prompt_format", "trainer_state", "log_extra", "log_metric"}
)
# Keys a preset's reward table may carry that are for the engine, not the function.
ENGINE_KEYS = frozenset({"weight"})


class RewardSpecError(GrpoTuiError, ValueError):
    """A reward spec or its options cannot be used; the message names the fix."""


def reward_options(fn: Callable[..., Any]) -> dict[str, Any]:
    """The options a reward accepts: its keyword parameters with defaults, minus the call's own."""
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
    where = f"relative paths are resolved against {base_dir}" if base_dir is not None else "relative to the current directory"
    if not path.is_file():
        raise RewardSpecError(
            f"reward {spec!r}: file not found: {path} ({where}); fix the path in the preset or use an absolute path"
        )
    if not func.isidentifier():
        raise RewardSpecError(f"reward {spec!r}: {func!r} is not a function name (expected 'file.py:function_name')")
    # One module per file path, loaded once; a hash keeps same-named files apart.
    mod_name = "grpo_user_reward_" + path.stem + "_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module = sys.modules.get(mod_name)
    if module is None:
        try:
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001
            sys.modules.pop(mod_name, None)
            raise RewardSpecError(
                f"reward {spec!r}: importing {path} failed: {type(e).__name__}: {e}; fix the file"
            ) from e
    fn = getattr(module, func, None)
    if fn is None or not callable(fn):
        names = sorted(
            n for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod_name
        )
        found = "is not callable" if fn is not None else "is not defined"
        hint = difflib.get_close_matches(func, names, n=1)
        raise RewardSpecError(
            f"reward {spec!r}: {func!r} {found} in {path}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + (f" (functions there: {', '.join(names)})" if names else " (the file defines no functions)")
        )
    if inspect.iscoroutinefunction(fn):
        raise RewardSpecError(f"reward {spec!r}: async functions are not supported; make {func!r} a plain def")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn, func
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        raise RewardSpecError(
            f"reward {spec!r}: {func}{sig} must accept **kwargs; the trainer passes prompts, completions, answer, "
            f"completion_ids and other dataset columns as keywords. Write: def {func}(prompts, completions, answer, **kwargs)"
        )
    return fn, func


def resolve_reward(spec: str, options: dict | None = None, base_dir: Path | None = None) -> Callable[..., Any]:
    """The reward function for a preset's spec, with its options bound.

    ``spec``: a built-in name (see ``REWARDS``) or ``path/to/file.py:function_name``
    (relative to ``base_dir``, the preset's folder). ``options``: keyword
    options for that reward; a ``weight`` key is ignored (the engine's).
    Raises RewardSpecError naming the reward and the fix.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise RewardSpecError(f"reward spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in REWARDS:
        fn, name = REWARDS[spec], spec
    elif _is_file_spec(spec):
        fn, name = _load_file(spec, base_dir)
    else:
        close = difflib.get_close_matches(spec, list(REWARDS), n=1, cutoff=0.5)
        raise RewardSpecError(
            f"unknown reward {spec!r}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f". Built-in rewards: {', '.join(REWARDS)}. A user reward is 'path/to/file.py:function_name'."
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
    validate = getattr(fn, "validate_options", None)
    if validate is not None:
        try:
            validate(**options)
        except (TypeError, ValueError) as e:
            raise RewardSpecError(f"reward {name!r}: bad options {options}: {e}") from e
    bound = functools.partial(fn, **options)
    functools.update_wrapper(bound, fn)
    return bound
