"""math-verify worker process (run as a script by mathverify.py; imports nothing of ours).

Protocol: one JSON object per line on stdin, {"p": predicted, "g": gold};
one per line on stdout, {"ok": true|false} or {"err": "..."}. Prints "ready"
once math-verify is imported. math-verify's own signal-based timeouts are
disabled (parsing_timeout=None, timeout_seconds=None): the parent enforces the
deadline by killing this process, which also stops work stuck in C code.
"""

import functools
import json
import logging
import os
import sys


def _worker_common():
    """_worker_common.py beside this script, loaded by path: the engine runs with PYTHONSAFEPATH, so
    this folder is not on sys.path (and it should not be: the user's code must not import our files)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker_common.py")
    spec = importlib.util.spec_from_file_location("_grpo_tui_worker_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wrap(s: str) -> str:
    s = s.strip()
    if "\\boxed" in s or s.startswith("$"):
        return s
    return "\\boxed{" + s + "}"


def _tie_to_parent() -> None:
    tie_to_parent = _worker_common().tie_to_parent

    tie_to_parent(int(os.environ.get("GRPO_TUI_MATHVERIFY_MEM_MB", "4096")))


def main() -> int:
    _tie_to_parent()
    logging.disable(logging.WARNING)
    from math_verify import parse as _parse
    from math_verify import verify

    @functools.lru_cache(maxsize=4096)  # golds repeat across a group; parsed sympy values are immutable
    def parse(text: str, parsing_timeout=None):
        return _parse(text, parsing_timeout=parsing_timeout)

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            gold = parse(_wrap(req["g"]), parsing_timeout=None)
            pred = parse(_wrap(req["p"]), parsing_timeout=None)
            ok = bool(gold) and bool(pred) and verify(gold, pred, timeout_seconds=None)
            out.write('{"ok": true}\n' if ok else '{"ok": false}\n')
        except Exception as e:  # noqa: BLE001 - reported to the parent, never fatal here
            out.write(json.dumps({"err": f"{type(e).__name__}: {e}"[:300]}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
