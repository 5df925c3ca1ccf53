"""How a training run is put together: a short orchestrator, collaborators given at construction, no import cycle."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import SimpleNamespace

from grpo_tui.engine.train import orchestrator
from grpo_tui.engine.train.commands import CommandWatcher
from grpo_tui.engine.train.engine_callback import EngineCallback

ENGINE = Path(orchestrator.__file__).resolve().parents[1]


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, dict]] = []

    def emit(self, type: str, **fields) -> dict:
        self.log.append((type, fields))
        return {"type": type, **fields}

    def state(self, state: str, **fields) -> dict:
        return self.emit("state", state=state, **fields)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_train_is_a_short_orchestrator():
    lines = inspect.getsource(orchestrator.train).splitlines()
    assert len(lines) < 80, len(lines)
    body = "\n".join(lines)
    for step in ("build_model(", "build_dataset(", "build_trainer(", "build_callbacks("):
        assert step in body, step


def test_knobs_does_not_import_the_trainer_module():
    # the callback uses the knobs; apply_knobs.py must not reach back (not even from inside a function)
    assert "grpo_tui.engine.train.engine_callback" not in _imports(ENGINE / "train" / "apply_knobs.py")
    assert "grpo_tui.engine.train.apply_knobs" in _imports(ENGINE / "train" / "engine_callback.py")


def test_command_line_module_leaves_training_to_the_orchestrator():
    run_imports = _imports(ENGINE / "run.py")
    assert "grpo_tui.engine.train.orchestrator" in run_imports
    assert not {"torch", "transformers", "trl"} & {m.split(".")[0] for m in run_imports}
    source = (ENGINE / "run.py").read_text(encoding="utf-8")
    assert "def describe_failure" not in source and "def switch_problem" not in source


def test_live_knobs_are_refused_until_training_begins_then_checked_by_the_callback():
    events = Events()
    watcher = CommandWatcher(Path("/nonexistent"), events)
    trainer = SimpleNamespace(lr_scheduler=None)
    callback = EngineCallback(
        events,
        watcher,
        None,
        [],
        None,
        max_steps=3,
        save_final=False,
        trainer=trainer,
        health=None,
        config_path=None,
        learning_rate=None,
        bound=None,
    )
    assert callback.trainer is trainer
    watcher.submit({"id": "early", "command": "set", "args": {"learning_rate": 1e-5}})
    early = [f for t, f in events.log if t == "command" and f["id"] == "early"]
    assert early[0]["status"] == "rejected" and "once GRPO training runs" in early[0]["detail"]
    callback._emit_memory = lambda step: None  # no memory probe in this test
    callback.on_train_begin(None, SimpleNamespace(global_step=0), None)
    watcher.submit({"id": "typo", "command": "set", "args": {"learning_rat": 1e-5}})
    typo = [f for t, f in events.log if t == "command" and f["id"] == "typo"]
    # now the callback's check (the knob validation) answers, not the "not yet" refusal
    assert typo[0]["status"] == "rejected" and "once GRPO training runs" not in typo[0]["detail"]
    assert "learning_rat" in typo[0]["detail"]
