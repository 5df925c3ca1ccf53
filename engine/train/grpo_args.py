"""TRL's GRPOConfig from a preset: the [train] fields TRL knows pass through, the engine sets the few it owns."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig

from grpo_tui.engine.config import Config
from grpo_tui.rundir.layout import RunDir


def tracker_settings(cfg: Config, run_root: Path) -> dict[str, Any]:
    """report_to, run_name and project for TRL, with the trackers' files kept inside the run directory.

    Trackers get TRL's logs (and W&B its completion tables) beside events.jsonl, which stays the record the
    UIs read. The environment variables are defaults: a user's own WANDB_DIR or TENSORBOARD_LOGGING_DIR wins.
    """
    t = cfg.train
    report_to = [t.report_to] if isinstance(t.report_to, str) else list(t.report_to)
    if report_to and report_to != ["none"]:
        trackers = RunDir(run_root).trackers
        trackers.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(trackers / "tensorboard"))
        os.environ.setdefault("WANDB_DIR", str(trackers))
        os.environ.setdefault("WANDB_PROJECT", t.project or "grpo-tui")
    return {
        "report_to": report_to,
        "run_name": t.run_name or Path(run_root).resolve().name,
        "project": t.project or "grpo-tui",
    }


def grpo_args(cfg: Config, output_dir: Path, device: str, max_steps: int | None = None) -> GRPOConfig:
    """TRL's config from ours. Reward weights come in the preset's order, the order build_rewards returns.

    Every [train] field named like a GRPOConfig field passes straight through, then the few the engine owns
    (engine.config.ENGINE_OWNED), then the TRL fields the preset wrote directly (trl_extra).
    """
    t = cfg.train
    bf16 = t.bf16 if t.bf16 is not None else (device == "cuda" and torch.cuda.is_bf16_supported())
    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    kwargs = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name in known}
    kwargs.update(
        output_dir=str(output_dir),
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        reward_weights=list(cfg.reward_weights().values()),
        max_steps=max_steps or t.max_steps,
        bf16=bf16,
        data_seed=t.seed,
        # Always explicit: TRL 1.16 turns gradient checkpointing on by default.
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        **vllm_server_args(cfg),
        # Events are the progress report: log every step, no tqdm bars in engine.log.
        logging_steps=1,
        disable_tqdm=True,
        save_strategy="steps" if t.save_steps > 0 else "no",
        save_steps=max(t.save_steps, 1),
        use_cpu=device == "cpu",
        **tracker_settings(cfg, Path(output_dir).parent),
    )
    if cfg.data.balance_by:  # the loader's rounds are the order; TRL's sampler would reshuffle them
        kwargs["shuffle_dataset"] = False
    kwargs.update(t.trl_extra)
    return GRPOConfig(**kwargs)


def vllm_server_args(cfg: Config) -> dict[str, Any]:
    """Server mode's address, from [distributed]; the colocate knobs pass through from [train] by name."""
    d = cfg.distributed
    # TRL's own default host, 0.0.0.0, reaches a `trl vllm-serve` on this machine
    return dict(
        vllm_server_host=d.vllm_server_host or "0.0.0.0",
        vllm_server_port=d.vllm_server_port,
        vllm_group_port=d.vllm_group_port,
        vllm_server_timeout=d.vllm_server_timeout,
    )
