"""Health rules over recorded event streams: each rule fires on a run built to trip it and stays quiet on one
that must not (the engine-side test, a real run writing `health` events, is in test_knobs.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from grpo_tui.rundir.health import (
    DEFAULT,
    RULE_INFO,
    RULES,
    HealthMonitor,
    active_warnings,
    check_run,
    latest_findings,
    rules_table,
    warning_line,
)

BASE = {
    "loss": 0.01,
    "grad_norm": 0.5,
    "learning_rate": 1e-5,
    "entropy": 1.0,
    "frac_reward_zero_std": 0.2,
    "completions/mean_length": 100.0,
    "completions/clipped_ratio": 0.05,
    "rewards/correctness/mean": 0.3,
    "rewards/soft_format/mean": 0.2,
}


def run(
    n: int, vary: Any = None, correct: Any = 0.3, max_len: int = 200, dynamic: bool = False, extra: list[dict] = ()
) -> list[dict[str, Any]]:
    """A recorded run of n steps: BASE metrics, with vary(step) -> overrides (step is 1-based)."""
    evs = [
        {
            "type": "run_start",
            "config": {
                "train": {"max_completion_length": max_len, "beta": 0.0},
                "curriculum": {"dynamic_sampling": dynamic},
            },
        }
    ]
    for s in range(1, n + 1):
        m = dict(BASE, **(vary(s) if vary else {}))
        c = correct(s) if callable(correct) else correct
        evs += [e for e in extra if e.get("step") == s and e["type"] != "step"]
        evs.append({"type": "step", "step": s, "metrics": m, "correct_frac": c})
    return evs


def fired(events: list[dict]) -> dict[str, dict]:
    return {h["rule"]: h for h in check_run(events) if h["status"] == "warn"}


def test_a_healthy_run_raises_nothing() -> None:
    def wobble(s):
        return {"entropy": 1.0 + 0.1 * math.sin(s), "completions/mean_length": 100 + 5 * math.sin(s)}

    assert check_run(run(40, wobble, correct=lambda s: 0.2 + 0.01 * s)) == []


def test_zero_std_fires_after_several_steps_and_names_curriculum_keys() -> None:
    ev = fired(run(8, lambda s: {"frac_reward_zero_std": 0.9 if s >= 3 else 0.1}))["zero_std"]
    assert ev["step"] == 3 + DEFAULT.zero_std_steps - 1 and ev["value"] == 0.9
    assert "[curriculum] dynamic_sampling = true" in ev["fix"] and "min_pass_rate" in ev["fix"]
    assert (
        "dynamic_sampling_max_extra"
        in fired(run(8, lambda s: {"frac_reward_zero_std": 0.9}, dynamic=True))["zero_std"]["fix"]
    )


def test_zero_std_stays_quiet_for_a_short_burst() -> None:
    # 4 bad steps in a row, then a good one: below the 5-step window
    assert "zero_std" not in fired(run(30, lambda s: {"frac_reward_zero_std": 0.2 if s % 5 == 0 else 0.9}))


def test_zero_std_clears_with_an_ok_event() -> None:
    hs = check_run(run(12, lambda s: {"frac_reward_zero_std": 0.9 if s <= 6 else 0.1}))
    # quiet from step 7; cleared after 5 quiet steps in a row
    assert [(h["rule"], h["status"], h["step"]) for h in hs] == [("zero_std", "warn", 5), ("zero_std", "ok", 11)]
    assert active_warnings([{"type": "health", **h} for h in hs]) == {}


def test_entropy_collapse() -> None:
    ev = fired(run(12, lambda s: {"entropy": 1.0 if s < 6 else 0.02}))["entropy_collapse"]
    assert ev["value"] < ev["threshold"] and "[train] temperature" in ev["fix"]
    assert "entropy_collapse" not in fired(run(12, lambda s: {"entropy": 1.0 if s < 6 else 0.5}))


def test_kl_spike() -> None:
    ev = fired(run(15, lambda s: {"kl": 0.8 if s == 14 else 0.02}))["kl_spike"]
    assert ev["step"] == 14 and "[train] beta" in ev["fix"]
    # a KL that grows steadily is not a spike; a jump between tiny values is not either
    assert "kl_spike" not in fired(run(15, lambda s: {"kl": 0.01 * s}))
    assert "kl_spike" not in fired(run(15, lambda s: {"kl": 0.02 if s == 14 else 0.001}))


def test_length_collapse() -> None:
    ev = fired(run(14, lambda s: {"completions/mean_length": 150.0 if s < 8 else 20.0}))["length_collapse"]
    assert ev["step"] == 10 and "[rewards]" in ev["fix"]  # the 3-step mean falls below 0.4 x 150 at step 10
    assert "length_collapse" not in fired(run(14, lambda s: {"completions/mean_length": 150.0 - 3 * s}))


def test_length_running_into_the_limit() -> None:
    ev = fired(run(6, lambda s: {"completions/mean_length": 190.0}, max_len=200))["length_at_limit"]
    assert "[train] max_completion_length" in ev["fix"]
    assert "length_at_limit" not in fired(run(6, lambda s: {"completions/mean_length": 170.0}, max_len=200))


def test_truncation_above_a_third() -> None:
    ev = fired(run(5, lambda s: {"completions/clipped_ratio": 0.4}))["truncation"]
    assert ev["step"] == 3 and ev["threshold"] == pytest.approx(1 / 3, abs=1e-6)
    assert "mask_truncated_completions" in ev["fix"]
    assert "truncation" not in fired(run(5, lambda s: {"completions/clipped_ratio": 0.3}))


def test_reward_hacking_format_up_correctness_flat() -> None:
    def rising(s):
        return {"rewards/soft_format/mean": 0.05 * s}

    ev = fired(run(12, rising, correct=0.1))["reward_hacking"]
    assert "soft_format" in ev["diagnosis"] and "[rewards]" in ev["fix"]
    # format and correctness rising together is learning, not hacking
    assert "reward_hacking" not in fired(run(12, rising, correct=lambda s: 0.05 * s))


def test_non_finite_loss_or_grad_norm() -> None:
    # the event writer stores NaN/inf as null: a present-but-null loss is non-finite
    ev = fired(run(4, lambda s: {"grad_norm": None} if s == 3 else {}))["non_finite"]
    assert ev["step"] == 3 and "grad_norm" in ev["diagnosis"] and "learning_rate" in ev["fix"]
    assert "non_finite" not in fired(run(4))


def test_reward_failures() -> None:
    fail = [{"type": "reward_failure", "step": 4, "reward": "crashy", "kind": "exception", "count": 3}]
    ev = fired(run(6, extra=fail))["reward_failures"]
    assert ev["step"] == 4 and "'crashy'" in ev["diagnosis"] and "[rewards]" in ev["fix"]
    hs = check_run(run(14, extra=fail))
    assert [(h["status"], h["step"]) for h in hs if h["rule"] == "reward_failures"] == [("warn", 4), ("ok", 13)]
    assert "reward_failures" not in fired(run(6))


def test_a_metric_hovering_at_its_threshold_does_not_flap() -> None:
    # one low step in six: the 3-step mean dips below 1/3 for 3 steps, then goes back up
    hs = check_run(run(30, lambda s: {"completions/clipped_ratio": 0.45 if s % 6 else 0.05}))
    assert [(h["rule"], h["status"]) for h in hs] == [("truncation", "warn")]


def test_every_rule_is_tested_and_a_resumed_run_rewinds() -> None:
    assert set(RULES) == {
        "zero_std",
        "entropy_collapse",
        "kl_spike",
        "length_collapse",
        "length_at_limit",
        "truncation",
        "reward_hacking",
        "non_finite",
        "reward_failures",
        "constant_reward",
    }
    mon = HealthMonitor()
    for s in (1, 2, 3, 2, 3):  # the resumed engine repeats steps 2 and 3
        mon.add({"type": "step", "step": s, "metrics": dict(BASE)})
    assert mon.h.steps == [1, 2, 3]
    line = warning_line({"rule": "truncation", "diagnosis": "d", "fix": "f"})
    assert line == "truncation: d -> f"


def _recorded(n: int, vary: Any) -> list[dict[str, Any]]:
    """A recorded log: steps 1..n with the health events the engine wrote after each."""
    evs = run(n, vary)
    mon = HealthMonitor.for_run_start(evs[0])
    out = []
    for ev in evs:
        out.append(ev)
        out += [dict(h, type="health") for h in mon.add(ev)]
    return out


def test_a_resumed_monitor_sees_the_steps_before_its_checkpoint() -> None:
    def zero(s):
        return {"frac_reward_zero_std": 0.9 if s >= 4 else 0.1}  # fires at step 8, after 5 such steps

    log = _recorded(6, zero)
    fresh, resumed = HealthMonitor(), HealthMonitor()
    assert resumed.resume(log, checkpoint_step=6) == []  # nothing fired yet, nothing to mend
    after = [{"type": "step", "step": s, "metrics": dict(BASE, **zero(s))} for s in (7, 8)]
    assert [h["rule"] for h in resumed.extend(after)] == ["zero_std"]  # steps 4-8 in a row
    assert fresh.extend(after) == []  # a monitor that started at step 7 has seen two such steps


def test_resume_clears_a_warning_from_the_rewound_steps_and_restores_one_cleared_there() -> None:
    late = _recorded(12, lambda s: {"frac_reward_zero_std": 0.9 if s >= 5 else 0.1})  # warns at step 9
    assert [(h["step"], h["status"]) for h in late if h["type"] == "health"] == [(9, "warn")]
    out = HealthMonitor().resume(late, checkpoint_step=6)  # the resumed engine redoes steps 7-12
    assert [(h["rule"], h["status"], h["step"]) for h in out] == [("zero_std", "ok", 6)]
    assert "resumed" in out[0]["diagnosis"]

    cleared = _recorded(16, lambda s: {"frac_reward_zero_std": 0.9 if s <= 6 else 0.1})  # warns at 5, ok at 11
    assert [(h["step"], h["status"]) for h in cleared if h["type"] == "health"] == [(5, "warn"), (11, "ok")]
    mon = HealthMonitor()
    out = mon.resume(cleared, checkpoint_step=6)  # at step 6 it was firing: the log must say so again
    assert [(h["rule"], h["status"], h["step"]) for h in out] == [("zero_std", "warn", 6)]
    assert set(mon.active) == {"zero_std"}
    # in agreement already: nothing to write
    assert HealthMonitor().resume(cleared, checkpoint_step=12) == []
    assert HealthMonitor().resume(late, checkpoint_step=12) == []


def _flat_strict(s: int) -> dict[str, float]:
    """strict_format 0 on every completion (its pattern never matches); correctness varies."""
    return {
        "rewards/strict_format/mean": 0.0,
        "rewards/strict_format/std": 0.0,
        "rewards/correctness/mean": 0.3 + 0.01 * (s % 3),
        "rewards/correctness/std": 0.4,
    }


def test_a_reward_constant_on_every_completion_is_named_with_why() -> None:
    n = DEFAULT.constant_reward_steps
    ev = fired(run(n + 2, _flat_strict))["constant_reward"]
    assert ev["step"] == n and "'strict_format'" in ev["diagnosis"] and "never matched" in ev["diagnosis"]
    assert "stop_strings" in ev["diagnosis"] and "weight" in ev["fix"]

    # one completion scoring differently in one step of the window keeps it quiet
    def wobble(s):
        return dict(_flat_strict(s), **({"rewards/strict_format/std": 0.1} if s == n else {}))

    assert "constant_reward" not in fired(run(n + 3, wobble))

    # every reward flat is zero_std's case, not this rule's
    def allflat(s):
        return dict(_flat_strict(s), **{"rewards/correctness/std": 0.0, "rewards/correctness/mean": 0.3})

    assert "constant_reward" not in fired(run(n + 3, allflat))


def test_the_summary_quotes_a_rule_at_the_end_not_when_it_fired() -> None:
    def rising(s):
        return {"frac_reward_zero_std": 0.88 if s < 9 else 1.0}

    events = run(16, rising)
    assert fired(events)["zero_std"]["value"] == 0.88
    now = latest_findings(events)["zero_std"]
    assert now.firing and now.value == 1.0 and "all" in now.diagnosis


def test_the_rules_table_quotes_the_thresholds_in_force() -> None:
    from dataclasses import replace

    table = rules_table(replace(DEFAULT, zero_std_steps=7))
    assert set(RULE_INFO) == set(RULES)
    assert all(f"{name}:" in table for name in RULES)
    assert "7 steps in a row" in table and "7 steps in a row" not in rules_table()
    import grpo_tui.rundir.health as health

    assert rules_table() in health.__doc__
