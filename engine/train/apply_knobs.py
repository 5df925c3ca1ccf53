"""Apply live knobs (a `set` command) to a running TRL GRPOTrainer at a step boundary.

Where TRL 1.16's GRPOTrainer keeps each knob:
- learning rate: the optimizer's param groups and the scheduler's base_lrs
  (set_base_learning_rate keeps the schedule's shape and position);
- temperature / top_p: `trainer.temperature` / `trainer.top_p`, copied at init
  into `generation_config` and `generation_kwargs` (transformers generation) or
  the vLLM generator; the temperature is also baked into the fused LM head
  that scores log-probabilities (trl.trainer.utils.add_fused_lm_head), which is
  therefore added again with the new temperature so sampling and scoring agree;
- beta: `trainer.beta`, read at every generation and loss. With beta = 0 at start
  TRL loads no reference model, so beta can be turned on later only for a LoRA
  model (the base weights, adapter disabled, are the reference);
- reward weights: `trainer.reward_weights` (a tensor in reward-function order),
  and the rollout recorder's copy used for the recorded totals.

TRL trains on each generation batch for steps_per_generation x num_iterations micro-steps. When
gradient_accumulation_steps is a multiple of that, every optimizer step starts on fresh generations and every
knob applies at once. Otherwise a buffer can span an optimizer step, and it keeps what it was generated with:
old log-probs scored at its temperature, and reference log-probs only if beta was on. A temperature change, or
beta turned on, waits (`wait_reason`) for the boundary where the buffer runs out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from grpo_tui.rundir.knobs import KNOBS, REWARD_WEIGHTS, KnobError
from grpo_tui.rundir.private_io import replace_private


def current_knobs(trainer: Any, reward_names: list[str]) -> dict[str, Any]:
    lr = None
    if trainer.optimizer is not None and trainer.optimizer.param_groups:
        lr = trainer.optimizer.param_groups[0].get("initial_lr", trainer.optimizer.param_groups[0]["lr"])
    return {
        "learning_rate": lr if lr is not None else trainer.args.learning_rate,
        "temperature": float(trainer.temperature),
        "top_p": float(trainer.top_p),
        "beta": float(trainer.beta),
        REWARD_WEIGHTS: dict(zip(reward_names, [float(w) for w in trainer.reward_weights])),
    }


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def check_knobs(trainer: Any, values: dict[str, Any], reward_names: list[str]) -> None:
    """Refuse what this trainer can't do live (raises KnobError with the reason)."""
    beta = values.get("beta")
    if beta and not trainer.beta and trainer.ref_model is None:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if not _is_peft(model):
            raise KnobError(
                "beta can't be turned on live: this run started with beta = 0, so no reference model "
                "was loaded; restart with --resume --set train.beta="
                f"{beta:g} (or train LoRA)"
            )
    if REWARD_WEIGHTS in values:
        new = [values[REWARD_WEIGHTS].get(name, float(w)) for name, w in zip(reward_names, trainer.reward_weights)]
        if not any(new):
            raise KnobError("every reward weight would be 0: nothing left to learn from")


def wait_reason(trainer: Any, values: dict[str, Any]) -> str | None:
    """Why these values can't apply at this boundary (the next micro-step trains on buffered generations that
    they would make wrong), or None when they apply now. Call at a step boundary."""
    if not trainer.generations_buffered():
        return None
    why = []
    if "temperature" in values and values["temperature"] != float(trainer.temperature):
        why.append(f"their old log-probs were scored at temperature {float(trainer.temperature):g}")
    if values.get("beta") and not trainer.beta:
        why.append("they carry no reference log-probs")
    if not why:
        return None
    return (
        "waits for the next step that generates afresh: the current generations span optimizer steps "
        f"(steps_per_generation x num_iterations = {trainer.generation_interval()}, gradient_accumulation_steps "
        f"= {trainer.args.gradient_accumulation_steps}) and " + " and ".join(why)
    )


def _set_temperature(trainer: Any, temperature: float) -> None:
    from trl.trainer.utils import add_fused_lm_head

    trainer.temperature = temperature
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if _is_peft(model) else model
    add_fused_lm_head(
        base,
        temperature=temperature,
        cast_lm_head_to_fp32=trainer.args.cast_lm_head_to_fp32,
        outputs=("log_probs", "entropy"),
    )
    if trainer.ref_model is not None:
        ref = trainer.accelerator.unwrap_model(trainer.ref_model)
        add_fused_lm_head(ref, temperature=temperature, cast_lm_head_to_fp32=trainer.args.cast_lm_head_to_fp32)


def apply_knobs(trainer: Any, values: dict[str, Any], reward_names: list[str], recorder: Any = None) -> dict[str, Any]:
    """Change the trainer's knobs in place; returns their previous values. Call at a step boundary."""
    previous = current_knobs(trainer, reward_names)
    if "learning_rate" in values:
        lr = values["learning_rate"]
        if trainer.lr_scheduler is not None:
            set_base_learning_rate(trainer.lr_scheduler, lr)
        else:
            for g in trainer.optimizer.param_groups:
                g["lr"] = g["initial_lr"] = lr
    if "temperature" in values:
        _set_temperature(trainer, values["temperature"])
    if "top_p" in values:
        trainer.top_p = values["top_p"]
    for key in ("temperature", "top_p"):
        if key not in values:
            continue
        if getattr(trainer, "generation_config", None) is not None:
            setattr(trainer.generation_config, key, values[key])
        if isinstance(getattr(trainer, "generation_kwargs", None), dict):
            trainer.generation_kwargs[key] = values[key]
        if getattr(trainer, "vllm_generation", None) is not None:
            setattr(trainer.vllm_generation, key, values[key])
    if "beta" in values:
        trainer.beta = values["beta"]
    if REWARD_WEIGHTS in values:
        weights = trainer.reward_weights.clone()
        for i, name in enumerate(reward_names):
            if name in values[REWARD_WEIGHTS]:
                weights[i] = values[REWARD_WEIGHTS][name]
        trainer.reward_weights = weights
        if recorder is not None:
            recorder.weights = weights.to(torch.float32).clone()
    return previous


def save_knobs(config_path: Path, values: dict[str, Any], reward_names: list[str]) -> None:
    """Write applied knobs into config.json (atomically), so `--resume` continues with them."""
    config_path = Path(config_path)
    cfg = json.loads(config_path.read_text())
    train = cfg.setdefault("train", {})
    for key in KNOBS:
        if key in values:
            train[key] = values[key]
    if REWARD_WEIGHTS in values:
        rewards = cfg.get("rewards") or {}
        keys = list(rewards)  # preset keys ("file.py:fn") in the order the reward names (labels) come in
        for label, key in zip(reward_names, keys):
            if label in values[REWARD_WEIGHTS]:
                w = values[REWARD_WEIGHTS][label]
                if isinstance(rewards[key], dict):
                    rewards[key]["weight"] = w
                else:
                    rewards[key] = w
    replace_private(config_path, json.dumps(cfg, indent=2), "config")


def set_base_learning_rate(scheduler: Any, lr: float) -> None:
    """Make a resumed schedule use `lr` as its peak.

    Loading a checkpoint restores the scheduler's base_lrs from the old run, so
    a resumed run (or one switched to another preset) would silently keep the
    old learning rate. The schedule's shape and position are kept.
    """
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the torch scheduler
    if not hasattr(inner, "base_lrs"):
        return
    inner.base_lrs = [lr for _ in inner.base_lrs]
    lambdas = getattr(inner, "lr_lambdas", None)  # transformers' schedules are all LambdaLR
    current = [lr * f(inner.last_epoch) for f in lambdas] if lambdas else inner.get_lr()
    for group, new in zip(inner.optimizer.param_groups, current):
        group["initial_lr"] = lr
        group["lr"] = new
    inner._last_lr = [g["lr"] for g in inner.optimizer.param_groups]
