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
  `stop_strings` and the tokenizer; the rows a stop string ended are found there (engine/stopping.py), and the
  completions `_generate_single_turn` returns (token lists, cut at the first `eos_token_ids` token) get the
  end-of-turn token after each such row's last sampled token, because TRL calls a row without one cut at the cap
  (and keeps its padding, where pad is not EOS). That token was
  never sampled: `score_batch` sets its `completion_mask` to 0 (and lowers `num_items_in_batch`), so it enters
  neither the loss nor the KL term, while the row still counts as finished.
- `GRPOTrainer._step` (micro-steps so far) and `_buffered_inputs` (the generation batch being trained on):
  `generations_buffered` tells whether the next micro-step reuses it, as `_prepare_inputs` decides.
- `Trainer._save_rng_state(output_dir)` / `Trainer._load_rng_state(checkpoint)`: a checkpoint's RNG states, written
  by `_save_checkpoint` and read back on resume; extended with the engine's own (`engine_rng_state`) and, for a
  checkpoint in the middle of a generation buffer, that buffer and `_step`.
- Phase timing (engine/train/phase_timer.py) wraps `Trainer.training_step`, `Trainer._prepare_inputs`,
  `GRPOTrainer._generate_single_turn` (returns completion ids first),
  `GRPOTrainer._get_per_token_logps_and_entropies` (no grad: old-policy/reference passes),
  `Trainer._clip_grad_norm`, `Trainer.log` and `Trainer._save_checkpoint`: each second
  of a step is charged to exactly one phase.
- Per-token statistics of the rows recorded (`on_token_stats`): `GRPOTrainer._compute_loss(model, inputs)`
  is wrapped to note the batch's `ROW_KEY` column (each row's index in its generation batch, added to TRL's
  batch dict, which TRL shuffles and splits with the other per-row tensors), and the log-probabilities and
  entropies that its `_get_per_token_logps_and_entropies(..., compute_entropy=True)` call returns for the loss
  are handed on, detached: no extra forward pass.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from grpo_tui.engine.fast_decode import fast_cpu_generate
from grpo_tui.engine.stopping import close_stopped_rows, stop_string_test, stopped_lengths
from grpo_tui.engine.train import shared_prefix
from grpo_tui.engine.train.phase_timer import PhaseCallback, PhaseTimer
from grpo_tui.rundir.names import ENGINE_RNG_FILE, GENERATION_BUFFER_FILE

__all__ = ["ROW_KEY", "HookedGRPOTrainer", "ScoredBatch", "nanstd"]

# Key added to TRL's batch dict: each row's index in its generation batch (a tensor shuffled and split with the
# rest), so the loss's per-token statistics can be matched to the recorded rows.
ROW_KEY = "grpo_tui_row"


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

    def __init__(
        self,
        *args: Any,
        share_prompt_prefix: bool = False,
        stop_strings: list[str] | None = None,
        fast_cpu_decode: bool = False,
        **kwargs: Any,
    ) -> None:
        self.phase_timer = PhaseTimer()
        self.share_prompt_prefix = share_prompt_prefix
        self.stop_strings = list(stop_strings or [])
        # per row of the generation calls since score_batch began: tokens sampled before a stop string, or -1
        self._stopped_lengths: list[int] = []
        self._call_stops: list[int] | None = None  # the same, for the generate call in progress
        self._stop_test = None
        # passes that ran on shared prompts, and passes that could not (no repeated prompt, no cache)
        self.shared_prefix_counts = {"scoring": 0, "scoring_unshared": 0, "generation": 0, "generation_unshared": 0}
        self._loss_rows: torch.Tensor | None = None  # ROW_KEY of the batch whose loss is being computed
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
        self._call_stops = None
        with self.phase_timer.phase("generation"), self._patched_generate():
            out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        if self._call_stops is not None:  # close each row a stop string ended with an end token (not sampled)
            stops, self._call_stops = self._call_stops, None
            self._stopped_lengths += stops
            out = (close_stopped_rows(out[0], stops, self.eos_token_ids[0]), *out[1:])
        completion_ids = out[0]
        self.phase_timer.count_generation(prompt_ids, completion_ids, time.perf_counter() - t0)
        return out

    @contextlib.contextmanager
    def _patched_generate(self) -> Iterator[None]:
        """TRL's transformers path calls `unwrapped_model.generate(...)`: for this call, add the stop strings,
        prefill each prompt once and decode with the CPU's faster cache and matmuls (engine/fast_decode.py)."""
        if (
            not (self.share_prompt_prefix or self.stop_strings or self.fast_cpu_decode)
            or self.use_vllm
            or self.use_transformers_continuous_batching
        ):
            yield
            return
        model = self.accelerator.unwrap_model(self.model_wrapped)  # the object TRL's unwrap_model_for_generation yields
        original = (
            functools.partial(fast_cpu_generate, model.generate, model) if self.fast_cpu_decode else model.generate
        )

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
                if self._stop_test is None:
                    self._stop_test = stop_string_test(self._tokenizer, self.stop_strings)
                lengths = stopped_lengths(
                    out[:, :n], out[:, n:], self._stop_test, self.pad_token_id, self.eos_token_ids
                )
                self._call_stops = lengths.tolist()
            return out

        model.generate = generate
        try:
            yield
        finally:
            del model.generate

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **kwargs: Any,
    ):
        # Called for the loss too (with grad): that forward is part of forward_backward.
        no_grad_pass = self.phase_timer.current != "forward_backward" and not torch.is_grad_enabled()
        with self.phase_timer.phase("logprobs") if no_grad_pass else contextlib.nullcontext():
            out = None
            if self.share_prompt_prefix and not compute_aux_loss and all(v is None for v in kwargs.values()):
                out = shared_prefix.score(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size,
                    compute_entropy,
                    autocast=self.accelerator.autocast,
                )
                self.shared_prefix_counts["scoring" if out is not None else "scoring_unshared"] += 1
                if out is not None:
                    out = (out[0], out[1], None)
            if out is None:
                out = super()._get_per_token_logps_and_entropies(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    batch_size=batch_size,
                    compute_entropy=compute_entropy,
                    compute_aux_loss=compute_aux_loss,
                    **kwargs,
                )
        if self._loss_rows is not None and compute_entropy and out[1] is not None:
            rows, self._loss_rows = self._loss_rows, None  # the loss's own pass, once per batch
            self.on_token_stats(rows, out[0], out[1])
        return out

    def _compute_loss(self, model, inputs):
        self._loss_rows = inputs.get(ROW_KEY)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_rows = None

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
        out = self.generate_batch(inputs)
        if self.model.training and self.wants_token_stats():
            rows = out["advantages"]
            out[ROW_KEY] = torch.arange(rows.size(0), device=rows.device)
        return out

    # ------------------------------------------------------------ the engine's names
    def generate_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The batch dict training consumes for these inputs (override to record, filter, refill)."""
        return self.score_batch(inputs).out

    def wants_token_stats(self) -> bool:
        """Whether the batch just generated should hand its loss's per-token statistics to `on_token_stats`."""
        return False

    def on_token_stats(self, rows: torch.Tensor, logps: torch.Tensor, entropies: torch.Tensor) -> None:
        """Per-token log-probabilities and entropies (rows, completion width) of the loss's forward pass, with
        grad; `rows` are the rows' indices in their generation batch. Called from inside the loss: keep it
        cheap and don't wait on the device."""

    def score_batch(self, inputs: list[dict[str, Any]]) -> ScoredBatch:
        """TRL's own generation and scoring of one batch, with the raw rewards it computed on the way."""
        self._stopped_lengths = []
        out = GRPOTrainer._generate_and_score_completions(self, inputs)
        if self.stop_strings:
            self._unmask_end_tokens(out)
        scored_inputs, completions, completion_ids, rewards = self._last_scored
        return ScoredBatch(
            out,
            list(scored_inputs),
            list(completions),
            [list(c) for c in completion_ids],
            rewards.detach().float().cpu(),
        )

    def _unmask_end_tokens(self, out: dict[str, Any]) -> None:
        """Leave the end-of-turn token each stopped row was given out of the loss and the KL term (mask 0).

        The policy never sampled it: log pi(EOS | ... stop string) would otherwise be trained with the row's
        advantage. The row keeps the token, so it still counts as finished. Every process takes part in the
        gather, stopped rows or not."""
        lengths = torch.tensor(self._stopped_lengths, dtype=torch.long)
        self._stopped_lengths = []
        mask = out["completion_mask"]
        if lengths.numel() != mask.size(0):
            raise RuntimeError(
                f"stop strings: {lengths.numel()} generated rows for a batch of {mask.size(0)}; "
                "multi-turn generation (tools, environments) can't be combined with stop_strings"
            )
        rows = (lengths >= 0).nonzero().flatten().to(mask.device)
        cols = lengths.to(mask.device)[rows]
        dropped = mask[rows, cols].sum()
        mask[rows, cols] = 0
        out["num_items_in_batch"] = out["num_items_in_batch"] - self.accelerator.gather(dropped).sum()

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
            del lst[mark.get(key, 0) :]
            lst.append(float(value))

    def save_checkpoint_now(self) -> None:
        """Write checkpoint-<global_step> now (a checkpoint or pause command), outside the save schedule."""
        self._save_checkpoint(self.model, None)

    # ------------------------------------------------------------ TRL's generation buffer
    def generation_interval(self) -> int:
        """Micro-steps between two generations: TRL generates `steps_per_generation` micro-batches at once and
        trains on them `num_iterations` times (`_prepare_inputs`, which keeps them in `_buffered_inputs`)."""
        return self.args.steps_per_generation * self.num_iterations

    def generations_buffered(self) -> bool:
        """At an optimizer step boundary: the next micro-step trains on generations made before it (with the
        temperature, reference log-probs and old log-probs of that time) instead of generating afresh."""
        return self._buffered_inputs is not None and self._step % self.generation_interval() != 0

    # ------------------------------------------------- the engine's RNG state in checkpoints
    def engine_rng_state(self) -> dict[str, Any]:
        """RNG and stream state the engine owns beside Trainer's (Python, NumPy, torch), as JSON-able values:
        saved in every checkpoint and restored on resume, so a resumed run makes the steps the uninterrupted
        run would have made. Subclasses add theirs."""
        return {}

    def restore_engine_rng_state(self, state: dict[str, Any]) -> None:
        """Put back what `engine_rng_state` returned when the checkpoint was written."""

    def _engine_file(self, checkpoint: str, name: str) -> str:
        stem, ext = os.path.splitext(name)
        suffix = f"_{self.args.process_index}" if self.args.world_size > 1 else ""
        return os.path.join(checkpoint, f"{stem}{suffix}{ext}")

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        state = self.engine_rng_state()
        if state:
            with open(self._engine_file(output_dir, ENGINE_RNG_FILE), "w", encoding="utf-8") as f:
                json.dump(state, f)
        if self.generations_buffered():
            # A checkpoint in the middle of a generation buffer: the uninterrupted run trains its next steps on
            # the rest of it (with the old log-probs it was scored with), so the resumed run must too, not
            # generate afresh where TRL's _prepare_inputs finds no buffer.
            torch.save(
                {"step": self._step, "inputs": self._buffered_inputs, "made_with": self._buffer_settings()},
                self._engine_file(output_dir, GENERATION_BUFFER_FILE),
            )

    def _load_rng_state(self, checkpoint: str | None) -> None:
        # Trainer calls this on resume, once the skipped batches are drawn, right before the first step
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = self._engine_file(checkpoint, ENGINE_RNG_FILE)
        if os.path.isfile(path):  # else a checkpoint from before the engine saved its state: its RNGs start afresh
            with open(path, encoding="utf-8") as f:
                self.restore_engine_rng_state(json.load(f))
        path = self._engine_file(checkpoint, GENERATION_BUFFER_FILE)
        if os.path.isfile(path):
            saved = torch.load(path, map_location=self.accelerator.device, weights_only=True)
            # resumed under other settings (--set, another preset): generate afresh, as TRL does on resume
            if saved.get("made_with") == self._buffer_settings():
                self._buffered_inputs, self._step = saved["inputs"], int(saved["step"])

    def _buffer_settings(self) -> dict[str, Any]:
        """What a saved generation buffer is only valid under: its shape, and the knobs its log-probs came from."""
        a = self.args
        return {
            "per_device_train_batch_size": a.per_device_train_batch_size,
            "steps_per_generation": a.steps_per_generation,
            "num_iterations": self.num_iterations,
            "gradient_accumulation_steps": a.gradient_accumulation_steps,
            "temperature": float(self.temperature),
            "beta_on": bool(self.beta),
        }
