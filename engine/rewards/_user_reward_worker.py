"""User reward worker process (run as a script by isolated.py; imports nothing of ours but _worker_common).

argv: KIND TARGET FUNCTION MODULE_NAME. KIND "file": imports the file TARGET
as MODULE_NAME; KIND "module": imports the module TARGET by name. Any
exception or exit while importing is reported, never fatal. Then it greets
with one JSON line describing FUNCTION ({"ready": true, "file": ...,
...facts} or {"import_error": "..."}), then answers one JSON request per
stdin line: {"kwargs": {...}, "options": {...}, "callbacks": [names]} ->
{"ok": [values], "calls": [[name, args]]} or {"exc": "Type: message at
file:line", "calls": [...]}. The function is called with keyword arguments
only, as TRL calls it (an ``async def`` one is awaited); "callbacks" names the trainer functions (log_extra,
log_metric) to stand in for: their calls are sent back to be made there. The
user's own prints go to stderr (the engine's log): stdout is the protocol.
"""

import asyncio
import importlib.util
import inspect
import json
import os
import sys
import traceback
import types


def _worker_common():
    """_worker_common.py beside this script, loaded by path: the engine runs with PYTHONSAFEPATH, so
    this folder is not on sys.path (and it should not be: the user's code must not import our files)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker_common.py")
    spec = importlib.util.spec_from_file_location("_grpo_tui_worker_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _error_line(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"[:1000]


def _jsonable(v):
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return repr(v)


def _recorder(name: str, calls: list):
    """A stand-in for the trainer's log_extra/log_metric: records (name, args) to replay in the trainer."""

    def record(*args):
        calls.append([name, [_jsonable(a) for a in args]])

    record.__name__ = name
    return record


def _describe(module, func: str) -> dict:
    fn = getattr(module, func, None)
    names = sorted(
        n
        for n, v in vars(module).items()
        if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
    )
    out = {
        "ready": True,
        "file": getattr(module, "__file__", None),
        "defined": fn is not None,
        "callable": callable(fn),
        "functions": names,
        "coroutine": inspect.iscoroutinefunction(fn),
        "signature": None,
        "var_kw": True,
        "options": {},
    }
    if callable(fn):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return out
        out["signature"] = str(sig)
        out["var_kw"] = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
        out["options"] = {
            p.name: _jsonable(p.default)
            for p in sig.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is not p.empty  # the parent leaves out the ones TRL passes (isolated.CALL_PARAMS)
        }
    return out


def main() -> int:
    tie_to_parent = _worker_common().tie_to_parent

    tie_to_parent()
    kind, target, func, mod_name = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the reward's prints must not corrupt the protocol
    sys.stdout = sys.stderr
    try:
        if kind == "module":
            module = importlib.import_module(target)
        else:
            spec = importlib.util.spec_from_file_location(mod_name, target)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        hello = _describe(module, func)
    except BaseException as e:  # noqa: BLE001 - sys.exit() at import time is an error to report too
        hello = {"import_error": _error_line(e)}
    proto.write(json.dumps(hello) + "\n")
    proto.flush()
    if "import_error" in hello:
        return 0
    fn = getattr(module, func)
    history: list = []  # trainer_state.log_history: each request carries only the records added since the last
    for line in sys.stdin:
        calls = []
        try:
            req = json.loads(line)
            kwargs = dict(req.get("kwargs") or {}, **(req.get("options") or {}))
            state = kwargs.get("trainer_state")
            if isinstance(state, dict):
                if "log_history_from" in state:
                    start = state.pop("log_history_from")
                    if start > len(history):  # this process started after the parent sent the earlier records
                        proto.write(json.dumps({"resend": True}) + "\n")
                        proto.flush()
                        continue
                    history = history[:start] + list(state.get("log_history") or [])
                    state["log_history"] = list(history)  # a copy: the function may change what it gets
                kwargs["trainer_state"] = types.SimpleNamespace(**state)
            for name in req.get("callbacks") or []:
                kwargs[name] = _recorder(name, calls)
            value = fn(**kwargs)
            if inspect.iscoroutine(value):  # an `async def` reward: TRL awaits it, so do we (one call at a time)
                value = asyncio.run(value)
            if value is not None and not isinstance(value, (str, bytes)):
                try:
                    value = [
                        v
                        if v is None or isinstance(v, (bool, int, float, str))
                        else (float(v) if hasattr(v, "__float__") else repr(v))
                        for v in value
                    ]
                except TypeError:
                    reply = {"exc": f"TypeError: returned {type(value).__name__}, not a list of floats"}
                    value = None
                else:
                    reply = {"ok": value}
            else:
                reply = {"ok": None} if value is None else {"exc": f"TypeError: returned {type(value).__name__}"}
        except BaseException as e:  # noqa: BLE001 - sys.exit() in a reward is a failure of that call
            reply = {"exc": _error_line(e)}
        reply["calls"] = calls
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
