"""A reward that raises, returns NaN or hangs never stops a step (GuardedReward); None means "not applicable"."""

from __future__ import annotations

import math
import threading
import time

import pytest

from grpo_tui.engine.rewards import REWARDS, GuardedReward, drain_all, guard, is_correct, mathverify

# Takes sympy forever (a tower of powers): the bounded worker must cut it off.
PATHOLOGICAL = "9^{9^{9^{9}}}"


def finite_floats(values, n):
    return len(values) == n and all(isinstance(v, float) and math.isfinite(v) for v in values)


def test_exception_scores_zero_only_for_the_failing_completion():
    def picky(prompts, completions, answer, **kwargs):
        return [1.0 / (0 if "bad" in c else 1) for c in completions]

    g = guard(picky, "picky")
    assert g(["q"] * 3, ["ok", "bad", "fine"], ["1"] * 3) == [1.0, 0.0, 1.0]
    (failure,) = g.drain_failures()
    assert failure["name"] == "picky" and failure["count"] == 1 and failure["kind"] == "exception"
    assert "ZeroDivisionError" in failure["example"] and "bad" in failure["example"]
    assert g.drain_failures() == []  # drained


def test_per_completion_retry_slices_dataset_columns():
    seen = []

    def needs_all(prompts, completions, answer, completion_ids=None, level=None, **kwargs):
        if len(completions) > 1:
            raise RuntimeError("batch fails")
        seen.append((prompts, answer, completion_ids, level, kwargs["trainer_state"]))
        return [1.0]

    g = guard(needs_all, "x")
    out = g(["p0", "p1"], ["a", "b"], ["g0", "g1"], completion_ids=[[1], [2, 3]], level=[5, 6], trainer_state="S")
    assert out == [1.0, 1.0]
    assert seen == [(["p0"], ["g0"], [[1]], [5], "S"), (["p1"], ["g1"], [[2, 3]], [6], "S")]
    assert g.drain_failures() == []  # every completion scored in isolation


@pytest.mark.parametrize(
    "returned, kinds",
    [
        ([float("nan"), float("inf"), 1.0], {"nan": 2}),
        (["x", 1, True], {"bad_value": 1}),
        ([1.0], {"bad_length": 3}),
        (None, {"none": 3}),
        (7, {"bad_value": 3}),
    ],
)
def test_bad_return_values(returned, kinds):
    g = guard(lambda prompts, completions, answer, **kw: returned, "bad")
    out = g(None, ["a", "b", "c"], None)
    assert finite_floats(out, 3)
    (failure,) = g.drain_failures()
    assert failure["kinds"] == kinds and failure["count"] == sum(kinds.values())


def test_user_reward_timeout_then_skip_while_still_running():
    release = threading.Event()

    def slow(prompts, completions, answer, **kwargs):
        if "slow" in completions[0]:
            release.wait(10)
        return [1.0] * len(completions)

    g = guard(slow, "slow", timeout_s=0.05)
    t0 = time.monotonic()
    assert g(None, ["slow", "x"], None) == [0.0, 0.0]
    assert time.monotonic() - t0 < 2.0
    assert g(None, ["fast"], None) == [0.0]  # the hung call still runs: skipped, no second thread
    failures = g.drain_failures()[0]
    assert failures["kinds"] == {"timeout": 2, "skipped": 1} and failures["kind"] == "timeout"
    release.set()
    deadline = time.monotonic() + 5
    while g._hung is not None and g._hung.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert g(None, ["fast"], None) == [1.0]  # recovers once the abandoned call ends


def test_builtins_run_inline_and_user_functions_in_a_thread():
    assert not GuardedReward(REWARDS["correctness"], "c", 5.0).threaded
    assert GuardedReward(lambda **k: [], "u", 5.0).threaded
    assert not GuardedReward(lambda **k: [], "u", None).threaded
    g = guard(REWARDS["correctness"], "correctness")
    assert guard(g) is g and g.__name__ == "correctness"


def test_missing_answer_column_is_reported_not_raised():
    g = guard(REWARDS["correctness"], "correctness")
    assert g(None, ["<answer>1</answer>"], None) == [0.0]
    (failure,) = g.drain_failures()
    assert "'answer' column" in failure["example"]


def test_math_verify_timeout_is_bounded_counted_and_reported():
    g = guard(REWARDS["math_equivalence"], "math_equivalence")
    fn_timeout = 1.0
    texts = [f"\\boxed{{{PATHOLOGICAL}}}", "\\boxed{\\sqrt{4}}", "\\boxed{\\frac{1}{2}}"]
    mathverify.warm_up()
    t0 = time.monotonic()
    out = g(None, texts, ["\\pi", "2", "0.5"], timeout_s=fn_timeout)
    elapsed = time.monotonic() - t0
    assert out == [0.0, 1.0, 1.0]
    assert elapsed < fn_timeout + 4.0  # deadline + a worker restart on a busy 2-core machine
    (failure,) = g.drain_failures()
    assert failure["kind"] == "timeout" and failure["count"] == 1 and PATHOLOGICAL[:6] in failure["example"]
    # cached: the same pathological pair fails fast the second time, still counted
    t0 = time.monotonic()
    assert g(None, texts[:1], ["\\pi"], timeout_s=fn_timeout) == [0.0]
    assert time.monotonic() - t0 < 0.5
    assert g.drain_failures()[0]["count"] == 1
    assert is_correct(PATHOLOGICAL, "\\pi", timeout_s=fn_timeout) is False  # the judgment never raises


def test_math_verify_works_off_the_main_thread():
    """math-verify's own signal timeout fails off the main thread; ours does not."""
    results = []

    def run():
        results.append(REWARDS["math_equivalence"](None, ["\\boxed{\\sqrt{9}}", "\\boxed{x^{2}}"], ["3", "x*x"]))
        results.append(is_correct("\\frac{\\pi}{2}", "\\pi/2"))

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert results == [[1.0, 1.0], True]


def test_none_is_not_applicable_not_a_failure():
    """As in TRL: a None reward is NaN (left out of the weighted sum by nansum), not 0 and not a failure."""
    g = guard(lambda completions, **kw: [None, 1.0, None], "maybe")
    out = g(None, ["a", "b", "c"], None)
    assert math.isnan(out[0]) and out[1] == 1.0 and math.isnan(out[2])
    assert g.drain_failures() == [] and g.broken() is None


def test_called_with_keywords_only():
    seen = {}

    def only_keywords(*, prompts, completions, solution, **kwargs):
        seen.update(prompts=prompts, completions=completions, solution=solution, kwargs=kwargs)
        return [1.0] * len(completions)

    g = guard(only_keywords, "kw")
    assert g(prompts=["p"], completions=["c"], solution=["7"], trainer_state="S") == [1.0]
    assert seen == {"prompts": ["p"], "completions": ["c"], "solution": ["7"], "kwargs": {"trainer_state": "S"}}


@pytest.mark.parametrize(
    "fn, broken",
    [
        (lambda completions, **kw: [1 / 0 for _ in completions], True),  # raises on every completion
        (lambda completions, **kw: ["high"] * len(completions), True),  # never a number
        (lambda completions, **kw: [1.0], True),  # wrong length: every completion fails
        (lambda completions, **kw: [1.0 / (c != "b") for c in completions], False),  # only sometimes
        (lambda completions, **kw: [None] * len(completions), False),  # not applicable is no failure
    ],
)
def test_broken_when_every_completion_fails_by_the_functions_fault(fn, broken):
    g = guard(fn, "r")
    g(None, ["a", "b", "c"], None)
    assert (g.broken() is not None) is broken
    if broken:
        assert "'r' failed on every completion of the batch (3 of 3)" in g.broken()


def test_a_timeout_on_every_completion_is_not_broken():
    release = threading.Event()
    g = guard(lambda completions, **kw: release.wait(30) and [1.0] * len(completions), "slow", timeout_s=0.05)
    try:
        assert g(None, ["a", "b"], None) == [0.0, 0.0]
        assert g.broken() is None and g.drain_failures()[0]["kinds"] == {"timeout": 2}
    finally:
        release.set()


def test_drain_all():
    a = guard(lambda prompts, completions, answer, **kw: [1 / 0] * len(completions), "a")
    b = guard(lambda prompts, completions, answer, **kw: [1.0] * len(completions), "b")
    a(None, ["x"], None)
    b(None, ["x"], None)
    assert [f["name"] for f in drain_all([a, b])] == ["a"]
    assert drain_all([a, b]) == []


def test_worker_dies_with_its_trainer_even_mid_computation(tmp_path):
    """A trainer killed with SIGKILL while math-verify is stuck leaves no worker burning a core."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "trainer.py"
    script.write_text(
        "import sys, threading, time\n"
        "from grpo_tui.engine.rewards import mathverify\n"
        "mathverify.warm_up()\n"
        "print(mathverify.stats()['worker_pid'], flush=True)\n"
        f"mathverify.equivalent({PATHOLOGICAL!r}, '1+x', timeout_s=120)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker_pid = int(proc.stdout.readline())
    time.sleep(0.5)  # let it get stuck in sympy
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return
        # reaped by init? a zombie still answers kill(0); check its state
        try:
            if Path(f"/proc/{worker_pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.1)
    os.kill(worker_pid, signal.SIGKILL)
    raise AssertionError("math-verify worker outlived its trainer")


def test_forked_child_gets_its_own_worker():
    import os

    mathverify.warm_up()
    parent_worker = mathverify.stats()["worker_pid"]
    pid = os.fork()
    if pid == 0:  # child: must not talk over the parent's pipes
        try:
            ok = mathverify.equivalent("\\sqrt{16}", "4") and mathverify.stats()["worker_pid"] != parent_worker
        finally:
            mathverify.shutdown()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert mathverify.equivalent("\\sqrt{25}", "5") and mathverify.stats()["worker_pid"] == parent_worker


def test_worker_started_from_a_short_lived_thread_survives_it():
    """PR_SET_PDEATHSIG follows the starting thread; the launcher thread keeps the worker alive."""
    mathverify.shutdown()
    t = threading.Thread(target=lambda: mathverify.equivalent("\\sqrt{36}", "6+0*x"))
    t.start()
    t.join(60)
    pid = mathverify.stats()["worker_pid"]
    assert pid is not None
    time.sleep(0.3)
    restarts = mathverify.stats()["restarts"]
    assert mathverify.equivalent("\\sqrt{49}", "7+0*x")
    assert mathverify.stats()["worker_pid"] == pid and mathverify.stats()["restarts"] == restarts
