"""The reward playground: score_completion and the `grpo-tui rewards` entry point."""

from __future__ import annotations

import io
import json
import sys

import pytest

from grpo_tui.engine.rewards import RewardSpecError
from grpo_tui.engine.rewards.score_completion import score_completion
from grpo_tui.tui.console.rewards import main

STRICT = "<reasoning>\nHe had 3.\nThen 4 more.\n</reasoning>\n<answer>\n7\n</answer>\n"


def test_score_completion_default_stack():
    result = score_completion(STRICT, "7")
    assert result["scores"] == {
        "xmlcount": 0.5,
        "soft_format": 0.5,
        "strict_format": 0.5,
        "int_answer": 0.5,
        "correctness": 2.0,
    }
    assert result["total"] == 4.0 and result["extracted"] == "7" and result["correct"] is True


def test_score_completion_weights_options_and_think_format():
    text = "<think>\n" + "step " * 50 + "\n</think>\nSo \\boxed{\\frac{1}{2}}"
    rewards = {
        "correctness_think": 2.0,
        "think_format": {"weight": 0.5},
        "length_penalty": {"weight": 1.0, "min_tokens": 0, "max_tokens": 10, "ramp_tokens": 10},
    }
    result = score_completion(text, "0.5", rewards, "think")
    assert result["scores"] == {"correctness_think": 1.0, "think_format": 0.5, "length_penalty": -0.1}
    assert result["weighted"] == {"correctness_think": 2.0, "think_format": 0.25, "length_penalty": -0.1}
    assert result["total"] == pytest.approx(2.15)
    assert result["extracted"] == "\\frac{1}{2}" and result["correct"]


def test_score_completion_reports_a_failing_user_reward(tmp_path):
    (tmp_path / "r.py").write_text("def boom(prompts, completions, answer, **kw):\n    raise KeyError('x')\n")
    result = score_completion(STRICT, "7", {"r.py:boom": 1.0, "correctness": 1.0}, base_dir=tmp_path)
    (row, _) = result["rewards"]
    assert row["score"] == 0.0 and row["failure"]["kind"] == "exception" and result["total"] == 2.0


def test_score_completion_spec_errors():
    with pytest.raises(RewardSpecError, match="weight must be a number"):
        score_completion(STRICT, "7", {"correctness": {"weight": "high"}})
    with pytest.raises(RewardSpecError, match="unknown reward"):
        score_completion(STRICT, "7", {"nope": 1.0})


def test_main_prints_scores_total_and_extracted(tmp_path, capsys):
    path = tmp_path / "completion.txt"
    path.write_text(STRICT)
    assert main(["--answer", "7", "--completion", str(path)]) == 0
    out = capsys.readouterr().out
    for needle in ("correctness", "xmlcount", "total", "+4", "extracted answer: '7'", "correct"):
        assert needle in out


def test_main_reads_stdin_and_writes_json(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("<answer>1,000</answer>"))
    assert (
        main(["--answer", "1000", "--reward", "correctness_normalized=0.5", "--reward", "correctness", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["scores"] == {"correctness_normalized": 2.0, "correctness": 0.0}
    assert result["total"] == 1.0 and result["correct"] is True


def test_main_errors_are_exit_code_2(tmp_path, capsys):
    assert main(["--answer", "7", "--completion", str(tmp_path / "missing.txt")]) == 2
    path = tmp_path / "c.txt"
    path.write_text(STRICT)
    assert main(["--answer", "7", "--completion", str(path), "--reward", "corectness"]) == 2
    assert "did you mean 'correctness'" in capsys.readouterr().err


def test_main_with_a_preset(monkeypatch, tmp_path, capsys):
    (tmp_path / "mine.py").write_text(
        "def one(prompts, completions, answer, **kw):\n    return [1.0] * len(completions)\n"
    )
    (tmp_path / "p.toml").write_text(
        '[prompt]\nformat = "think"\n\n[rewards]\nthink_format = 1.0\n"mine.py:one" = { weight = 3.0 }\n'
    )
    path = tmp_path / "c.txt"
    path.write_text("<think>x</think> 7")
    assert main(["--answer", "7", "--completion", str(path), "--preset", str(tmp_path / "p.toml"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prompt_format"] == "think" and result["total"] == 3.5 and result["extracted"] == "7"


def test_main_reports_a_preset_that_does_not_load(monkeypatch, tmp_path, capsys):
    path = tmp_path / "c.txt"
    path.write_text(STRICT)
    assert main(["--answer", "7", "--completion", str(path), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_score_completion_calls_a_user_reward_as_trl_does(tmp_path):
    """The completion arrives as TRL's assistant message, the gold as `answer` and `solution`; None is n/a."""
    (tmp_path / "r.py").write_text(
        "def seen(completions, solution, answer, prompts, trainer_state, **kw):\n"
        "    assert completions == [[{'role': 'assistant', 'content': 'hello'}]], completions\n"
        "    assert prompts[0][-1]['role'] == 'user' and trainer_state.global_step == 0\n"
        "    return [float(solution == answer == ['7'])]\n"
        "def skip(completions, **kw):\n"
        "    return [None for _ in completions]\n"
    )
    result = score_completion("hello", "7", {"r.py:seen": 2.0, "r.py:skip": 1.0, "correctness": 1.0}, base_dir=tmp_path)
    assert result["scores"] == {"r.py:seen": 1.0, "r.py:skip": None, "correctness": 0.0}
    assert result["weighted"]["r.py:skip"] is None and result["total"] == 2.0
    assert all(row["failure"] is None for row in result["rewards"])


def test_every_reward_of_a_preset_that_stops_at_the_answer_can_score():
    """A preset whose stop_strings end completions at </answer> must not keep a reward that wants more after it
    (cpu-demo's strict_format scored 0 on every completion of a run that way)."""
    from grpo_tui.engine.config import list_presets, load_config

    perfect = STRICT.rstrip("\n")  # generation stops right after </answer>
    checked = 0
    for name in list_presets():
        cfg = load_config(name)
        if "</answer>" not in (cfg.train.stop_strings or []) or cfg.prompt.format != "reasoning":
            continue
        result = score_completion(perfect, "7", dict(cfg.rewards), cfg.prompt.format, cfg.base_dir)
        assert all(row["score"] > 0 for row in result["rewards"]), (name, result["scores"])
        checked += 1
    assert checked, "cpu-demo stops at </answer>"


def test_the_cli_scores_strict_format_on_a_cpu_demo_completion(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(STRICT.rstrip("\n")))
    assert main(["--preset", "cpu-demo", "--answer", "7", "--completion", "-", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert scores["strict_format"] > 0
