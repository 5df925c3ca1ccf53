"""Several processes, one run: launching through `accelerate launch`, and keeping ranks in step.

Rank 0 is the only writer of the run directory and the only reader of the
control channel. Whatever it decides at a step boundary (pause, checkpoint,
stop) is broadcast, so every rank acts on the same command at the same step.
Rollouts and memory samples are gathered to rank 0, which writes them once.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from grpo_tui.engine.config import Config
from grpo_tui.rundir.events import check_event

LAUNCHED_ENV = "GRPO_TUI_DISTRIBUTED"  # set on the ranks we launch, so they never re-launch


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def needs_launch(cfg: Config) -> bool:
    """True in the single process that must turn itself into an accelerate job."""
    return cfg.distributed.num_processes > 1 and LAUNCHED_ENV not in os.environ and "WORLD_SIZE" not in os.environ


def accelerate_argv(cfg: Config, engine_args: list[str]) -> list[str]:
    """`accelerate launch ... -m grpo_tui.engine <engine_args>` for the preset's [distributed] section.

    The ranks inherit PYTHONSAFEPATH (set by the caller), so the current directory never
    shadows the engine package in them either."""
    d = cfg.distributed
    argv = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(d.num_processes),
        "--num_machines",
        str(d.num_machines),
        "--machine_rank",
        str(d.machine_rank),
        "--main_process_ip",
        d.main_process_ip,
        "--main_process_port",
        str(d.main_process_port),
        "--mixed_precision",
        "no",  # the trainer's bf16 setting decides, not the launcher
        "--dynamo_backend",
        "no",
    ]
    if d.backend == "ddp":
        argv.append("--multi_gpu")  # torchrun-based; on machines without GPUs the ranks use gloo on the CPU
    elif d.backend.startswith("deepspeed"):
        stage = d.backend[-1]
        argv += ["--use_deepspeed", "--zero_stage", stage]
        if d.cpu_offload:
            argv += ["--offload_optimizer_device", "cpu"]
            if stage == "3":
                argv += ["--offload_param_device", "cpu"]
        if stage == "3":
            argv += ["--zero3_init_flag", "true"]
    elif d.backend == "fsdp2":
        argv += [
            "--use_fsdp",
            "--fsdp_version",
            "2",
            "--fsdp_auto_wrap_policy",
            "TRANSFORMER_BASED_WRAP",
            "--fsdp_state_dict_type",
            "SHARDED_STATE_DICT",
            "--fsdp_cpu_ram_efficient_loading",
            "true",
        ]
        if d.cpu_offload:
            argv += ["--fsdp_offload_params", "true"]
    return argv + ["-m", "grpo_tui.engine", *engine_args]


def init() -> None:
    """Join the process group early, so rank 0 can create the run directory before the others read it."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState()


def _group() -> Any:
    """torch.distributed when this process is in an initialized group of several, else None."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist
    return None


def barrier() -> None:
    if (dist := _group()) is not None:
        dist.barrier()


def finish() -> None:
    """Leave the process group together, after a run every rank finished normally.

    Without it each rank tears its gloo/NCCL connections down at interpreter exit, at its own moment: a rank
    whose peer has already gone can abort (SIGABRT) after a run that succeeded. Not called after a failure,
    where a peer may never reach the barrier.
    """
    if (dist := _group()) is not None:
        dist.barrier()
        dist.destroy_process_group()


def broadcast(obj: Any) -> Any:
    """Rank 0's object on every rank (a no-op with one process)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's object, in rank order, on rank 0 ([] elsewhere); [obj] with one process."""
    if world_size() == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out if is_main() else []


class NullEvents:
    """The event writer of ranks other than 0: they observe, rank 0 writes."""

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        check_event(type, fields)  # the same checks as rank 0's writer, so drift fails on any rank
        return {"type": type, **fields}

    def state(self, state: str, **fields: Any) -> dict[str, Any]:
        return self.emit("state", state=state, **fields)

    def close(self) -> None:
        pass
