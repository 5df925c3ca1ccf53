"""Which training recipes fit one model: `grpo-tui presets --model ID|DIR`.

Each recipe is a shipped preset's batch shape (the base) with the model and the method swapped:
full fine-tuning, LoRA and QLoRA, with and without gradient checkpointing. The estimate is the
same one the presets get (engine.plan.memory.estimate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grpo_tui.engine.config import load_config
from grpo_tui.engine.plan.arch import Arch
from grpo_tui.engine.plan.memory import Estimate, estimate
from grpo_tui.engine.plan.model_source import resolve_arch

DEFAULT_BASE = "gpu24-qwen05b-b8g8"
# Every recipe trains in bf16 without a reference model and generates with transformers, so that
# the method is the only difference between rows.
COMMON = [
    'model.dtype="bfloat16"',
    "train.bf16=true",
    "train.beta=0.0",
    "train.use_vllm=false",
    "model.load_in_4bit=false",
    'train.optim="adamw_torch"',
]
LORA = ["model.lora=true", "model.lora_r=32", "model.lora_alpha=32", 'model.lora_target_modules=["all-linear"]']
RECIPES: tuple[tuple[str, list[str]], ...] = (
    ("full", ["model.lora=false", "model.gradient_checkpointing=false"]),
    ("full + checkpointing", ["model.lora=false", "model.gradient_checkpointing=true"]),
    (
        "full + checkpointing + 8-bit AdamW",
        ["model.lora=false", "model.gradient_checkpointing=true", 'train.optim="paged_adamw_8bit"'],
    ),
    ("LoRA r32", [*LORA, "model.gradient_checkpointing=false"]),
    ("LoRA r32 + checkpointing", [*LORA, "model.gradient_checkpointing=true"]),
    (
        "QLoRA r32 + checkpointing",
        [*LORA, "model.gradient_checkpointing=true", "model.load_in_4bit=true", 'train.optim="paged_adamw_8bit"'],
    ),
)


@dataclass
class RecipeFit:
    recipe: str
    sets: list[str]  # the --set flags that turn the base preset into this recipe
    estimate: Estimate

    def to_json(self, gpu_gb: float | None) -> dict[str, Any]:
        e = self.estimate
        return {
            "recipe": self.recipe,
            "method": e.method,
            "sets": self.sets,
            "peak_gb": None if e.peak_gb is None else round(e.peak_gb, 2),
            "fits": e.fits(gpu_gb),
            "peak_phase": e.peak_phase,
            "phases": {k: round(v, 2) for k, v in e.phases.items()},
            "terms": {t.name: round(t.gb, 3) for t in e.terms if t.bytes},
        }


def recipe_fits(model: str, gpu_gb: float | None, base: str = DEFAULT_BASE) -> tuple[Arch, list[RecipeFit]]:
    """The model's Arch and every recipe's estimate. Raises UnknownArch or PresetError (a bad base)."""
    arch = resolve_arch(model)
    out = []
    for name, sets in RECIPES:
        flags = [f"model.name={json.dumps(model)}", *COMMON, *sets]
        cfg = load_config(base, flags)
        out.append(RecipeFit(name, flags[1:], estimate(cfg, gpu_gb)))
    return arch, out


def arch_json(arch: Arch) -> dict[str, Any]:
    """What `presets --model --json` says about the model itself."""
    return {
        "params": arch.params,
        "active_params": arch.active_params,
        "experts": arch.experts,
        "experts_per_token": arch.experts_per_token,
        "model_type": arch.model_type,
        "hidden": arch.hidden,
        "layers": arch.layers,
        "vocab": arch.vocab,
        "tied_embeddings": arch.tied,
    }
