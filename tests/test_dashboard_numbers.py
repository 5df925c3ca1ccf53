"""Numbers that mean what they say: the same windowed means in the summary and compare, live knob changes with
their step, parameter counts, checkpoint counts, remedies that fit the model, curves that don't invent zeros."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console
from support.synthetic import write_synthetic_run

from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.state import REWARD, RunState
from grpo_tui.rundir.summary_stats import trend


def _run(root: Path, steps: int, seed: int) -> Path:
    write_synthetic_run(root, steps, seed=seed, max_steps=steps)
    return root


def test_compare_and_the_summary_quote_the_same_windowed_means(tmp_path: Path) -> None:
    from grpo_tui.tui.console.compare import load_runs, print_comparison
    from grpo_tui.tui.headless import print_summary

    runs = [_run(tmp_path / f"r{i}", 35, seed=i) for i in (1, 2)]
    out = io.StringIO()
    print_comparison(load_runs(runs)[0], Console(file=out, width=240))
    compared = out.getvalue()
    for run in runs:
        s = RunState()
        s.apply(read_events(run / "events.jsonl"))
        w = trend(s.values(REWARD))
        assert w.window == 7 and w.first != s.values(REWARD)[0]  # a mean over 7 steps, not the first step
        summary = io.StringIO()
        print_summary(Console(file=summary, width=200), s, run, 0)
        assert f"first 7 steps {w.first:.3f}" in summary.getvalue()
        assert f"last 7 steps {w.last:.3f}" in summary.getvalue()
        assert f"{w.first:.3f}→{w.last:.3f}" in compared


def test_the_run_list_compare_and_the_summary_agree_on_a_long_resumed_run(tmp_path: Path) -> None:
    from grpo_tui.rundir.event_writer import EventWriter
    from grpo_tui.rundir.state import HEAD_BYTES, TAIL_BYTES
    from grpo_tui.tui.browser.runs import list_runs
    from grpo_tui.tui.browser.screens.run_list import reward_cell
    from grpo_tui.tui.console.compare import load_runs, print_comparison
    from grpo_tui.tui.headless import print_summary

    root = tmp_path / "runs"
    runs = [_run(root / "long", 400, seed=1), _run(root / "short", 35, seed=2)]
    # a resume redoes steps 391-400: the redone steps replace the first try everywhere
    w = EventWriter(runs[0] / "events.jsonl")
    for step in range(391, 401):
        w.emit("step", step=step, max_steps=400, metrics={"reward": 9.0})
    w.close()
    assert (runs[0] / "events.jsonl").stat().st_size > HEAD_BYTES + TAIL_BYTES  # the run list reads all of it
    listed = {r.path.name: reward_cell(r.reward_trend).plain for r in list_runs(root)}
    out = io.StringIO()
    print_comparison(load_runs(runs)[0], Console(file=out, width=240))
    for run in runs:
        s = RunState()
        s.apply(read_events(run / "events.jsonl"))
        w = trend(s.values(REWARD))
        assert w.first != s.values(REWARD)[0] and w.last != s.values(REWARD)[-1]  # means, not single steps
        summary = io.StringIO()
        print_summary(Console(file=summary, width=200), s, run, 0)
        assert f"first {w.window} steps {w.first:.3f}" in summary.getvalue()
        assert f"last {w.window} steps {w.last:.3f}" in summary.getvalue()
        assert f"{w.first:.3f}→{w.last:.3f}" in out.getvalue()
        assert listed[run.name] == f"{w.first:.3f}→{w.last:.3f}"


def test_a_knob_changed_live_is_shown_with_the_step_it_took_effect(tmp_path: Path) -> None:
    from grpo_tui.rundir.event_writer import EventWriter
    from grpo_tui.tui.console.compare import config_differences, load_runs

    runs = [_run(tmp_path / f"r{i}", 6, seed=i) for i in (1, 2)]
    for run in runs:
        (run / "config.json").write_text(json.dumps({"train": {"learning_rate": 0.0002}}))
    w = EventWriter(runs[1] / "events.jsonl")
    w.emit("knobs", step=3, id="c1", values={"learning_rate": 0.0002}, previous={"learning_rate": 0.0001})
    w.close()
    diffs = dict(config_differences(load_runs(runs)[0]))
    assert diffs["train.learning_rate"] == ["0.0002", "0.0002 (live from step 4, was 0.0001)"]


def test_parameter_counts_say_what_they_count() -> None:
    from grpo_tui.tui.fmt import param_count
    from grpo_tui.tui.headless import _event_line

    assert param_count(136_384) == "0.136M" and param_count(4_884_480) == "4.88M" and param_count(7.6e9) == "7.6B"
    line = _event_line({"type": "model", "name": "tiny", "parameters": 136_384, "trainable": 136_384})
    assert "0.136M params, all trainable" in line and "0.14M" not in line
    lora = _event_line({"type": "model", "name": "x", "parameters": 134_515_008, "trainable": 4_884_480})
    assert "135M params, 4.88M trainable" in lora


def test_no_lora_advice_for_a_model_without_lora() -> None:
    from grpo_tui.rundir.phases import remedy

    assert "LoRA layers" not in remedy("forward_backward", {}, {"lora": False})
    assert "LoRA layers" in remedy("forward_backward", {}, {"lora": True})


def test_mean_terminated_length_is_a_gap_when_nothing_terminated() -> None:
    from grpo_tui.tui.components.curves import terminated_values

    assert terminated_values([0.0, 40.0, 0.0], [1.0, 0.2, 0.0]) == [None, 40.0, 0.0]


def test_the_saved_count_is_the_checkpoint_directories(tmp_path: Path) -> None:
    from grpo_tui.tui.components.status_panel import StatusPanel

    folder = tmp_path / "checkpoints"
    for step in (2, 4):
        ck = folder / f"checkpoint-{step}"
        ck.mkdir(parents=True)
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (ck / "config.json").write_text("{}")
    panel = StatusPanel()
    # three checkpoint events (step 4 saved twice: a command and the final save) for two directories
    assert panel._saved(folder / "checkpoint-4", 3) == "  2 saved"
    assert panel._saved(tmp_path / "gone" / "checkpoint-1", 1) == ""


def test_a_long_prompt_keeps_its_question() -> None:
    from grpo_tui.tui.components.group_table import fit_prompt

    prompt = "Dara has 5 stickers. Then they get 5 more stickers. How many stickers does Dara have now?"
    short = fit_prompt(prompt, 60)
    assert len(short) == 60 and short.endswith("Dara have now?") and short.startswith("Dara has") and "…" in short
    assert fit_prompt(prompt, 0) == prompt and fit_prompt(prompt, 200) == prompt


def test_the_summary_quotes_a_warning_still_firing_as_it_reads_at_the_end(tmp_path: Path) -> None:
    from grpo_tui.rundir.health import check_run
    from grpo_tui.tui.headless import print_summary

    evs = [{"type": "run_start", "preset": "p", "max_steps": 16, "config": {"train": {}}}]
    for s in range(1, 17):
        evs.append(
            {
                "type": "step",
                "step": s,
                "max_steps": 16,
                "metrics": {"reward": 0.1, "frac_reward_zero_std": 0.88 if s < 9 else 1.0},
            }
        )
    lines = [json.dumps(dict(ev, v=1, t=1.0)) for ev in evs + [dict(h, type="health") for h in check_run(evs)]]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    s = RunState()
    s.apply(read_events(tmp_path / "events.jsonl"))
    assert "88%" in s.health_fired["zero_std"]["diagnosis"]  # as it read when it started firing
    out = io.StringIO()
    print_summary(Console(file=out, width=300), s, tmp_path, 0)
    line = next(x for x in out.getvalue().splitlines() if "zero_std from step" in x)
    assert "still firing" in line and "all groups had identical rewards" in line and "88%" not in line
