"""The engine end to end: a real TRL GRPO run of a tiny random Llama, its run directory field by field, resume."""

from __future__ import annotations

import json
import shutil

import pytest
from support.processes import run_engine, run_grpo_tui

from grpo_tui.engine.train.phase_timer import PHASES
from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import read_rollouts

STEP_METRICS = [
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "completions/mean_length",
    "completions/clipped_ratio",
    "loss",
    "grad_norm",
    "learning_rate",
    "num_tokens",
]
COMPLETION_FIELDS = {
    "text": str,
    "extracted": (str, type(None)),
    "correct": bool,
    "rewards": dict,
    "total": float,
    "advantage": float,
    "tokens": int,
    "truncated": bool,
}


def test_headless_run_exits_0(tiny_run):
    assert tiny_run.proc.returncode == 0, tiny_run.proc.stdout + tiny_run.proc.stderr


def test_three_tiny_steps_take_under_two_minutes(tiny_run):
    assert tiny_run.seconds < 120, f"3 tiny steps took {tiny_run.seconds:.0f}s"


def test_headless_run_prints_its_progress_and_a_summary(tiny_run):
    out = tiny_run.proc.stdout
    assert "step 3/3" in out and "Run summary" in out and "finished" in out


def test_config_json_records_the_resolved_preset(tiny_run):
    cfg = json.loads(RunDir(tiny_run.dir).config.read_text())
    assert cfg["model"]["name"] == "tiny-random" and cfg["train"]["max_steps"] == 3
    assert set(cfg) >= {"preset", "model", "data", "prompt", "rewards", "train"}


def test_engine_log_has_a_line_per_step(tiny_run):
    assert RunDir(tiny_run.dir).engine_log.read_text().count("step ") >= 3


def test_engine_log_reports_the_memory_bandwidth_measured_at_start(tiny_run):
    # the bandwidth behind each step's generation bound: measured once, at start
    log = RunDir(tiny_run.dir).engine_log.read_text()
    assert "generation bound:" in log and "GB/s memory bandwidth on cpu" in log


def test_the_control_dir_is_owner_only(tiny_run):
    assert (RunDir(tiny_run.dir).control.stat().st_mode & 0o777) == 0o700


def test_the_final_checkpoint_holds_the_weights_and_the_optimizer(tiny_run):
    ckpt = RunDir(tiny_run.dir).latest_checkpoint()
    assert ckpt is not None and ckpt.name == "checkpoint-3"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "optimizer.pt").exists()


def test_the_pid_file_is_removed_when_the_engine_exits(tiny_run):
    assert not RunDir(tiny_run.dir).pid_file.exists()


def _events(tiny_run) -> list[dict]:
    return read_events(RunDir(tiny_run.dir).events)


def _steps(tiny_run) -> list[dict]:
    return [e for e in _events(tiny_run) if e["type"] == "step"]


def test_every_event_has_the_schema_version_and_a_float_time(tiny_run):
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in _events(tiny_run))


def test_the_event_log_opens_with_run_start_and_closes_with_run_end(tiny_run):
    types = [e["type"] for e in _events(tiny_run)]
    assert types[0] == "run_start" and types[-1] == "run_end"


def test_run_start_records_the_rewards_the_group_size_the_device_and_versions(tiny_run):
    start = _events(tiny_run)[0]
    assert start["reward_names"] == ["correctness", "xmlcount", "distinct_chars", "crashy"]
    assert start["reward_weights"]["crashy"] == 0.5 and start["num_generations"] == 4
    assert start["resumed"] is False and start["device"] == "cpu" and start["versions"]["trl"].startswith("1.16")


def test_states_go_from_starting_through_running_to_finished(tiny_run):
    states = [e["state"] for e in _events(tiny_run) if e["type"] == "state"]
    assert states[:3] == ["starting", "loading_model", "running"] and states[-1] == "finished"


def test_the_dataset_event_counts_the_rows_used_and_skipped(tiny_run):
    ds = next(e for e in _events(tiny_run) if e["type"] == "dataset")
    assert ds["rows_used"] == 200 and ds["rows_skipped"] == 0


def test_the_model_event_counts_the_parameters(tiny_run):
    model = next(e for e in _events(tiny_run) if e["type"] == "model")
    assert model["parameters"] == model["trainable"] == 136_384  # tiny-random: h64, 2 layers, 974-token vocab


def test_each_step_event_carries_progress_timing_and_metrics(tiny_run):
    start, steps = _events(tiny_run)[0], _steps(tiny_run)
    assert [s["step"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert s["max_steps"] == 3 and s["step_time_s"] > 0 and s["elapsed_s"] > 0 and s["eta_s"] >= 0
        for k in STEP_METRICS:
            assert k in s["metrics"], k
        for name in start["reward_names"]:
            assert f"rewards/{name}/mean" in s["metrics"]
        assert 0.0 <= s["correct_frac"] <= 1.0
        assert s["tokens_per_s"] > 0


def test_each_steps_phases_add_up_to_its_wall_time(tiny_run):
    for s in _steps(tiny_run):
        phases = s["phase_s"]
        assert set(phases) == set(PHASES) and all(v >= 0 for v in phases.values())
        assert abs(sum(phases.values()) - s["step_time_s"]) <= 0.03 * s["step_time_s"] + 0.02, (phases, s)
        for name in ("generation", "rewards", "forward_backward", "optimizer", "recording"):
            assert phases[name] > 0, (name, phases)
        assert phases["other"] < 0.1 * s["step_time_s"], phases


def test_each_steps_generation_speed_is_below_its_memory_bandwidth_bound(tiny_run):
    for s in _steps(tiny_run):
        assert s["generation_tokens_per_s"] > 0
        # the bound of this step's generation (the CPU's bandwidth, measured with a copy) is above it
        assert s["generation_bound_tokens_per_s"] > s["generation_tokens_per_s"]


def test_a_user_reward_that_varies_within_groups_gives_grpo_signal(tiny_run):
    # distinct_chars varies within groups, so GRPO had signal
    assert any(s["metrics"]["frac_reward_zero_std"] < 1.0 for s in _steps(tiny_run))


def test_memory_is_recorded_at_start_and_after_each_step(tiny_run):
    mem = [e for e in _events(tiny_run) if e["type"] == "memory"]
    assert len(mem) == 4 and all(m["rss_gb"] > 0 and m["total_gb"] > 0 for m in mem)


def test_only_the_final_checkpoint_is_recorded(tiny_run):
    ck = [e for e in _events(tiny_run) if e["type"] == "checkpoint"]
    assert [(c["step"], c["reason"]) for c in ck] == [(3, "final")]


def test_run_end_says_finished_with_exit_code_0_at_the_last_step(tiny_run):
    end = _events(tiny_run)[-1]
    assert end["status"] == "finished" and end["exit_code"] == 0 and end["step"] == 3


def test_crashing_user_reward_is_counted_not_fatal(tiny_run):
    events = read_events(RunDir(tiny_run.dir).events)
    fails = [e for e in events if e["type"] == "reward_failure"]
    assert fails, "crashy raises on some completions; failures must be reported"
    assert all(f["reward"] == "crashy" and f["count"] >= 1 and "deliberate failure" in f["example"] for f in fails)
    assert events[-1]["status"] == "finished"


REWARD_NAMES = ["correctness", "xmlcount", "distinct_chars", "crashy"]
REWARD_WEIGHTS = {"correctness": 1.0, "xmlcount": 1.0, "distinct_chars": 1.0, "crashy": 0.5}


def _groups(tiny_run) -> list[dict]:
    return read_rollouts(RunDir(tiny_run.dir).rollouts)[0]


def test_rollouts_read_back_whole(tiny_run):
    _, skipped = read_rollouts(RunDir(tiny_run.dir).rollouts)
    assert skipped == 0


def test_rollouts_hold_every_group_of_every_step_in_order(tiny_run):
    # 8 completions per step, G=4 -> 2 groups per step, 3 steps
    assert [(g["step"], g["group"]) for g in _groups(tiny_run)] == [(s, i) for s in (1, 2, 3) for i in (0, 1)]


def test_each_rollout_group_has_its_prompt_gold_answer_and_g_completions(tiny_run):
    for g in _groups(tiny_run):
        assert g["v"] == 1 and g["prompt"].endswith("now?") and g["gold"].isdigit()
        assert len(g["completions"]) == 4


def test_each_completion_has_every_field_with_its_type(tiny_run):
    for g in _groups(tiny_run):
        for c in g["completions"]:
            for k, typ in COMPLETION_FIELDS.items():
                assert isinstance(c[k], typ), (k, c[k])


def test_each_completions_total_is_the_weighted_sum_of_its_rewards(tiny_run):
    for g in _groups(tiny_run):
        for c in g["completions"]:
            assert list(c["rewards"]) == REWARD_NAMES
            assert c["total"] == pytest.approx(sum(REWARD_WEIGHTS[n] * c["rewards"][n] for n in REWARD_NAMES), abs=1e-4)


def test_a_completion_is_truncated_exactly_when_it_reaches_the_length_cap(tiny_run):
    for g in _groups(tiny_run):
        for c in g["completions"]:
            assert 1 <= c["tokens"] <= 24
            assert c["truncated"] == (c["tokens"] == 24)


def test_group_advantages_are_centred_and_the_best_completion_gets_the_largest(tiny_run):
    for g in _groups(tiny_run):
        totals = [c["total"] for c in g["completions"]]
        advs = [c["advantage"] for c in g["completions"]]
        assert sum(advs) == pytest.approx(0.0, abs=1e-3), "group advantages are centred"
        if max(totals) > min(totals):  # the best completion of a group gets the largest advantage
            assert advs.index(max(advs)) == totals.index(max(totals))


def test_resume_continues_at_step_4(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.dir, run_dir)  # a copy: the session's run stays as recorded for the other tests
    proc = run_engine(["--run-dir", str(run_dir), "--resume", "--max-steps", "4"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(RunDir(run_dir).events)
    starts = [e for e in events if e["type"] == "run_start"]
    assert len(starts) == 2 and starts[1]["resumed"] and starts[1]["resume_from"].endswith("checkpoint-3")
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3, 4]
    groups, _ = read_rollouts(RunDir(run_dir).rollouts)
    assert sorted({g["step"] for g in groups}) == [1, 2, 3, 4]
    assert RunDir(run_dir).latest_checkpoint().name == "checkpoint-4"


def test_new_run_refuses_existing_run_dir(tiny_run, test_preset):
    run_dir = tiny_run.dir
    before = RunDir(run_dir).events.read_bytes()
    proc = run_engine(["--preset", str(test_preset), "--run-dir", str(run_dir)])
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr and "--resume" in proc.stderr
    assert RunDir(run_dir).events.read_bytes() == before


def test_misspelled_key_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "tiny"\n[train]\nlearnig_rate = 1e-5\n')
    run_dir = tmp_path / "never"
    proc = run_engine(["--preset", str(bad), "--run-dir", str(run_dir)])
    assert proc.returncode == 2
    assert "learnig_rate" in proc.stderr and "learning_rate" in proc.stderr and str(bad) in proc.stderr
    assert not run_dir.exists()


def test_headless_preflight_error_exits_2(tmp_path):
    run_dir = tmp_path / "never"
    proc = run_grpo_tui(
        [
            "--no-ui",
            "--preset",
            "tiny",
            "--set",
            "train.num_generations=3",
            "--run-dir",
            str(run_dir),
        ]
    )
    assert proc.returncode == 2
    assert "num_generations" in proc.stderr and "divisible" in proc.stderr
    assert not run_dir.exists()


def test_shared_prompt_prefix_trains_as_trl_does(tmp_path, test_preset):
    """share_prompt_prefix on and off, same seed: the same completions, rewards, loss and gradient norm."""
    metrics = {}
    for on in (True, False):
        run_dir = tmp_path / f"shared-{on}"
        proc = run_engine(
            [
                "--preset",
                str(test_preset),
                "--run-dir",
                str(run_dir),
                "--max-steps",
                "2",
                "--set",
                f"train.share_prompt_prefix={str(on).lower()}",
            ]
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        steps = [e for e in read_events(RunDir(run_dir).events) if e["type"] == "step"]
        metrics[on] = [{k: s["metrics"][k] for k in ("reward", "loss", "grad_norm", "num_tokens")} for s in steps]
        # `engine train` run directly prints its report to stdout (the launchers tee it to engine.log)
        log = proc.stdout
        # two prompts of G=4 per batch: each step's one scoring pass and one generation shared them
        assert (
            "share_prompt_prefix: 2 scoring passes and 2 generations ran on shared prompts; 0 and 0" in log
        ) == on, log[-2000:]
    assert len(metrics[True]) == 2
    for shared, plain in zip(metrics[True], metrics[False]):
        assert shared["reward"] == plain["reward"] and shared["num_tokens"] == plain["num_tokens"]
        assert shared["loss"] == pytest.approx(plain["loss"], rel=1e-3, abs=1e-5)
        assert shared["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-3)


@pytest.mark.parametrize("shared", [False, True])
def test_stop_strings_end_each_completion_at_the_string(tmp_path, test_preset, shared):
    """[train] stop_strings: a completion that meets the string ends there, with the end-of-turn token (not cut)."""
    run_dir = tmp_path / "stop"
    proc = run_engine(
        [
            "--preset",
            str(test_preset),
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "1",
            "--set",
            'train.stop_strings=["e", "a", "o"]',
            "--set",
            f"train.share_prompt_prefix={str(shared).lower()}",
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    limit = json.loads(RunDir(run_dir).config.read_text())["train"]["max_completion_length"]
    completions = [c for g in read_rollouts(RunDir(run_dir).rollouts)[0] for c in g["completions"]]
    stopped = [c for c in completions if c["tokens"] < limit]
    assert len(stopped) >= len(completions) // 2, [(c["tokens"], c["text"][-20:]) for c in completions]
    # a stop ends the row at the token that completes a string (a token may run a few characters past it); a row
    # without one ended on the random model's own end-of-turn token or ran to the cap. Three common letters make
    # every row stop early in this run, so the row that stopped last is among them.
    first = [min((c["text"].index(x) for x in "eao" if x in c["text"]), default=None) for c in completions]
    assert sum(f is not None for c, f in zip(completions, first) if c in stopped) >= 2, [c["text"] for c in stopped]
    for c, f in zip(completions, first):
        if f is not None:
            assert len(c["text"]) - f <= 12, (c["tokens"], c["text"])
        if c["tokens"] < limit:  # it ended on the string, with the end-of-turn token: not cut at the cap
            assert not c["truncated"]
    # TRL's own count agrees, the row that stopped last included (it has no padding to hold its end token)
    step = next(e for e in read_events(RunDir(run_dir).events) if e["type"] == "step")
    cut = sum(c["tokens"] >= limit for c in completions) / len(completions)
    assert step["metrics"]["completions/clipped_ratio"] == pytest.approx(cut), [c["tokens"] for c in completions]
