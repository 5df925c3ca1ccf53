"""The headless printer (`--no-ui`) shows KL, entropy and grad norm per step, and health warnings and live
knob changes in its run summary; it only displays the engine's events."""

from __future__ import annotations

from rich.console import Console

from grpo_tui.rundir.state import summarize
from grpo_tui.tui.headless import print_summary, step_line

STEP = {
    "type": "step",
    "step": 7,
    "max_steps": 10,
    "metrics": {"reward": 0.5, "kl": 0.0123, "entropy": 1.234, "grad_norm": 0.456},
}


def test_step_line_shows_kl_entropy_and_grad_norm() -> None:
    line = step_line(STEP, [])
    assert "kl 0.0123" in line and "entropy 1.23" in line and "gnorm 0.456" in line
    no_kl = step_line({**STEP, "metrics": {"entropy": 1.0, "grad_norm": None}}, [])
    assert "| kl " not in no_kl, "KL is logged only when beta > 0: no column without it"
    assert "gnorm -" in no_kl


def test_summary_lists_policy_health_and_knob_changes() -> None:
    warn = {
        "type": "health",
        "step": 5,
        "rule": "zero_std",
        "status": "warn",
        "diagnosis": "all groups [red]x",
        "fix": "set [curriculum] dynamic_sampling = true",
    }
    events = [
        {"type": "run_start", "preset": "p", "max_steps": 10, "reward_names": ["correctness"]},
        {**STEP, "step": 1, "metrics": {"entropy": 2.0, "kl": 0.01, "grad_norm": 0.5}},
        STEP,
        warn,
        {"type": "health", "step": 6, "rule": "truncation", "status": "warn", "diagnosis": "d", "fix": "f"},
        {"type": "health", "step": 9, "rule": "truncation", "status": "ok"},
        {"type": "knobs", "step": 6, "values": {"learning_rate": 3e-3}, "previous": {"learning_rate": 1e-4}},
    ]
    s = summarize(events)
    assert list(s.health) == ["zero_std"] and list(s.health_fired) == ["zero_std", "truncation"]
    assert s.unknown_types == 0
    console = Console(width=200, record=True)
    print_summary(console, s, "/runs/x", 0)
    out = console.export_text()
    assert "entropy 2 -> 1.23" in out and "kl last 0.0123, max 0.0123" in out and "grad norm mean 0.478" in out
    assert "zero_std from step 5 (still firing): all groups [red]x; fix: set [curriculum] dynamic_sampling" in out
    assert "truncation from step 6: d; fix: f" in out
    assert "after step 6: learning_rate 0.003" in out
