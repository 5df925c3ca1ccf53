"""Every use of TRL's (and transformers' Trainer's) private internals, in one module.

GRPOTrainer has no public hook for "a generation batch was scored", so the
engine overrides two private methods and reads a few private attributes. They
are all here, behind names the rest of the engine uses, and
tests/test_trl_hooks.py checks their signatures with `inspect.signature`, so a
TRL upgrade that changes them fails in CI instead of mid-run:

- `GRPOTrainer._calculate_rewards(inputs, prompts, completions, completion_ids_list)`:
  returns the raw (rows, reward functions) reward tensor; wrapped to keep it.
- `GRPOTrainer._generate_and_score_completions(inputs)`: generates and scores
  one generation batch, returns TRL's batch dict (`advantages`, `completion_mask`,
  ...); overridden to call `generate_batch`, the engine's hook.
- `GRPOTrainer._metrics["train"]`: key -> list of values, one appended per
  scoring call, averaged at `log()`; `replace_metrics` swaps what one step appended.
- `GRPOTrainer._tokenizer`: the tokenizer inside the processing class (pad id).
- `Trainer._save_checkpoint(model, trial)`: save now, outside the save schedule.
- `trl.trainer.utils.nanstd`: TRL's std that skips NaN (a reward that returned None).
- Shared prompt prefixes (engine/train/shared_prefix.py, `share_prompt_prefix`) replace the
  scoring pass of `_get_per_token_logps_and_entropies` when every row's extra inputs are None,
  calling the model with TRL's fused LM head (`fused_lm_head=True`, added by GRPOTrainer's
  `__init__`); and, inside `_generate_single_turn`, give the unwrapped model's `generate` a
  prefilled cache (an instance attribute set for that call only).
- On the CPU (`[train] fast_cpu_decode`) the same per-call `generate` decodes with a KV cache grown in place
  and the wide matmuls turned round (engine/fast_decode.py).
- Stop strings (`[train] stop_strings`) ride on the same per-call `generate`: it gets
  `stop_strings` and the tokenizer, and a row a stop string ended gets the end-of-turn token
  where its padding starts (engine/stopping.py), because TRL's transformers path (`_generate_single_turn`) cuts each
  completion at its first `eos_token_ids` token.
- Phase timing (engine/train/phases.py) wraps `Trainer.training_step`, `Trainer._prepare_inputs`,
  `GRPOTrainer._generate_single_turn` (returns completion ids first),
  `GRPOTrainer._get_per_token_logps_and_entropies` (no grad: old-policy/reference passes),
  `Trainer._clip_grad_norm`, `Trainer.log` and `Trainer._save_checkpoint`: each second
  of a step is charged to exactly one phase.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from grpo_tui.engine.fast_decode import fast_cpu_generate
from grpo_tui.engine.stopping import end_stopped_rows
from grpo_tui.engine.train import shared_prefix
from grpo_tui.engine.train.phases import PhaseCallback, PhaseTimer

__all__ = ["HookedGRPOTrainer", "ScoredBatch", "nanstd"]


@dataclass
class ScoredBatch:
    """One generation batch as TRL scored it: rows in order, groups of num_generations consecutive rows."""

    out: dict[str, Any]  # TRL's batch dict, what training consumes
    inputs: list[dict[str, Any]]
    completions: list[Any]
    completion_ids: list[list[int]]
    rewards: torch.Tensor  # (rows, reward functions) on the CPU, raw, NaN where a function returned None


class HookedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with public names for the private parts the engine relies on.

    Subclasses override `generate_batch` (not TRL's private method) and call
    `score_batch` for TRL's generation and scoring of a batch.
    """

    def __init__(self, *args: Any, share_prompt_prefix: bool = False, stop_strings: list[str] | None = None,
                 fast_cpu_decode: bool = False, **kwargs: Any) -> None:
        self.phase_timer = PhaseTimer()
        self.share_prompt_prefix = share_prompt_prefix
        self.stop_strings = list(stop_strings or [])
        # passes that ran on shared prompts, and passes that could not (no repeated prompt, no cache)
        self.shared_prefix_counts = {"scoring": 0, "scoring_unshared": 0, "generation": 0, "generation_unshared": 0}
        super().__init__(*args, **kwargs)
        if self.accelerator.device.type == "cuda":
            self.phase_timer.sync = torch.cuda.synchronize
        self.fast_cpu_decode = fast_cpu_decode and self.accelerator.device.type == "cpu"
        self.add_callback(PhaseCallback(self.phase_timer))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        with self.phase_timer.phase("rewards"):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_scored = (inputs, completions, completion_ids_list, rewards)
        return rewards

    # ------------------------------------------------------------ phase timing
    def training_step(self, model, inputs, num_items_in_batch=None):
        # transformers' training_step also prepares inputs (generation); the nested phases take that part
        with self.phase_timer.phase("forward_backward"):
            return super().training_step(model, inputs, num_items_in_batch)

    def _prepare_inputs(self, generation_batch):
        # the scoring glue around generate/rewards/logprobs (tokenizing, decoding, advantages) counts as generation
        with self.phase_timer.phase("generation"):
            return super()._prepare_inputs(generation_batch)

    def _generate_single_turn(self, prompt_ids, *args: Any, **kwargs: Any):
        t0 = time.perf_counter()
        with self.phase_timer.phase("generation"), self._patched_generate():
            out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        completion_ids = out[0]
        self.phase_timer.count_generated(sum(len(c) for c in completion_ids), time.perf_counter() - t0)
        return out

    @contextlib.contextmanager
    def _patched_generate(self) -> Iterator[None]:
        """TRL's transformers path calls `unwrapped_model.generate(...)`: for this call, add the stop strings,
        prefill each prompt once and decode with the CPU's faster cache and matmuls (engine/fast_decode.py)."""
        if not (self.share_prompt_prefix or self.stop_strings or self.fast_cpu_decode) or self.use_vllm \
                or self.use_transformers_continuous_batching:
            yield
            return
        model = self.accelerator.unwrap_model(self.model_wrapped)  # the object TRL's unwrap_model_for_generation yields
        original = functools.partial(fast_cpu_generate, model.generate, model) if self.fast_cpu_decode \
            else model.generate

        def generate(**kw: Any) -> Any:
            if self.stop_strings:  # generate needs the tokenizer to find the strings in the tokens
                config = copy.copy(kw["generation_config"])
                config.stop_strings = self.stop_strings
                kw.update(generation_config=config, tokenizer=self._tokenizer)
            if self.share_prompt_prefix:
                out, shared = shared_prefix.generate(original, model, **kw)
                self.shared_prefix_counts["generation" if shared else "generation_unshared"] += 1
            else:
                out = original(**kw)
            if self.stop_strings:
                n = kw["input_ids"].size(1)
                ended = end_stopped_rows(out[:, n:], self.pad_token_id, self.eos_token_ids,
                                         kw["generation_config"].max_new_tokens)
                if ended.size(1) != out.size(1) - n:  # the row that stopped last got its end-of-turn column
                    out = torch.cat([out[:, :n], ended], dim=1)
            return out

        model.generate = generate
        try:
            yield
        finally:
            del model.generate

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **kwargs: Any):
        # Called for the loss too (with grad): that forward is part of forward_backward.
        no_grad_pass = self.phase_timer.current != "forward_backward" and not torch.is_grad_enabled()
        with self.phase_timer.phase("logprobs") if no_grad_pass else contextlib.nullcontext():
            if self.share_prompt_prefix and not compute_aux_loss and all(v is None for v in kwargs.values()):
                out = shared_prefix.score(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                          compute_entropy, autocast=self.accelerator.autocast)
                self.shared_prefix_counts["scoring" if out is not None else "scoring_unshared"] += 1
                if out is not None:
                    return out[0], out[1], None
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **kwargs)

    def _clip_grad_norm(self, model):
        with self.phase_timer.phase("optimizer"):
            return super()._clip_grad_norm(model)

    def log(self, *args: Any, **kwargs: Any):
        # TRL gathers its metrics here and calls on_log, which writes the step event
        with self.phase_timer.phase("recording"):
            return super().log(*args, **kwargs)

    def _save_checkpoint(self, *args: Any, **kwargs: Any):
        with self.phase_timer.phase("checkpoint"):
            return super()._save_checkpoint(*args, **kwargs)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.phase_timer.phase(name):
            yield

    def _generate_and_score_completions(self, inputs):
        return self.generate_batch(inputs)

    # ------------------------------------------------------------ the engine's names
    def generate_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The batch dict training consumes for these inputs (override to record, filter, refill)."""
        return self.score_batch(inputs).out

    def score_batch(self, inputs: list[dict[str, Any]]) -> ScoredBatch:
        """TRL's own generation and scoring of one batch, with the raw rewards it computed on the way."""
        out = GRPOTrainer._generate_and_score_completions(self, inputs)
        scored_inputs, completions, completion_ids, rewards = self._last_scored
        return ScoredBatch(out, list(scored_inputs), list(completions), [list(c) for c in completion_ids],
                           rewards.detach().float().cpu())

    @property
    def pad_token_id(self) -> int:
        return self._tokenizer.pad_token_id

    def end_token_ids(self) -> set[int]:
        """Token ids that end a completion (a completion ending in none of them was cut at the length cap)."""
        return set(self.eos_token_ids) | {self.pad_token_id}

    def metrics_mark(self) -> dict[str, int]:
        """Where each training metric's list ends now; pass to `replace_metrics`."""
        return {k: len(v) for k, v in self._metrics["train"].items()}

    def replace_metrics(self, mark: dict[str, int], values: dict[str, float]) -> None:
        """Each key's values appended since `mark` (one per scoring call) become the one value given."""
        metrics = self._metrics["train"]
        for key, value in values.items():
            lst = metrics[key]
            del lst[mark.get(key, 0):]
            lst.append(float(value))

    def save_checkpoint_now(self) -> None:
        """Write checkpoint-<global_step> now (a checkpoint or pause command), outside the save schedule."""
        self._save_checkpoint(self.model, None)
