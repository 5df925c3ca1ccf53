"""Import hygiene (DESIGN.md): engine/ and rundir/ never load Textual or plotext, rundir/ never loads torch,
and rundir/ imports neither engine/ nor tui/. Whole packages are walked, so a new module is covered at once."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

from conftest import REPO

UI_PACKAGES = ("textual", "plotext", "textual_plotext")
# The headless path of the UI package: what `grpo-tui --no-ui`, `presets`, `eval` and `rewards` import.
HEADLESS_TUI = ["tui", "tui.cli", "tui.launcher", "tui.headless", "tui.console"]


def modules_of(package: str) -> list[str]:
    root = REPO / package
    names = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=f"{package}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(info.name)
    return names


def loaded_after_import(modules: list[str]) -> set[str]:
    code = ("import sys, json\n"
            f"for m in {modules!r}: __import__(m)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_engine_rundir_and_headless_never_import_textual():
    mods = modules_of("engine") + modules_of("rundir") + HEADLESS_TUI
    tui_console = [m for m in modules_of("tui") if m.startswith("tui.console")]
    assert len(mods) > 25, mods
    bad = loaded_after_import(mods + tui_console) & set(UI_PACKAGES)
    assert bad == set()


def test_rundir_is_a_leaf():
    loaded = loaded_after_import(modules_of("rundir"))
    assert not loaded & {"torch", "textual", "plotext", "engine", "tui", "transformers", "trl"}, loaded


def test_no_engine_or_rundir_module_mentions_textual():
    offenders = [p for pkg in ("engine", "rundir") for p in (REPO / pkg).rglob("*.py")
                 if any(line.lstrip().startswith(("import textual", "from textual"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
