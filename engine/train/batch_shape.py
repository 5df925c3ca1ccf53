"""How big one generation batch is: the rows a process decodes together, and the prompts they come from.

TRL generates `per_device_train_batch_size x steps_per_generation` completions per process at once (the
gradient accumulation steps when steps_per_generation is unset), in groups of `num_generations` per prompt.
"""

from __future__ import annotations

from grpo_tui.engine.config import Config


def completions_per_generation(cfg: Config) -> int:
    """Completions one process generates in one batch: the rows decoded together."""
    t = cfg.train
    return t.per_device_train_batch_size * (t.steps_per_generation or t.gradient_accumulation_steps)


def prompts_per_batch(cfg: Config) -> int:
    """Distinct prompts in one generation batch: fewer usable rows than this can't make a single step."""
    return max(1, completions_per_generation(cfg) * cfg.distributed.num_processes // cfg.train.num_generations)
