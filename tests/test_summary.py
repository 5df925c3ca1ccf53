"""The run summary folds events the headless view and the run list read."""

from __future__ import annotations

import io
import re

from rich.console import Console

from grpo_tui.rundir.state import REWARD, ZERO_STD_BEFORE, RunState, fmt_duration, summarize
from grpo_tui.rundir.summary_stats import mean_and_stderr
from grpo_tui.tui.headless import print_summary


def test_summary_with_dynamic_sampling_and_eval(tmp_path):
    events = [{"type": "run_start", "preset": "p", "model": "m", "max_steps": 2, "reward_names": ["a"]}]
    for step, (z, zb) in enumerate([(0.0, 0.5), (0.25, 0.75)], start=1):
        events.append(
            {
                "type": "step",
                "step": step,
                "max_steps": 2,
                "correct_frac": 0.5,
                "metrics": {
                    "reward": float(step),
                    "frac_reward_zero_std": z,
                    "dynamic_sampling/frac_reward_zero_std_before": zb,
                },
            }
        )
    events += [
        {"type": "eval", "step": 0, "accuracy": 0.35, "ci_low": 0.26, "ci_high": 0.45},
        {"type": "eval", "step": 2, "accuracy": 0.63, "ci_low": 0.53, "ci_high": 0.72},
        {"type": "sft_step", "step": 1},
        {"type": "stage", "stage": "grpo"},
        {"type": "run_end", "status": "finished", "exit_code": 0, "elapsed_s": 5},
    ]
    s = summarize(events)
    assert s.values(REWARD) == [1.0, 2.0] and s.values(ZERO_STD_BEFORE) == [0.5, 0.75] and len(s.evals) == 2
    assert s.unknown_types == 0
    out = io.StringIO()
    print_summary(Console(file=out, width=140), s, tmp_path, 0)
    text = out.getvalue()
    assert "0.62 as sampled -> 0.12 on average as trained" in text
    assert "step 0: 0.350" in text and "step 2: 0.630" in text


def test_mean_and_stderr():
    assert mean_and_stderr([1.0, 3.0]) == (2.0, 1.0)
    assert mean_and_stderr([2.0])[1] == 0.0


# ------------------------------------------------------------------ the fold: time across engine starts


def _ev(t: float, type_: str, **fields) -> dict:
    return {"v": 1, "t": t, "type": type_, **fields}


def _steps(t0: float, first: int, last: int, dt: float = 10.0, max_steps: int = 30) -> list[dict]:
    return [
        _ev(
            t0 + (i - first + 1) * dt,
            "step",
            step=i,
            max_steps=max_steps,
            eta_s=(max_steps - i) * dt,
            metrics={"reward": 0.1 * i},
        )
        for i in range(first, last + 1)
    ]


def test_elapsed_adds_up_engine_starts_and_ticks_only_while_active() -> None:
    s = RunState()
    # engine 1: 10 steps in 100 s, then killed (no run_end); resumed an hour later
    s.apply(
        [_ev(1000, "run_start", preset="a", max_steps=30), _ev(1000, "state", state="running"), *_steps(1000, 1, 10)]
    )
    assert s.elapsed() == 100 and s.elapsed(now=1130) == 130  # ticks between steps
    s.apply(
        [_ev(5000, "run_start", preset="a", resumed=True), _ev(5000, "state", state="running"), *_steps(5000, 9, 20)]
    )  # steps 9 and 10 again, from the checkpoint at step 8
    assert s.steps == list(range(1, 21)) and s.run_starts == 2
    assert s.elapsed() == 100 + 120
    # a preset switch: the same process re-executes; the seconds in between count
    s.apply(
        [
            _ev(5125, "run_end", status="switched", step=20, next_preset="b"),
            _ev(5130, "run_start", preset="b", resumed=True),
            *_steps(5130, 21, 30),
            _ev(5235, "state", state="finished", step=30),
            _ev(5235, "run_end", status="finished", step=30),
        ]
    )
    assert s.preset == "b" and s.run_starts == 3 and not s.active
    assert s.elapsed() == 100 + 235 and s.elapsed(now=9999) == 335  # over: no more ticking
    assert fmt_duration(s.elapsed()) == "5m35s"


def test_eta_counts_down_while_running_and_clears_when_the_run_is_over() -> None:
    s = RunState()
    s.apply([_ev(1000, "run_start", preset="a"), _ev(1000, "state", state="running"), *_steps(1000, 1, 3)])
    assert s.eta() == 270 and s.eta(now=1040) == 260
    s.apply([_ev(1041, "state", state="paused", step=3)])
    assert s.eta(now=1100) == 270  # paused: the estimate waits
    s.engine_gone = True
    assert s.eta(now=1100) is None and s.elapsed(now=2000) == 41  # a dead engine's clock stops
    s.engine_gone = False
    s.apply([_ev(1050, "state", state="failed", step=3), _ev(1050, "run_end", status="failed", step=3)])
    assert s.eta(now=1100) is None and s.failed


def test_checkpointing_shows_from_the_step_end_until_the_checkpoint_is_written() -> None:
    s = RunState()
    s.apply([_ev(1, "run_start", preset="a"), _ev(1, "state", state="running", step=0), *_steps(1, 1, 1)])
    # the watcher accepts the command mid-step and announces the state (no step field)
    s.apply(
        [_ev(12, "command", id="c1", command="checkpoint", status="accepted"), _ev(12, "state", state="checkpointing")]
    )
    assert s.state == "running" and [c.command for c in s.pending_commands()] == ["checkpoint"]
    s.apply(_steps(1, 2, 2))  # the step ends: now the checkpoint is being written
    assert s.state == "checkpointing"
    s.apply([_ev(25, "checkpoint", step=2, path="/r/checkpoints/checkpoint-2", reason="command")])
    assert s.state == "running" and s.checkpoints == 1
    s.apply(
        [_ev(25, "command", id="c1", command="checkpoint", status="done"), _ev(25, "state", state="running", step=2)]
    )
    assert s.state == "running" and s.pending_commands() == []
    # a checkpoint while paused comes back to paused
    s.apply([_ev(30, "state", state="paused", step=2), _ev(31, "state", state="checkpointing", step=2)])
    assert s.state == "checkpointing"
    s.apply([_ev(32, "checkpoint", step=2, path="/r/checkpoints/checkpoint-2", reason="command")])
    assert s.state == "paused"


def test_the_reward_line_says_what_it_averages(tmp_path) -> None:
    def text(n: int) -> str:
        s = summarize([{"type": "step", "step": i, "metrics": {"reward": float(i)}} for i in range(1, n + 1)])
        out = io.StringIO()
        print_summary(Console(file=out, width=160), s, tmp_path, 0)
        return out.getvalue()

    assert "1.000 (one step)" in text(1) and "first" not in text(1)
    assert "first step 1.000  ->  last step 4.000" in text(4)
    assert "first 2 steps 1.500 ± 0.500  ->  last 2 steps 9.500 ± 0.500" in text(10)


def test_unknown_event_types_are_counted_not_fatal() -> None:
    s = summarize([{"type": "from_the_future", "x": 1}, {"v": 7, "type": "step", "step": 1, "shiny": True}])
    assert s.unknown_types == 1 and s.newer_schema == 1 and s.steps == [1]


# ------------------------------------------------------------------ the headless printer, end to end

ENGINE_STAND_IN = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from support.synthetic import SyntheticRun
run = SyntheticRun(Path(sys.argv[2]), max_steps=60, G=2, groups=1)
run.start(pid=os.getpid())
run.run.pid_file.write_text(str(os.getpid()))
for _ in range(3):
    time.sleep(0.7)
    run.write_step()
time.sleep(600)
"""


def test_headless_summary_after_the_engine_is_killed(tmp_path) -> None:
    """kill -9: no run_end. The summary says killed, with the steps and the time the run had."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from grpo_tui.rundir.event_reader import read_events
    from grpo_tui.tui.headless import follow
    from grpo_tui.tui.launcher import EngineProcess

    tests = Path(__file__).resolve().parent  # the stand-in imports the synthetic run from tests/support
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", ENGINE_STAND_IN, str(tests), str(run_dir)])
    try:
        deadline = time.monotonic() + 60
        while sum(e["type"] == "step" for e in read_events(run_dir / "events.jsonl")) < 3:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        out = io.StringIO()
        code = follow(
            run_dir, EngineProcess(proc, run_dir, tmp_path / "preflight.log"), Console(file=out, width=160), poll_s=0.05
        )
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.getvalue()
    assert code == -9
    assert "killed by signal 9 at step 3 (no run_end)  (engine exit code -9)" in text
    assert "status running" not in text and "in -" not in text
    assert re.search(r"steps\W+3/60  in [1-9][0-9]*s", text), text


def test_attached_headless_lists_commands_switches_and_engine_starts(tmp_path) -> None:
    """What `attach --no-ui` prints of a run that was paused, resumed and switched (the same lines as live)."""
    from support.synthetic import SyntheticRun

    from grpo_tui.tui.headless import follow

    run = SyntheticRun(tmp_path / "run", max_steps=4)
    run.start()
    run.write_step()
    e = run.events
    e.emit("command", id="p", command="pause", status="accepted")
    e.state("pausing")
    e.state("paused", step=1)
    e.emit("command", id="p", command="pause", status="done")
    e.emit("command", id="r", command="resume", status="done")
    e.state("running", step=1)
    e.emit("command", id="w", command="switch_preset", status="accepted")
    e.state("checkpointing")
    run.write_step()
    e.emit("checkpoint", step=2, path="/x/checkpoint-2", reason="switch")
    e.emit("command", id="w", command="switch_preset", status="done", detail="continuing under preset b")
    e.state("starting", step=2, detail="switching to preset b")
    e.emit("run_end", status="switched", step=2, exit_code=0, elapsed_s=1.0, next_preset="b")
    e.emit("run_start", run_dir=str(run.run.root), preset="b", resumed=True, resume_from="/x/checkpoint-2")
    e.emit("command", id="bad", command="stop", status="rejected", detail="[bold]not now[/bold]")
    run.write_step()
    run.finish()
    run.close()
    out = io.StringIO()
    assert follow(run.run.root, None, Console(file=out, width=160), poll_s=0.05) == 0
    text = out.getvalue()
    for line in (
        "command pause done",
        "[paused]",
        "command resume done",
        "command switch_preset done: continuing under preset b",
        "switching to preset b after step 2",
        "engine start 2: preset b, resuming from /x/checkpoint-2",
        "command stop rejected: [bold]not now[/bold]",
    ):
        assert line in text, line
    assert "finished" in text and "over 2 engine starts" in text


def test_summary_names_the_dominant_phase_and_its_remedy(tmp_path):
    events = [{"type": "run_start", "preset": "p", "model": "m", "max_steps": 2, "reward_names": ["a"]}]
    for step in (1, 2):
        events.append(
            {
                "type": "step",
                "step": step,
                "max_steps": 2,
                "step_time_s": 10.0,
                "metrics": {"reward": 1.0},
                "phase_s": {
                    "generation": 6.5,
                    "rewards": 0.1,
                    "logprobs": 0.0,
                    "forward_backward": 3.0,
                    "optimizer": 0.3,
                    "recording": 0.05,
                    "checkpoint": 0.0,
                    "other": 0.05,
                },
            }
        )
    s = summarize(events)
    assert s.phase_s["generation"] == 13.0 and s.phase_s["forward_backward"] == 6.0
    out = io.StringIO()
    print_summary(Console(file=out, width=200), s, tmp_path, 0)
    text = out.getvalue()
    assert "generate 65% · fwd+bwd 30%" in text
    assert "generation (65%): cut it with vLLM (train.use_vllm) on a GPU, train.share_prompt_prefix" in text
    # a remedy the run already applies is not offered
    events[0]["config"] = {"train": {"share_prompt_prefix": True, "use_vllm": False}}
    out = io.StringIO()
    print_summary(Console(file=out, width=200), summarize(events), tmp_path, 0)
    text = " ".join(out.getvalue().split())
    assert "cut it with vLLM (train.use_vllm) on a GPU, a smaller G (num_generations)" in text
    assert "share_prompt_prefix" not in text
