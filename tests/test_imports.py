"""Import hygiene (DESIGN.md): engine/ and rundir/ never load Textual or plotext, rundir/ never loads torch,
and rundir/ imports neither engine/ nor tui/. Whole packages are walked, so a new module is covered at once."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

from support.paths import REPO

UI_PACKAGES = ("textual", "plotext", "textual_plotext")
# The headless path of the UI package: what `grpo-tui --no-ui`, `presets`, `eval` and `rewards` import.
HEADLESS_TUI = [f"grpo_tui.{m}" for m in ("tui", "tui.cli", "tui.launcher", "tui.headless", "tui.console")]


def modules_of(package: str) -> list[str]:
    root = REPO / package
    names = [f"grpo_tui.{package}"]
    for info in pkgutil.walk_packages([str(root)], prefix=f"grpo_tui.{package}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(info.name)
    return names


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import sys, json\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}\n"
        "                        | {m.split('.')[1] for m in sys.modules if m.startswith('grpo_tui.')})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_engine_rundir_and_headless_never_import_textual():
    mods = modules_of("engine") + modules_of("rundir") + HEADLESS_TUI
    tui_console = [m for m in modules_of("tui") if m.startswith("grpo_tui.tui.console")]
    assert len(mods) > 25, mods
    bad = loaded_after_import(mods + tui_console) & set(UI_PACKAGES)
    assert bad == set()


def test_rundir_is_a_leaf():
    loaded = loaded_after_import(modules_of("rundir"))
    assert not loaded & {"torch", "textual", "plotext", "engine", "tui", "transformers", "trl"}, loaded


def test_no_engine_or_rundir_module_mentions_textual():
    offenders = [
        p
        for pkg in ("engine", "rundir")
        for p in (REPO / pkg).rglob("*.py")
        if any(line.lstrip().startswith(("import textual", "from textual")) for line in p.read_text().splitlines())
    ]
    assert offenders == []


# ------------------------------------------------------------ one home for the run directory's names

import ast  # noqa: E402

# Files of a run directory: only rundir/names.py may spell them (rundir.layout.RunDir builds each path).
RUN_FILES = {
    "config.json",
    "events.jsonl",
    "rollouts.jsonl",
    "engine.log",
    "engine.pid",
    "engine.lock",
    "trainer_state.json",
    "pass_rates.jsonl",
    "engine_rng_state.json",
    "generation_buffer.pt",
}
# Directories of a run directory: common words elsewhere (config sections, event types, views), so they count
# only where they build or test a path: an operand of `/`, or compared with a path's `.name`.
RUN_DIRS = {"control", "checkpoints", "rollouts", "sft", "curriculum", "eval", "trackers"}
RUN_PREFIXES = ("before-restart", "engine.rank")
# A saved MODEL directory (Hugging Face weights) also holds a config.json; these files mean that one.
MODEL_CONFIG_JSON = {
    "engine/models.py": "saved and downloaded model weights",
    "engine/plan/model_source.py": "the model's config.json sizes the model",
    "engine/offline_models.py": "the converted offline model's config.json",
    "engine/preflight.py": "[model] name pointing at a model directory",
    "engine/eval/resolve.py": "--model DIR: a saved model directory",
    "engine/rewards/reward_model.py": "model:DIR, a saved reward model directory",
}
# Whole files allowed to spell run-directory names, with the reason.
SPELLS_NAMES = {"bench/reward_hang.py": "benchmarks any checkout given by --tree, so imports nothing from this one"}


def _pieces(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def run_dir_names_in(source: str, allow_config_json: bool = False) -> list[str]:
    """The run-directory names a module's code spells (docstrings and prose messages don't count)."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Constant, ast.JoinedStr)):
            for text in _pieces(node):
                if text in RUN_FILES and not (allow_config_json and text == "config.json"):
                    found.append(f"{node.lineno}: {text!r}")
                elif text.startswith(RUN_PREFIXES):
                    found.append(f"{node.lineno}: {text!r}")
        operands: list[ast.AST] = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            operands = [node.left, node.right]
        elif isinstance(node, ast.Compare) and any(
            isinstance(x, ast.Attribute) and x.attr == "name" for x in [node.left, *node.comparators]
        ):
            operands = [node.left, *node.comparators]
        for op in operands:
            for text in _pieces(op):
                if text in RUN_DIRS:
                    found.append(f"{op.lineno}: {text!r} as a path")
    return found


def test_the_scan_finds_run_directory_names():
    # the test below must be able to fail: each of these is how code used to spell the layout
    assert run_dir_names_in('p = run / "events.jsonl"')
    assert run_dir_names_in('p = root / "sft" / "model"')
    assert run_dir_names_in('ok = path.parent.name == "checkpoints"')
    assert run_dir_names_in('log = root / f"engine.rank{rank}.log"')
    assert run_dir_names_in('d = time.strftime("before-restart-%Y")')
    assert run_dir_names_in('p = model_dir / "config.json"') and not run_dir_names_in(
        'p = model_dir / "config.json"', allow_config_json=True
    )
    assert not run_dir_names_in('emit("stage", stage="sft")\nsections = {"eval": 1}\n"""no events.jsonl here"""')


def test_only_rundir_spells_the_run_directory_layout():
    offenders = {}
    for pkg in ("engine", "tui", "bench"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in SPELLS_NAMES:
                continue
            hits = run_dir_names_in(path.read_text(encoding="utf-8"), allow_config_json=rel in MODEL_CONFIG_JSON)
            if hits:
                offenders[rel] = hits
    assert offenders == {}, f"use rundir.layout.RunDir instead: {offenders}"
    for rel in MODEL_CONFIG_JSON:  # an allowance for a file that no longer needs it would hide a new use
        assert "config.json" in (REPO / rel).read_text(encoding="utf-8"), rel
    for rel in SPELLS_NAMES:
        assert run_dir_names_in((REPO / rel).read_text(encoding="utf-8")), rel


def test_inside_rundir_only_names_spells_the_run_directory_layout():
    spelled = {}
    for path in sorted((REPO / "rundir").rglob("*.py")):
        hits = run_dir_names_in(path.read_text(encoding="utf-8"))
        if hits:
            spelled[path.relative_to(REPO).as_posix()] = hits
    assert list(spelled) == ["rundir/names.py"], f"import these from rundir.names: {spelled}"


def test_preflight_refusal_imports_no_torch(tmp_path):
    """`python -m grpo_tui.engine train` refuses in pre-flight before torch, transformers or TRL load: seconds,
    not tens."""
    code = (
        "import json, sys\n"
        "from engine.run import main\n"
        f"code = main(['train', '--preset', 'gpu24-qwen05b-g16', '--run-dir', {str(tmp_path / 'run')!r}])\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    import json

    code, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 2, proc.stderr
    assert "pre-flight" in proc.stderr
    assert not {"torch", "transformers", "trl", "datasets", "peft"} & set(loaded), loaded
