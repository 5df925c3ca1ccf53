"""User reward functions run in a worker process, never in the trainer.

A user's ``file.py:function`` or ``package.module:function`` is imported and
called in its own process (``_user_reward_worker.py``, through
``worker.WorkerProcess``, the mechanism math-verify uses). An endless loop or ``sys.exit`` while importing is reported
within ``GRPO_TUI_REWARD_IMPORT_TIMEOUT_S`` seconds (default 30) as a
RewardSpecError naming the file; at training time a call that overruns its
deadline is killed (the worker restarts on the next call, so later steps run at
full speed), a call that exits or crashes fails that call only. GuardedReward
counts both as reward failures.

The function is called with keyword arguments only, as TRL calls it. What
crosses the pipe is JSON: prompts, completions and dataset columns as they
are; ``trainer_state`` as a plain namespace of its fields. ``log_extra`` and
``log_metric`` are stand-ins in the worker that record their calls; the reply
carries them back and they are made on the trainer's own callbacks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from grpo_tui.engine.log_cap import check_now

from .worker import WorkerError, WorkerProcess, WorkerStartError, WorkerTimeout

# The arguments TRL passes a reward function: never a user option of it
CALL_PARAMS = frozenset(
    {
        "prompts",
        "completions",
        "answer",
        "solution",
        "completion_ids",
        "prompt_format",
        "trainer_state",
        "log_extra",
        "log_metric",
        "environments",
    }
)

IMPORT_TIMEOUT_ENV = "GRPO_TUI_REWARD_IMPORT_TIMEOUT_S"
DEFAULT_IMPORT_TIMEOUT_S = 30.0
_SCRIPT = Path(__file__).with_name("_user_reward_worker.py")
_CALLBACKS = ("log_extra", "log_metric")  # functions of the trainer: the worker records calls, we replay them


class RewardCallError(RuntimeError):
    """The user's function raised (or exited, or crashed) in its worker; the message says how."""


def import_timeout_s() -> float:
    try:
        return float(os.environ.get(IMPORT_TIMEOUT_ENV, DEFAULT_IMPORT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_IMPORT_TIMEOUT_S


def _plain(value: Any) -> Any:
    """JSON for what a reward may receive: dataclasses (TrainerState) as dicts, the unknown as repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # numpy / torch
        return value.tolist()
    return repr(value)


def _plain_state(state: Any) -> tuple[Any, list | None]:
    """trainer_state as JSON without its log_history, and that history as it is: it grows by a record a step,
    so only the part a call sends is converted (`_request`)."""
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        history = getattr(state, "log_history", None)
        if isinstance(history, list):
            fields = dataclasses.fields(state)
            return {f.name: _plain(getattr(state, f.name)) for f in fields if f.name != "log_history"}, history
    elif isinstance(state, dict) and isinstance(state.get("log_history"), list):
        return {str(k): _plain(v) for k, v in state.items() if k != "log_history"}, state["log_history"]
    return _plain(state), None


class ProcessReward:
    """Callable like a reward function; each call is one request to its worker process.

    ``kind`` is "file" (``target`` a path, imported under ``module_name``) or "module" (``target`` a dotted
    module path, imported by name from the installed packages).
    """

    def __init__(self, target: Path | str, func: str, module_name: str, kind: str = "file") -> None:
        self.path = Path(target) if kind == "file" else None
        self.target, self.kind, self.func, self.__name__ = str(target), kind, func, func
        self.options: dict[str, Any] = {}
        self._worker = WorkerProcess(
            [sys.executable, "-u", str(_SCRIPT), kind, str(target), func, module_name],
            startup_timeout_s=import_timeout_s(),
            stderr=None,
        )
        self.info = self._hello()

    def _hello(self) -> dict[str, Any]:
        try:
            line = self._worker.start()
        except WorkerStartError as e:
            raise RewardCallError(
                f"importing {self.target} failed: its worker process {e} "
                f"(an endless loop, a wait or an exit at import time?)"
            ) from None
        info = json.loads(line)
        if "import_error" in info:
            self._worker.kill()
            raise RewardCallError(f"importing {self.target} failed: {info['import_error']}")
        return info

    def bind(self, options: dict[str, Any]) -> ProcessReward:
        """The same function with keyword options fixed (sent with every call)."""
        bound = object.__new__(ProcessReward)
        bound.__dict__.update(self.__dict__)
        bound.options = dict(options)
        return bound

    @property
    def declared_options(self) -> dict[str, Any]:
        return {k: v for k, v in (self.info.get("options") or {}).items() if k not in CALL_PARAMS}

    def call_with_deadline(self, deadline_s: float | None, kwargs: dict) -> Any:
        """Raises WorkerTimeout past the deadline (the worker is killed), RewardCallError if the call failed."""
        plain: dict[str, Any] = {}
        history: list | None = None
        for k, v in kwargs.items():
            if k in _CALLBACKS or callable(v):
                continue
            if k == "trainer_state":
                plain[k], history = _plain_state(v)
            else:
                plain[k] = _plain(v)
        reply = self._request(plain, kwargs, history, getattr(self._worker, "history_sent", 0), deadline_s)
        if reply.get("resend"):  # a fresh worker process (restarted after a timeout) holds no history yet
            reply = self._request(plain, kwargs, history, 0, deadline_s)
        if history is not None:
            self._worker.history_sent = len(history)
        for name, args in reply.get("calls") or []:  # log_extra / log_metric calls the function made
            if name in _CALLBACKS and callable(kwargs.get(name)):
                kwargs[name](*args)
        if "exc" in reply:
            raise RewardCallError(reply["exc"])
        return reply["ok"]

    def _request(self, plain: dict, kwargs: dict, history: list | None, sent: int, deadline_s: float | None) -> dict:
        if history is not None:
            # trainer_state.log_history grows by a record a step: the worker keeps it, each call sends what is new
            sent = sent if sent <= len(history) else 0
            part = _plain(history[sent:])
            plain = dict(plain, trainer_state=dict(plain["trainer_state"], log_history=part, log_history_from=sent))
        req = {
            "options": self.options,
            "kwargs": plain,
            "callbacks": [k for k in _CALLBACKS if callable(kwargs.get(k))],
        }
        try:
            line = self._worker.request(json.dumps(req, allow_nan=True).encode(), deadline_s)
        except WorkerTimeout:
            raise
        except WorkerError as e:
            raise RewardCallError(f"{self.func} in {self.target}: {e}") from None
        finally:
            check_now()  # what the call printed is already in the log: keep the log under its cap now
        return json.loads(line)

    def __call__(self, **kwargs: Any) -> Any:
        return self.call_with_deadline(None, kwargs)

    def close(self) -> None:
        self._worker.close()

    @property
    def pid(self) -> int | None:
        return self._worker.proc.pid if self._worker.proc is not None else None
