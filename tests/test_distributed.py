"""Two processes through `accelerate launch` (gloo on the CPU): one writer, ranks in step, resume after stop."""

from __future__ import annotations

import time

from support.polling import take_event
from support.processes import run_engine

from grpo_tui.engine.config import load_config
from grpo_tui.engine.distributed import accelerate_argv
from grpo_tui.rundir.control import send_command
from grpo_tui.rundir.event_reader import EventTail, read_events
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import read_rollouts
from grpo_tui.tui.launcher import launch_engine

TWO = ["distributed.num_processes=2", "train.max_completion_length=8"]


def test_accelerate_command_per_backend():
    cfg = load_config(
        "tiny",
        [
            "distributed.num_processes=8",
            "distributed.num_machines=2",
            "distributed.machine_rank=1",
            "distributed.main_process_ip=10.0.0.1",
        ],
    )
    argv = accelerate_argv(cfg, ["train", "--run-dir", "r"])
    joined = " ".join(argv)
    assert "--num_processes 8 --num_machines 2 --machine_rank 1 --main_process_ip 10.0.0.1" in joined
    assert "--multi_gpu" in argv and argv[-4:] == ["grpo_tui.engine", "train", "--run-dir", "r"]
    z3 = " ".join(
        accelerate_argv(
            load_config(
                "tiny",
                ["distributed.num_processes=2", "distributed.backend=deepspeed-zero3", "distributed.cpu_offload=true"],
            ),
            [],
        )
    )
    assert "--use_deepspeed --zero_stage 3 --offload_optimizer_device cpu --offload_param_device cpu" in z3
    fsdp = " ".join(
        accelerate_argv(load_config("tiny", ["distributed.num_processes=2", "distributed.backend=fsdp2"]), [])
    )
    assert "--use_fsdp --fsdp_version 2" in fsdp


def test_two_processes_pause_checkpoint_stop_resume(tmp_path):
    run_dir = tmp_path / "run"
    engine = launch_engine("tiny", run_dir, max_steps=10_000, overrides=TWO)  # ends with the test's stop
    try:
        assert engine.wait_started(timeout=240), engine.preflight_output()
        run = RunDir(run_dir)
        tail, seen = EventTail(run.events), []
        start = take_event(tail, seen, lambda e: e["type"] == "run_start", timeout=120)
        assert start["world_size"] == 2
        take_event(tail, seen, lambda e: e["type"] == "step" and e["step"] >= 1, timeout=240)

        send_command(run.control, "pause")
        paused = take_event(tail, seen, lambda e: e["type"] == "state" and e["state"] == "paused")
        time.sleep(2.0)
        assert not [e for e in tail.read_new() + seen if e["type"] == "step" and e["step"] > paused["step"]]
        send_command(run.control, "checkpoint")  # both ranks take part in the save, rank 0 writes it
        ck = take_event(tail, seen, lambda e: e["type"] == "checkpoint")
        assert ck["reason"] == "command" and ck["step"] == paused["step"]
        send_command(run.control, "resume")
        take_event(tail, seen, lambda e: e["type"] == "step" and e["step"] > paused["step"])

        send_command(run.control, "stop")
        end = take_event(tail, seen, lambda e: e["type"] == "run_end", timeout=120)
        assert end["status"] == "stopped"
        assert engine.wait(timeout=120) == 0
    finally:
        if engine.poll() is None:
            engine.proc.kill()

    events = read_events(run.events)
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert steps == list(range(1, end["step"] + 1)), "each step written once, by rank 0 only"
    assert sum(e["type"] == "run_start" for e in events) == 1
    mem = [e for e in events if e["type"] == "memory"]
    assert all(len(m["ranks"]) == 2 for m in mem), "memory is sampled on both ranks"
    groups, _ = read_rollouts(run.rollouts)
    # 8 completions per rank per step, G=4: 4 whole groups a step, gathered from both ranks
    assert all(len(g["completions"]) == 4 for g in groups)
    assert sorted({(g["step"], g["group"]) for g in groups}) == [(s, i) for s in steps for i in range(4)]
    assert (run.root / "engine.rank1.log").exists()

    # resume after the stop: both ranks load the checkpoint and the run goes on from the next step
    proc = run_engine(
        [
            "--run-dir",
            str(run_dir),
            "--resume",
            "--max-steps",
            str(end["step"] + 1),
        ],
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = read_events(run.events)
    assert [e["step"] for e in events if e["type"] == "step"] == list(range(1, end["step"] + 2))
    starts = [e for e in events if e["type"] == "run_start"]
    assert len(starts) == 2 and starts[1]["resumed"] and starts[1]["world_size"] == 2
