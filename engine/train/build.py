"""The named steps of a GRPO run's set-up: the model, the rows it trains on, the trainer and its callback.

Each step takes what it needs as arguments and hands back what it built; nothing is attached to an object
after it is made. engine/train/orchestrator.py calls them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig

from grpo_tui.engine.config import Config, PresetError
from grpo_tui.engine.data.loader import DataReport, drop_long_prompts, prompt_token_limit, to_dataset
from grpo_tui.engine.eval.callback import make_eval_callback
from grpo_tui.engine.models import LoadedModel, load_model, lora_config, pick_threads
from grpo_tui.engine.rewards.trl_call import TrlReward
from grpo_tui.engine.train.batch_shape import prompts_per_batch
from grpo_tui.engine.train.commands import CommandWatcher
from grpo_tui.engine.train.dynamic_sampling import DynamicSamplingGRPOTrainer
from grpo_tui.engine.train.engine_callback import EngineCallback
from grpo_tui.engine.train.generation_bound import generation_bound
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer
from grpo_tui.engine.train.grpo_args import grpo_args
from grpo_tui.engine.train.rollout_recorder import RolloutRecorder
from grpo_tui.engine.train.sft import starting_model
from grpo_tui.engine.train.telemetry import MemoryProbe
from grpo_tui.rundir.checkpoints import checkpoint_step
from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.health import HealthMonitor
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import RolloutWriter


@dataclass
class PolicyModel:
    """The loaded policy and TRL's config for it."""

    loaded: LoadedModel
    args: GRPOConfig
    parameters: int  # all parameters (ZeRO-3: the whole model, not this rank's shard)


def build_model(cfg: Config, run: RunDir, device: str, events: Any, report: DataReport) -> PolicyModel:
    """Load the model GRPO starts from (the base model, or the SFT stage's output on resume)."""
    print(
        f"{report.rows_used} training rows ({sum(report.skipped.values())} skipped); loading {cfg.model.name}",
        flush=True,
    )
    threads = pick_threads(cfg.train.torch_threads, device)
    if threads is not None:
        print(f"torch threads: {threads} (train.torch_threads = {cfg.train.torch_threads}; 0 is auto)", flush=True)

    def model_log(message: str) -> None:  # the one-time GGUF conversion's progress, also as the state detail
        print(message, flush=True)
        events.state("loading_model", detail=message)

    # TRL's config first: under `accelerate launch --zero3_init_flag` building it registers the DeepSpeed
    # config (a weak reference held while `args` lives), so from_pretrained below loads the weights
    # partitioned under deepspeed.zero.Init instead of whole on every rank.
    args = grpo_args(cfg, run.checkpoints, device)
    loaded = load_model(starting_model(cfg, run.root), device, log=model_log)
    parameters = sum(getattr(p, "ds_numel", p.numel()) for p in loaded.model.parameters())
    return PolicyModel(loaded, args, parameters)


def build_dataset(
    cfg: Config, rows: list[dict[str, Any]], report: DataReport, loaded: LoadedModel, events: Any
) -> list[dict[str, Any]]:
    """The rows whose prompts leave room for a completion in the model's context; PresetError if too few."""
    limit = prompt_token_limit(cfg.data.max_prompt_tokens, loaded.model.config, cfg.train.max_completion_length)
    before = len(rows)
    rows = drop_long_prompts(rows, loaded.tokenizer, cfg.prompt, limit, report)
    if len(rows) < before:
        events.emit("dataset", **report.as_event(), max_prompt_tokens=limit)
        print(f"{before - len(rows)} rows skipped: prompt over {limit} tokens", flush=True)
        if len(rows) < prompts_per_batch(cfg):
            raise PresetError(
                f"[data] {len(rows)} rows left after skipping prompts over {limit} tokens, fewer "
                f"than one generation batch ({prompts_per_batch(cfg)} prompts)."
            )
    return rows


def build_recorder(
    cfg: Config, run: RunDir, rewards: list[TrlReward], weights: list[float], tokenizer: Any
) -> RolloutRecorder:
    """rollouts.jsonl's writer: every scored group, with its rewards, advantages and tokens (rank 0 only)."""
    return RolloutRecorder(
        RolloutWriter(run.rollouts),
        [r.__name__ for r in rewards],
        weights,
        cfg.train.num_generations,
        cfg.prompt.format,
        cfg.train.max_completion_length,
        tokenizer=tokenizer,
        token_stats=cfg.train.record_token_stats,
    )


def build_trainer(
    cfg: Config,
    run: RunDir,
    policy: PolicyModel,
    rows: list[dict[str, Any]],
    rewards: list[TrlReward],
    recorder: RolloutRecorder | None,
    events: Any,
) -> RecordingGRPOTrainer:
    """TRL's GRPOTrainer with the engine's hooks (dynamic sampling when asked); writes the `model` event."""
    loaded = policy.loaded
    if cfg.sft.enabled:
        # TRL builds the KL reference model from the policy's config._name_or_path; after an in-process SFT
        # stage that is still the base model's name. Point it at the SFT weights, fresh and resumed alike.
        loaded.model.config._name_or_path = str(run.sft_model.resolve())
    torch.manual_seed(cfg.train.seed)
    # drop all-right/all-wrong groups and refill the batch
    trainer_cls = DynamicSamplingGRPOTrainer if cfg.curriculum.dynamic_sampling else RecordingGRPOTrainer
    trainer = trainer_cls(
        model=loaded.model,
        reward_funcs=rewards,
        args=policy.args,
        train_dataset=to_dataset(rows, cfg.prompt),
        processing_class=loaded.tokenizer,
        share_prompt_prefix=cfg.train.share_prompt_prefix,
        stop_strings=cfg.train.stop_strings,
        fast_cpu_decode=cfg.train.fast_cpu_decode,
        recorder=recorder,
        peft_config=lora_config(cfg.model, getattr(loaded.model.config, "num_hidden_layers", None)),
    )
    if cfg.curriculum.dynamic_sampling:
        c = cfg.curriculum
        trainer.configure_dynamic_sampling(
            c.dynamic_sampling_criterion, c.dynamic_sampling_max_extra, cfg.prompt.format, cfg.train.seed
        )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    ref = getattr(trainer, "ref_model", None)
    events.emit(
        "model",
        name=cfg.model.name,
        path=loaded.path,
        parameters=policy.parameters,
        trainable=trainable,
        reference=ref.config._name_or_path if ref is not None else None,
        dtype=str(loaded.dtype).replace("torch.", ""),
        load_s=round(loaded.load_s, 2),
    )
    return trainer


def build_health(cfg: Config, run: RunDir, events: Any, checkpoint: Path | None, main_rank: bool) -> HealthMonitor:
    """The health rules, fed the recorded steps up to the checkpoint on resume (they see the whole run)."""
    health = HealthMonitor(
        max_completion_length=cfg.train.max_completion_length, dynamic_sampling=cfg.curriculum.dynamic_sampling
    )
    if checkpoint and main_rank:
        for h in health.resume(read_events(run.events), checkpoint_step(checkpoint) or 0):
            events.emit("health", **h)
    return health


def build_callbacks(
    cfg: Config,
    run: RunDir,
    trainer: RecordingGRPOTrainer,
    events: Any,
    watcher: CommandWatcher,
    recorder: RolloutRecorder | None,
    rewards: list[TrlReward],
    device: str,
    checkpoint: Path | None,
    main_rank: bool,
) -> EngineCallback:
    """Add the engine's callback (events, commands, health, live knobs) and the in-run eval; returns the first."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    bound = generation_bound(model, device)
    if bound is not None and bound.bandwidth and main_rank:
        print(
            f"generation bound: {bound.bandwidth / 1e9:,.1f} GB/s memory bandwidth on {device}; a decoding step "
            f"reads {bound.cost.weight_bytes / 2**30:.3f} GiB of weights and {bound.cost.kv_bytes_per_token:,} "
            "bytes of KV cache per token of each row's context",
            flush=True,
        )
    callback = EngineCallback(
        events,
        watcher,
        recorder,
        rewards,
        MemoryProbe(device),
        cfg.train.max_steps,
        cfg.train.save_final,
        trainer=trainer,
        health=build_health(cfg, run, events, checkpoint, main_rank),
        config_path=run.config if main_rank else None,
        learning_rate=cfg.train.learning_rate if checkpoint else None,
        bound=bound,
    )
    trainer.add_callback(callback)
    if cfg.eval.every_steps > 0 and main_rank:  # `eval` events on a held-out subset
        trainer.add_callback(make_eval_callback(cfg, run.root, device, events, callback))
    trainer.remove_callback(PrinterCallback)  # our one-line step report replaces its dict dumps
    return callback
