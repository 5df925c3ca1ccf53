"""Turning a preset's reward spec (a built-in name or ``file.py:function``) into a function."""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
from pathlib import Path
from typing import Any, Callable

from grpo_tui.rundir.errors import GrpoTuiError
from grpo_tui.rundir.layout import trusted_file_problem

from .builtin import REWARDS
from .isolated import ProcessReward, RewardCallError

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
    info = fn.info
    if not info["callable"]:
        fn.close()
        names = info["functions"]
        found = "is not callable" if info["defined"] else "is not defined"
        hint = difflib.get_close_matches(func, names, n=1)
        raise RewardSpecError(
            f"reward {spec!r}: {func!r} {found} in {path}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + (f" (functions there: {', '.join(names)})" if names else " (the file defines no functions)")
        )
    if info["coroutine"]:
        fn.close()
        raise RewardSpecError(f"reward {spec!r}: async functions are not supported; make {func!r} a plain def")
    if not info["var_kw"]:
        fn.close()
        raise RewardSpecError(
            f"reward {spec!r}: {func}{info['signature']} must accept **kwargs; the trainer passes prompts, "
            f"completions, answer, completion_ids and other dataset columns as keywords. "
            f"Write: def {func}(prompts, completions, answer, **kwargs)"
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
