"""Import hygiene: the engine and the headless path never load Textual or plotext (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

HEADLESS_MODULES = ["engine", "engine.config", "engine.data", "engine.models", "engine.train", "engine.run",
                    "engine.events", "engine.rollouts", "engine.control", "engine.summary", "engine.rewards",
                    "engine.rewards.playground", "engine.memory_estimate", "engine.preset_table", "engine.distributed",
                    "engine.eval", "engine.sft", "engine.curriculum", "engine.dynamic_sampling",
                    "tui", "tui.cli", "tui.launcher", "tui.headless"]


def test_engine_and_headless_never_import_textual():
    code = ("import sys\n"
            f"for m in {HEADLESS_MODULES!r}: __import__(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'plotext', 'textual_plotext'))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_engine_module_mentions_textual():
    offenders = [p for p in (REPO / "engine").rglob("*.py")
                 if any(line.lstrip().startswith(("import textual", "from textual"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
