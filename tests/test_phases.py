"""PhaseTimer's exclusive accounting, on a clock the test advances (the real-run sum is in test_engine)."""

from __future__ import annotations

import threading

from grpo_tui.engine.train.phase_timer import PhaseTimer
from grpo_tui.rundir.phases import PHASES, breakdown_text, dominant, sum_phases


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_are_charged_exclusively_and_sum_to_the_step():
    clock = Clock()
    t = PhaseTimer(clock)
    clock.now = 1.0  # 1 s outside any phase
    with t.phase("forward_backward"):
        clock.now = 2.0  # 1 s forward_backward
        with t.phase("generation"):
            clock.now = 5.0  # 3 s generation
            with t.phase("rewards"):
                clock.now = 5.5  # 0.5 s rewards
            clock.now = 6.0  # 0.5 s more generation
        clock.now = 8.0  # 2 s forward_backward
    phases, tps = t.snapshot()
    assert set(phases) == set(PHASES)
    assert phases["generation"] == 3.5 and phases["rewards"] == 0.5
    assert phases["forward_backward"] == 3.0 and phases["other"] == 1.0
    assert sum(phases.values()) == 8.0 and tps is None


def test_snapshot_splits_an_open_phase_between_steps():
    clock = Clock()
    t = PhaseTimer(clock)
    t.enter("recording")
    clock.now = 1.0
    first, _ = t.snapshot()  # the step event is written inside TRL's log()
    clock.now = 1.25
    t.exit("recording")
    clock.now = 2.0
    second, _ = t.snapshot()
    assert first["recording"] == 1.0
    assert second["recording"] == 0.25 and second["other"] == 0.75


def test_excluded_time_and_discarded_time_count_nowhere():
    clock = Clock()
    t = PhaseTimer(clock)
    with t.phase("recording"):
        with t.excluded():  # a pause, with a checkpoint taken inside it
            clock.now = 10.0
            with t.phase("checkpoint"):
                clock.now = 12.0
        clock.now = 13.0
        t.discard(0.5)  # an eval that just took 0.5 s
    phases, _ = t.snapshot()
    assert phases["recording"] == 0.5 and phases["checkpoint"] == 0.0 and sum(phases.values()) == 0.5


def test_generation_tokens_per_second_and_reset():
    t = PhaseTimer(Clock())
    t.count_generated(120, 2.0)
    t.count_generated(60, 1.0)
    assert t.snapshot()[1] == 60.0
    t.count_generated(5, 1.0)
    t.reset()
    assert t.snapshot()[1] is None


def test_other_threads_are_not_timed():
    clock = Clock()
    t = PhaseTimer(clock)

    def worker() -> None:
        with t.phase("rewards"):
            clock.now = 3.0

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    phases, _ = t.snapshot()
    assert phases["rewards"] == 0.0 and phases["other"] == 3.0


def test_dominant_phase_and_breakdown_over_steps():
    steps = [
        {"phase_s": {"generation": 4.0, "forward_backward": 2.0, "other": 1.0}},
        {"phase_s": {"generation": 2.0, "forward_backward": 1.0, "bogus": "x"}},
        {},
    ]
    total = sum_phases(steps)
    assert total == {"generation": 6.0, "forward_backward": 3.0, "other": 1.0}
    assert dominant(total) == ("generation", 0.6)
    assert breakdown_text(total) == "generate 60% · fwd+bwd 30% · other 10%"
    # a phase that rounds to 0% takes no room on the line (the cpu-demo's optimizer)
    assert (
        breakdown_text({"generation": 15.0, "forward_backward": 10.0, "optimizer": 0.05})
        == "generate 60% · fwd+bwd 40%"
    )
    assert dominant({"generation": 0.0}) is None


def test_queued_device_work_is_charged_to_the_phase_that_queued_it():
    """With a sync (CUDA), work a phase queued but the device had not run yet is waited for at the phase's end,
    so it counts there, not in whichever later phase first reads a result."""
    clock = Clock()
    queued = [0.0]  # device seconds still to run

    def sync() -> None:  # the device finishes its queue: time passes
        clock.now += queued[0]
        queued[0] = 0.0

    for with_sync, expect_fb in ((True, 3.0), (False, 0.0)):
        clock.now, queued[0] = 0.0, 0.0
        t = PhaseTimer(clock, sync=sync if with_sync else None)
        t.reset()
        with t.phase("forward_backward"):
            queued[0] = 3.0  # backward returns at once, 3 s of kernels queued
        with t.phase("optimizer"):
            sync()  # the optimizer's first read waits for backward's kernels
            clock.now += 0.5
        phases, _ = t.snapshot()
        assert phases["forward_backward"] == expect_fb
        assert phases["optimizer"] == (0.5 if with_sync else 3.5)
        assert sum(phases.values()) == 3.5
