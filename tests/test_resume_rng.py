"""Resuming a run makes the steps the uninterrupted run made, token for token, with dynamic sampling on.

Dynamic sampling draws refill prompts from its own RNG, and TRL trains on each generation batch for
steps_per_generation micro-steps. The engine saves both in the checkpoint beside Trainer's own RNG states
(engine_rng_state.json; generation_buffer.pt when the checkpoint falls inside a buffer) and restores them.

One real engine run of a tiny preset (a reward that varies with the text; groups of two, so that about half of them
tie and get refilled; one generation batch for two optimizer steps; a constant learning rate; one thread, so that
both runs add up in the same order) checkpoints every step. Every checkpoint after the first is then removed and
the run resumed from checkpoint-1, in the middle of a generation batch: step 2 must train on the rest of that
batch, step 3 must draw the same refill prompts, and steps 2-4 must sample the same completions and get the same
rewards, advantages, loss and gradient norm as the first pass.
"""

from __future__ import annotations

import shutil

from support.paths import FIXTURES
from support.processes import run_engine, write_preset

from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts.reader import read_rollouts


def test_resumed_dynamic_sampling_run_repeats_the_uninterrupted_steps(tmp_path):
    preset = write_preset(
        tmp_path / "ds-resume.toml",
        f"""
extends = "tiny"
[rewards]
"{FIXTURES / "hash_rewards.py"}:text_hash" = 1.0
[train]
num_generations = 2
per_device_train_batch_size = 8
max_completion_length = 8
steps_per_generation = 2
lr_scheduler_type = "constant"
warmup_ratio = 0.0
max_steps = 4
save_steps = 1
save_total_limit = 4
torch_threads = 1
[curriculum]
dynamic_sampling = true
dynamic_sampling_criterion = "total"
""",
    )
    run_dir = tmp_path / "run"
    proc = run_engine(["--preset", str(preset), "--run-dir", str(run_dir)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = RunDir(run_dir)
    first_checkpoint = run.checkpoints / "checkpoint-1"
    assert (first_checkpoint / "engine_rng_state.json").is_file()
    assert (first_checkpoint / "generation_buffer.pt").is_file()  # step 2 trains on step 1's generations
    assert not (run.checkpoints / "checkpoint-2" / "generation_buffer.pt").exists()  # step 3 generates afresh
    for n in (2, 3, 4):
        shutil.rmtree(run.checkpoints / f"checkpoint-{n}")
    proc = run_engine(["--run-dir", str(run_dir), "--resume"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    events = read_events(run.events)
    starts = [i for i, e in enumerate(events) if e["type"] == "run_start"]
    assert len(starts) == 2 and events[starts[1]]["resume_from"].endswith("checkpoint-1")
    first = {e["step"]: e["metrics"] for e in events[: starts[1]] if e["type"] == "step"}
    again = {e["step"]: e["metrics"] for e in events[starts[1] :] if e["type"] == "step"}
    assert sorted(again) == [2, 3, 4]
    # the refills ran: a run that skipped them would prove nothing about their RNG
    assert first[1]["dynamic_sampling/extra_groups"] > 0 and first[3]["dynamic_sampling/extra_groups"] > 0
    for s in (2, 3, 4):
        for key in ("loss", "grad_norm", "entropy"):
            assert again[s][key] == first[s][key], (s, key)
    for key in ("reward", "reward_std", "dynamic_sampling/extra_groups", "completions/mean_length"):
        assert again[3][key] == first[3][key], key

    groups, _ = read_rollouts(run.rollouts)
    resumed = [g for g in groups if g["step"] >= 2]  # generation batches are recorded at the step they start
    n = len(resumed) // 2
    assert n > 0 and len(resumed) == 2 * n and {g["step"] for g in resumed} == {3}
    before, after = resumed[:n], resumed[n:]  # the first pass's step 3, then the resumed run's
    assert [(g["step"], g["group"]) for g in after] == [(g["step"], g["group"]) for g in before]
    for a, b in zip(after, before):
        assert a["prompt"] == b["prompt"], (a["step"], a["group"])
        assert [(c["text"], c["tokens"], c["rewards"], c["advantage"]) for c in a["completions"]] == [
            (c["text"], c["tokens"], c["rewards"], c["advantage"]) for c in b["completions"]
        ], (a["step"], a["group"])
