"""What to change in a preset that does not fit a GPU, each change with its new estimate."""

from __future__ import annotations

import copy
from typing import Any

from grpo_tui.engine.config import Config, PresetError, validate
from grpo_tui.engine.plan.memory import HEADROOM, Estimate, estimate

MAX_CHANGES = 5


def variant(cfg: Config, changes: dict[str, Any]) -> Config | None:
    """cfg with `changes` ({"section.key": value}) applied, or None when the result is not a valid preset."""
    new = copy.deepcopy(cfg)
    for key, value in changes.items():
        section, name = key.split(".")
        setattr(getattr(new, section), name, value)
    try:
        validate(new)
    except PresetError:
        return None
    return new


def candidate_changes(cfg: Config) -> list[tuple[str, dict[str, Any], bool]]:
    """(what, changes, keeps_the_recipe) for every single change that lowers memory."""
    m, t = cfg.model, cfg.train
    out: list[tuple[str, dict[str, Any], bool]] = []
    if not m.gradient_checkpointing:
        out.append(("turn on gradient checkpointing", {"model.gradient_checkpointing": True}, True))
    if t.per_device_train_batch_size % 2 == 0:
        ch = {
            "train.per_device_train_batch_size": t.per_device_train_batch_size // 2,
            "train.gradient_accumulation_steps": t.gradient_accumulation_steps * 2,
        }
        if t.steps_per_generation:
            ch["train.steps_per_generation"] = t.steps_per_generation * 2
        out.append(
            (
                "halve the completions per micro-batch, doubling gradient accumulation (same G, same prompts per step)",
                ch,
                True,
            )
        )
    if t.use_vllm and t.vllm_mode == "colocate":
        out.append(("turn off vLLM (generate with transformers)", {"train.use_vllm": False}, True))
    if not m.lora and "8bit" not in t.optim.lower():
        out.append(("use an 8-bit optimizer (needs bitsandbytes)", {"train.optim": "paged_adamw_8bit"}, False))
    if t.beta > 0 and not m.lora:
        out.append(("drop the KL term and its reference model", {"train.beta": 0.0}, False))
    if t.max_completion_length >= 128:
        out.append(
            ("halve the completion length", {"train.max_completion_length": t.max_completion_length // 2}, False)
        )
    # TRL 1.16 holds activations for per_device_train_batch_size completions whatever G is, so a
    # smaller group only saves memory when the micro-batch can't be halved on its own.
    if t.per_device_train_batch_size % 2 and t.per_device_train_batch_size > 1 and t.num_generations >= 4:
        g = t.num_generations // 2
        ch = {
            "train.num_generations": g,
            "train.per_device_train_batch_size": g,
            "train.gradient_accumulation_steps": 1,
            "train.steps_per_generation": None,
        }
        out.append((f"use smaller groups (G={g}, one group per micro-batch)", ch, False))
    if not m.lora:
        out.append(("train LoRA adapters instead of all weights", {"model.lora": True, "model.lora_r": 32}, False))
    elif not m.load_in_4bit:
        out.append(("load the base model in 4-bit (QLoRA; needs bitsandbytes)", {"model.load_in_4bit": True}, False))
    return out


def set_flags(changes: dict[str, Any]) -> str:
    """The `--set` flags that make `changes`."""

    def literal(v: Any) -> str:
        if v is None:
            return "none"
        return str(v).lower() if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else repr(v))

    return " ".join(f"--set {k}={literal(v)}" for k, v in changes.items())


def _single_changes(cfg: Config, est: Estimate, gpu_gb: float, **kw: Any) -> list[tuple]:
    """Each single change that saves memory: (misses, changes_recipe, peak, what, changes), best first."""
    singles = []
    for what, changes, keeps in candidate_changes(cfg):
        new = variant(cfg, changes)
        if new is None:
            continue
        e2 = estimate(new, gpu_gb, **kw)
        if e2.peak_gb is not None and e2.peak_gb < est.peak_gb - 0.05:
            singles.append((not e2.fits(gpu_gb), not keeps, e2.peak_gb, what, changes))
    return sorted(singles, key=lambda s: (s[0], s[1], s[2]))


def _combined_changes(cfg: Config, gpu_gb: float, **kw: Any) -> str:
    """Apply the biggest saving until the preset fits (at most MAX_CHANGES changes): one advice line."""
    cur, cur_est, applied = cfg, estimate(cfg, gpu_gb, **kw), []
    for _ in range(MAX_CHANGES):
        best = None  # (peak, what, changes, config, its estimate)
        for what, changes, _keeps in candidate_changes(cur):
            new = variant(cur, changes)
            if new is None:
                continue
            e = estimate(new, gpu_gb, **kw)
            if e.peak_gb is not None and (best is None or e.peak_gb < best[0]):
                best = (e.peak_gb, what, changes, new, e)
        if best is None or best[0] >= cur_est.peak_gb - 0.05:
            break
        cur, cur_est = best[3], best[4]
        applied.append(best)
        if cur_est.fits(gpu_gb):
            break
    if not applied:
        return "  no change in reach fits this preset; pick a smaller model preset."
    final = cur_est
    verdict = "fits" if final.fits(gpu_gb) else "still does not fit"
    return f"  together: {'; '.join(a[1] for a in applied)} -> {final.peak_gb:.1f} GB ({verdict}): " + " ".join(
        set_flags(a[2]) for a in applied
    )


def fit_advice(cfg: Config, gpu_gb: float, **kw: Any) -> list[str]:
    """[] when the preset fits gpu_gb; else a warning line and what to change, each with its new estimate."""
    est = estimate(cfg, gpu_gb, **kw)
    if est.device != "gpu":
        return []
    if est.peak_gb is None:
        return [f"{est.preset}: can't tell whether it fits {gpu_gb:g} GB: {est.unknown}."]
    if est.fits(gpu_gb):
        return []
    budget = gpu_gb * (1 - HEADROOM)
    lines = [
        f"{est.preset} needs about {est.peak_gb:.1f} GB (estimate) but the GPU has {gpu_gb:g} GB "
        f"({budget:.1f} GB usable); it will likely run out of memory. To fit, change:"
    ]
    if est.vllm_problem:
        lines.append(f"  - {est.vllm_problem}")
    singles = _single_changes(cfg, est, gpu_gb, **kw)
    for misses, _, peak, what, changes in singles[:5]:
        lines.append(f"  - {what}: {set_flags(changes)} -> {peak:.1f} GB{'' if misses else ' (fits)'}")
    if not any(not s[0] for s in singles):  # no single change is enough
        lines.append(_combined_changes(cfg, gpu_gb, **kw))
    return lines
