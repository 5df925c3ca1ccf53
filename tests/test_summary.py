"""The run summary folds events the headless view and the run list read."""

from __future__ import annotations

import io

from rich.console import Console

from rundir.state import mean_and_stderr, summarize
from tui.headless import print_summary


def test_summary_with_dynamic_sampling_and_eval(tmp_path):
    events = [{"type": "run_start", "preset": "p", "model": "m", "max_steps": 2, "reward_names": ["a"]}]
    for step, (z, zb) in enumerate([(0.0, 0.5), (0.25, 0.75)], start=1):
        events.append({"type": "step", "step": step, "max_steps": 2, "correct_frac": 0.5,
                       "metrics": {"reward": float(step), "frac_reward_zero_std": z,
                                   "dynamic_sampling/frac_reward_zero_std_before": zb}})
    events += [{"type": "eval", "step": 0, "accuracy": 0.35, "ci_low": 0.26, "ci_high": 0.45},
               {"type": "eval", "step": 2, "accuracy": 0.63, "ci_low": 0.53, "ci_high": 0.72},
               {"type": "sft_step", "step": 1}, {"type": "stage", "stage": "grpo"},
               {"type": "run_end", "status": "finished", "exit_code": 0, "elapsed_s": 5}]
    s = summarize(events)
    assert s.rewards == [1.0, 2.0] and s.zero_std_before == [0.5, 0.75] and len(s.evals) == 2
    assert s.unknown_types == 0
    out = io.StringIO()
    print_summary(Console(file=out, width=140), s, tmp_path, 0)
    text = out.getvalue()
    assert "0.62 as sampled -> 0.12 on average as trained" in text
    assert "step 0: 0.350" in text and "step 2: 0.630" in text


def test_mean_and_stderr():
    assert mean_and_stderr([1.0, 3.0]) == (2.0, 1.0)
    assert mean_and_stderr([2.0])[1] == 0.0


def test_summary_names_the_dominant_phase_and_its_remedy(tmp_path):
    events = [{"type": "run_start", "preset": "p", "model": "m", "max_steps": 2, "reward_names": ["a"]}]
    for step in (1, 2):
        events.append({"type": "step", "step": step, "max_steps": 2, "step_time_s": 10.0,
                       "metrics": {"reward": 1.0},
                       "phase_s": {"generation": 6.5, "rewards": 0.1, "logprobs": 0.0, "forward_backward": 3.0,
                                   "optimizer": 0.3, "recording": 0.05, "checkpoint": 0.0, "other": 0.05}})
    s = summarize(events)
    assert s.phase_s["generation"] == 13.0 and s.phase_s["forward_backward"] == 6.0
    out = io.StringIO()
    print_summary(Console(file=out, width=200), s, tmp_path, 0)
    text = out.getvalue()
    assert "generate 65% · fwd+bwd 30%" in text
    assert "generation (65%): cut it with vLLM" in text
