"""The engine end to end: a real TRL GRPO run of a tiny random Llama, its run directory field by field, resume."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from grpo_tui.engine.train.phase_timer import PHASES
from grpo_tui.rundir.events import read_events
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


def test_headless_run_exits_0_quickly(tiny_run):
    run_dir, proc, seconds = tiny_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert seconds < 120, f"3 tiny steps took {seconds:.0f}s"
    out = proc.stdout
    assert "step 3/3" in out and "Run summary" in out and "finished" in out


def test_run_directory_layout(tiny_run):
    run = RunDir(tiny_run[0])
    cfg = json.loads(run.config.read_text())
    assert cfg["model"]["name"] == "tiny-random" and cfg["train"]["max_steps"] == 3
    assert set(cfg) >= {"preset", "model", "data", "prompt", "rewards", "train"}
    assert run.engine_log.read_text().count("step ") >= 3
    # the bandwidth behind each step's generation bound: measured once, at start
    log = run.engine_log.read_text()
    assert "generation bound:" in log and "GB/s memory bandwidth on cpu" in log
    assert (run.control.stat().st_mode & 0o777) == 0o700
    ckpt = run.latest_checkpoint()
    assert ckpt is not None and ckpt.name == "checkpoint-3"
    assert (ckpt / "model.safetensors").exists() and (ckpt / "optimizer.pt").exists()
    assert not run.pid_file.exists(), "the pid file is removed when the engine exits"


def test_event_log_field_by_field(tiny_run):
    events = read_events(RunDir(tiny_run[0]).events)
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in events)
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    start = events[0]
    assert start["reward_names"] == ["correctness", "xmlcount", "distinct_chars", "crashy"]
    assert start["reward_weights"]["crashy"] == 0.5 and start["num_generations"] == 4
    assert start["resumed"] is False and start["device"] == "cpu" and start["versions"]["trl"].startswith("1.16")
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[:3] == ["starting", "loading_model", "running"] and states[-1] == "finished"
    ds = next(e for e in events if e["type"] == "dataset")
    assert ds["rows_used"] == 200 and ds["rows_skipped"] == 0
    model = next(e for e in events if e["type"] == "model")
    assert model["parameters"] == model["trainable"] == 136_384  # tiny-random: h64, 2 layers, 974-token vocab
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert s["max_steps"] == 3 and s["step_time_s"] > 0 and s["elapsed_s"] > 0 and s["eta_s"] >= 0
        for k in STEP_METRICS:
            assert k in s["metrics"], k
        for name in start["reward_names"]:
            assert f"rewards/{name}/mean" in s["metrics"]
        assert 0.0 <= s["correct_frac"] <= 1.0
        assert s["tokens_per_s"] > 0
        # where the step went: the phases add up to the step's wall time
        phases = s["phase_s"]
        assert set(phases) == set(PHASES) and all(v >= 0 for v in phases.values())
        assert abs(sum(phases.values()) - s["step_time_s"]) <= 0.03 * s["step_time_s"] + 0.02, (phases, s)
        for name in ("generation", "rewards", "forward_backward", "optimizer", "recording"):
            assert phases[name] > 0, (name, phases)
        assert phases["other"] < 0.1 * s["step_time_s"], phases
        assert s["generation_tokens_per_s"] > 0
        # the memory-bandwidth bound of this step's generation (the CPU's, measured with a copy) is above it
        assert s["generation_bound_tokens_per_s"] > s["generation_tokens_per_s"]
    # distinct_chars varies within groups, so GRPO had signal
    assert any(s["metrics"]["frac_reward_zero_std"] < 1.0 for s in steps)
    mem = [e for e in events if e["type"] == "memory"]
    assert len(mem) == 4 and all(m["rss_gb"] > 0 and m["total_gb"] > 0 for m in mem)
    ck = [e for e in events if e["type"] == "checkpoint"]
    assert [(c["step"], c["reason"]) for c in ck] == [(3, "final")]
    end = events[-1]
    assert end["status"] == "finished" and end["exit_code"] == 0 and end["step"] == 3


def test_crashing_user_reward_is_counted_not_fatal(tiny_run):
    events = read_events(RunDir(tiny_run[0]).events)
    fails = [e for e in events if e["type"] == "reward_failure"]
    assert fails, "crashy raises on some completions; failures must be reported"
    assert all(f["reward"] == "crashy" and f["count"] >= 1 and "deliberate failure" in f["example"] for f in fails)
    assert events[-1]["status"] == "finished"


def test_rollouts_field_by_field(tiny_run):
    groups, skipped = read_rollouts(RunDir(tiny_run[0]).rollouts)
    assert skipped == 0
    # 8 completions per step, G=4 -> 2 groups per step, 3 steps
    assert [(g["step"], g["group"]) for g in groups] == [(s, i) for s in (1, 2, 3) for i in (0, 1)]
    names = ["correctness", "xmlcount", "distinct_chars", "crashy"]
    weights = {"correctness": 1.0, "xmlcount": 1.0, "distinct_chars": 1.0, "crashy": 0.5}
    for g in groups:
        assert g["v"] == 1 and g["prompt"].endswith("now?") and g["gold"].isdigit()
        assert len(g["completions"]) == 4
        for c in g["completions"]:
            for k, typ in COMPLETION_FIELDS.items():
                assert isinstance(c[k], typ), (k, c[k])
            assert list(c["rewards"]) == names
            assert c["total"] == pytest.approx(sum(weights[n] * c["rewards"][n] for n in names), abs=1e-4)
            assert 1 <= c["tokens"] <= 24
            assert c["truncated"] == (c["tokens"] == 24)
        totals = [c["total"] for c in g["completions"]]
        advs = [c["advantage"] for c in g["completions"]]
        assert sum(advs) == pytest.approx(0.0, abs=1e-3), "group advantages are centred"
        if max(totals) > min(totals):  # the best completion of a group gets the largest advantage
            assert advs.index(max(advs)) == totals.index(max(totals))


def test_resume_continues_at_step_4(tiny_run):
    run_dir = tiny_run[0]
    proc = run_cli(["-P", "-m", "grpo_tui.engine", "train", "--run-dir", str(run_dir), "--resume", "--max-steps", "4"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(RunDir(run_dir).events)
    starts = [e for e in events if e["type"] == "run_start"]
    assert len(starts) == 2 and starts[1]["resumed"] and starts[1]["resume_from"].endswith("checkpoint-3")
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3, 4]
    groups, _ = read_rollouts(RunDir(run_dir).rollouts)
    assert sorted({g["step"] for g in groups}) == [1, 2, 3, 4]
    assert RunDir(run_dir).latest_checkpoint().name == "checkpoint-4"


def test_new_run_refuses_existing_run_dir(tiny_run, test_preset):
    run_dir = tiny_run[0]
    before = RunDir(run_dir).events.read_bytes()
    proc = run_cli(["-P", "-m", "grpo_tui.engine", "train", "--preset", str(test_preset), "--run-dir", str(run_dir)])
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr and "--resume" in proc.stderr
    assert RunDir(run_dir).events.read_bytes() == before


def test_misspelled_key_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "tiny"\n[train]\nlearnig_rate = 1e-5\n')
    run_dir = tmp_path / "never"
    proc = run_cli(["-P", "-m", "grpo_tui.engine", "train", "--preset", str(bad), "--run-dir", str(run_dir)])
    assert proc.returncode == 2
    assert "learnig_rate" in proc.stderr and "learning_rate" in proc.stderr and str(bad) in proc.stderr
    assert not run_dir.exists()


def test_headless_preflight_error_exits_2(tmp_path):
    run_dir = tmp_path / "never"
    proc = run_cli(
        [
            "-m",
            "grpo_tui.tui.cli",
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
        proc = run_cli(
            [
                "-P",
                "-m",
                "grpo_tui.engine",
                "train",
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
    proc = run_cli(
        [
            "-P",
            "-m",
            "grpo_tui.engine",
            "train",
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
