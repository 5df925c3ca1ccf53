"""Dynamic sampling: keep GRPO batches full of groups that carry a learning signal.

A group whose G completions are all right (or all wrong) has zero advantage
after group normalization: it costs a forward and backward pass and moves
nothing. DAPO's dynamic sampling drops such groups and samples fresh prompts
until the batch is full again. Here that happens inside the trainer's
generation step, before the batch is split into micro-batches:

1. TRL generates and scores the generation batch as usual (one
   `score_batch`, engine/train/trl_hooks.py: B rows = B/G groups).
2. Each group is judged on raw correctness (is_correct of the answer
   extracted in the run's format, the `correct` of rollouts.jsonl), not on the
   shaped total: a group where every completion is wrong but the format
   rewards differ has a non-zero total std and would slip through, although
   it can only teach format. (`dynamic_sampling_criterion = "total"` judges on
   the total reward instead, like TRL's frac_reward_zero_std.)
3. While groups are missing and the cap allows (`dynamic_sampling_max_extra` x
   the batch's groups, counted in groups generated), fresh prompts drawn at
   random from the training set are generated and scored with the same
   weights, and their informative groups fill the batch. If the cap is
   reached first, the batch is completed with the dropped groups of step 1,
   so its size never changes.
4. The kept groups are concatenated (re-padding prompts on the left and
   completions on the right), `num_items_in_batch` is recomputed, and the
   batch goes on to TRL's shuffle/split into steps_per_generation
   micro-batches exactly as before. Advantages were computed per group in
   their own scoring call, so they are unchanged by the merge.

Metrics (in each `step` event's metrics): TRL's `frac_reward_zero_std`,
`reward`, `reward_std`, `rewards/<name>/mean|std` and `completions/*` lengths
are recomputed over the batch actually trained; the state before filtering is
`dynamic_sampling/frac_reward_zero_std_before` (what TRL would have logged)
and `dynamic_sampling/frac_uniform_correct_before`; after filtering
`dynamic_sampling/frac_uniform_correct`; the cost is
`dynamic_sampling/extra_groups`, `dynamic_sampling/generated_ratio` and
`dynamic_sampling/fallback_groups`. With `dynamic_sampling_max_extra = 0`
nothing is dropped and only the measurements are made.

Limits: one process only (groups are judged on this process's rows); text
prompts only (no images, tools, environments or rollout_func); with
`scale_rewards = "batch"` each scoring call normalizes by its own batch's
std; surplus informative groups of a refill are discarded, not carried to the
next step (they would be off-policy); rollouts.jsonl records the groups that
were trained, not the dropped ones.

Resume: the refill RNG is saved in every checkpoint (engine_rng_state.json, through `engine_rng_state`) and
restored, so a resumed run draws the refill prompts the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from grpo_tui.engine.rewards.chat_format import message_text
from grpo_tui.engine.train.curriculum import completion_correct
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer
from grpo_tui.engine.train.trl_hooks import ScoredBatch, nanstd

METRIC_PREFIX = "dynamic_sampling/"
# Per-row tensors of TRL's batch dict and how to pad them when batches of different widths are joined.
_PAD_LEFT = {"prompt_ids": "pad", "prompt_mask": 0}
_PAD_RIGHT = {
    "completion_ids": "pad",
    "completion_mask": 0,
    "old_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "importance_sampling_ratio": 1.0,
}
_ROWS = {"advantages"}


@dataclass
class ScoredWithVerdicts(ScoredBatch):
    """One scoring call's output and what went into it, with each row's correctness."""

    correct: list[bool] = field(default_factory=list)


@dataclass
class GroupRef:
    batch: int  # index into the list of ScoredWithVerdicts
    group: int  # group index within that batch
    informative: bool
    uniform_correct: bool
    zero_std: bool


def group_totals(rewards: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted total per row as TRL computes it (NaN where every reward function returned None)."""
    totals = (rewards * weights.unsqueeze(0)).nansum(dim=1)
    totals[torch.isnan(rewards).all(dim=1)] = torch.nan
    return totals


def zero_std_groups(totals: torch.Tensor, G: int) -> list[bool]:
    """TRL's is_std_zero per group: the nan-aware std of the group's totals is (close to) zero."""
    std = nanstd(totals.view(-1, G), dim=1)
    return [bool(x) for x in torch.isclose(torch.nan_to_num(std, nan=0.0), torch.zeros_like(std))]


def uniform_groups(correct: list[bool], G: int) -> list[bool]:
    return [len(set(correct[i : i + G])) == 1 for i in range(0, len(correct), G)]


def pad_cat(tensors: list[torch.Tensor], value: float | int, left: bool, multiple: int | None = None) -> torch.Tensor:
    """Concatenate (rows, width) tensors of different widths, padding each on the left or right."""
    width = max(t.size(1) for t in tensors)
    if multiple:
        width = int(math.ceil(width / multiple) * multiple)
    parts = []
    for t in tensors:
        n = width - t.size(1)
        if n:
            pad = torch.full((t.size(0), n), value, dtype=t.dtype, device=t.device)
            t = torch.cat([pad, t] if left else [t, pad], dim=1)
        parts.append(t)
    return torch.cat(parts, dim=0)


def merge_batches(
    parts: list[tuple[dict[str, Any], list[int]]], pad_id: int, multiple: int | None = None
) -> dict[str, Any]:
    """Rows `idx` of each TRL batch dict, joined into one batch dict (num_items_in_batch is left to the caller)."""
    keys = set(parts[0][0])
    for out, _ in parts[1:]:
        if set(out) != keys:
            raise RuntimeError(f"dynamic sampling: batches with different fields {sorted(keys ^ set(out))}")
    unknown = keys - set(_PAD_LEFT) - set(_PAD_RIGHT) - _ROWS - {"num_items_in_batch"}
    if unknown:
        raise NotImplementedError(f"dynamic sampling supports text-only GRPO batches; it can't merge {sorted(unknown)}")
    merged: dict[str, Any] = {}
    for key in keys - {"num_items_in_batch"}:
        rows = [out[key][torch.as_tensor(idx, dtype=torch.long, device=out[key].device)] for out, idx in parts]
        if key in _ROWS:
            merged[key] = torch.cat(rows, dim=0)
            continue
        left = key in _PAD_LEFT
        value = (_PAD_LEFT if left else _PAD_RIGHT)[key]
        if value == "pad":
            value = pad_id
        # sequence-level importance ratios are (rows, 1): nothing to pad
        merged[key] = pad_cat(
            rows,
            value,
            left,
            multiple if key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask") else None,
        )
    return merged


class DynamicSamplingGRPOTrainer(RecordingGRPOTrainer):
    """RecordingGRPOTrainer whose generation step drops uninformative groups and refills the batch."""

    ds_criterion: str = "correctness"
    ds_max_extra: float = 1.0
    ds_prompt_format: str = "reasoning"
    _ds_rng: random.Random | None = None

    def configure_dynamic_sampling(
        self, criterion: str = "correctness", max_extra: float = 1.0, prompt_format: str = "reasoning", seed: int = 0
    ) -> None:
        if self.accelerator.num_processes > 1:
            raise RuntimeError(
                "[curriculum] dynamic_sampling supports a single training process; turn it off for multi-GPU runs."
            )
        if any(getattr(self, name, None) for name in ("tools", "environment_factories", "rollout_func")):
            raise RuntimeError(
                "[curriculum] dynamic_sampling supports plain text prompts (no tools, environments, rollout_func)."
            )
        self.ds_criterion, self.ds_max_extra, self.ds_prompt_format = criterion, max_extra, prompt_format
        self._ds_rng = random.Random(f"dynamic-sampling-{seed}")

    def engine_rng_state(self) -> dict[str, Any]:
        state = super().engine_rng_state()
        if self._ds_rng is not None:  # which refill prompts come next: a resumed run must draw the same ones
            state["dynamic_sampling"] = self._ds_rng.getstate()
        return state

    def restore_engine_rng_state(self, state: dict[str, Any]) -> None:
        super().restore_engine_rng_state(state)
        saved = state.get("dynamic_sampling")
        if saved is not None and self._ds_rng is not None:
            version, internal, gauss = saved  # JSON gave lists back where getstate() had tuples
            self._ds_rng.setstate((version, tuple(internal), gauss))

    # ------------------------------------------------------------------ scoring
    def _score(self, inputs: list[dict[str, Any]]) -> ScoredWithVerdicts:
        b = self.score_batch(inputs)  # TRL's scoring only; the batch that trains is recorded once, below
        s = ScoredWithVerdicts(b.out, b.inputs, b.completions, b.completion_ids, b.rewards)
        s.correct = [
            completion_correct(message_text(c), x.get("answer"), self.ds_prompt_format)
            for c, x in zip(s.completions, s.inputs)
        ]
        return s

    def _groups(self, s: ScoredWithVerdicts, b: int) -> list[GroupRef]:
        G = self.num_generations
        weights = self.reward_weights.detach().float().cpu()
        zero = zero_std_groups(group_totals(s.rewards, weights), G)
        uni = uniform_groups(s.correct, G)
        informative = [not z for z in zero] if self.ds_criterion == "total" else [not u for u in uni]
        return [GroupRef(b, g, informative[g], uni[g], zero[g]) for g in range(len(uni))]

    def _fresh_inputs(self, n_groups: int, avoid: set[str]) -> list[dict[str, Any]]:
        ds = self.train_dataset
        G = self.num_generations
        rows: list[dict[str, Any]] = []
        tries = 0
        while len(rows) < n_groups * G:
            row = ds[self._ds_rng.randrange(len(ds))]
            key = str(row.get("question") or row.get("prompt"))
            tries += 1
            if key in avoid and tries < 20 * n_groups:
                continue
            avoid.add(key)
            rows += [copy.deepcopy(row) for _ in range(G)]
        return rows

    # --------------------------------------------------------------- the batch
    def generate_batch(self, inputs):
        if not self.model.training or self._ds_rng is None:
            return super().generate_batch(inputs)
        G = self.num_generations
        mark = self.metrics_mark()  # TRL appends metrics per scoring call; one value per step replaces them
        batches = [self._score(inputs)]
        groups = self._groups(batches[0], 0)
        need = len(groups)
        kept = [g for g in groups if g.informative or self.ds_max_extra <= 0]
        budget = int(math.floor(self.ds_max_extra * need))
        extra = 0
        avoid = {str(x.get("question") or x.get("prompt")) for x in batches[0].inputs}
        keep_rate = max(len(kept) / need, 0.25)
        while len(kept) < need and extra < budget:
            missing = need - len(kept)
            n = min(budget - extra, max(missing, math.ceil(missing / keep_rate)))
            b = len(batches)
            batches.append(self._score(self._fresh_inputs(n, avoid)))
            extra += n
            kept += [g for g in self._groups(batches[b], b) if g.informative][: need - len(kept)]
        fallback = [g for g in groups if not g.informative][: need - len(kept)] if len(kept) < need else []
        final = kept + fallback
        # rows per batch, in final group order (a batch may contribute in two places: keep the order exact)
        parts: list[tuple[dict[str, Any], list[int]]] = []
        order: list[tuple[int, int]] = []  # (batch, row)
        for g in final:
            rows = list(range(g.group * G, (g.group + 1) * G))
            if parts and parts[-1][0] is batches[g.batch].out:
                parts[-1][1].extend(rows)
            else:
                parts.append((batches[g.batch].out, rows))
            order += [(g.batch, r) for r in rows]
        if len(batches) == 1 and [r for _, r in order] == list(range(len(batches[0].inputs))):
            out = batches[0].out
        else:
            out = merge_batches(parts, self.pad_token_id, self.pad_to_multiple_of)
            out["num_items_in_batch"] = self.accelerator.gather(out["completion_mask"].sum()).sum()
        f_inputs = [batches[b].inputs[r] for b, r in order]
        f_completions = [batches[b].completions[r] for b, r in order]
        f_ids = [batches[b].completion_ids[r] for b, r in order]
        f_rewards = torch.stack([batches[b].rewards[r] for b, r in order])
        f_correct = [batches[b].correct[r] for b, r in order]
        self.replace_metrics(mark, self._batch_metrics(f_rewards, f_ids, f_correct, groups, extra, len(fallback), need))
        if self.recorder is not None and self.accelerator.is_main_process:
            self.recorder.record(
                step=self.state.global_step + 1,
                inputs=f_inputs,
                completions=f_completions,
                completion_ids=f_ids,
                rewards=f_rewards,
                advantages=out["advantages"].detach().float().cpu(),
                eos_ids=self.end_token_ids(),
            )
        return out

    def _batch_metrics(
        self,
        rewards: torch.Tensor,
        ids: list[list[int]],
        correct: list[bool],
        first_groups: list[GroupRef],
        extra: int,
        fallback: int,
        need: int,
    ) -> dict[str, float]:
        """TRL's per-batch metrics over the batch that trains (they replace the per-call values), plus ours."""
        G = self.num_generations
        m: dict[str, float] = {}
        weights = self.reward_weights.detach().float().cpu()
        for i, name in enumerate(self.reward_func_names):
            m[f"rewards/{name}/mean"] = torch.nanmean(rewards[:, i]).item()
            m[f"rewards/{name}/std"] = nanstd(rewards[:, i]).item()
        totals = group_totals(rewards, weights)
        m["reward"] = torch.nanmean(totals).item()
        m["reward_std"] = nanstd(totals).item()
        zero = zero_std_groups(totals, G)
        m["frac_reward_zero_std"] = sum(zero) / len(zero)
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.float32)
        eos = self.end_token_ids()
        truncated = torch.tensor([bool(x) and x[-1] not in eos for x in ids])
        m["completions/mean_length"] = lengths.mean().item()
        m["completions/min_length"] = lengths.min().item()
        m["completions/max_length"] = lengths.max().item()
        m["completions/clipped_ratio"] = truncated.float().mean().item()
        term = lengths[~truncated] if (~truncated).any() else torch.zeros(1)
        m["completions/mean_terminated_length"] = term.mean().item()
        m["completions/min_terminated_length"] = term.min().item()
        m["completions/max_terminated_length"] = term.max().item()
        m[METRIC_PREFIX + "frac_reward_zero_std_before"] = sum(g.zero_std for g in first_groups) / need
        m[METRIC_PREFIX + "frac_uniform_correct_before"] = sum(g.uniform_correct for g in first_groups) / need
        m[METRIC_PREFIX + "frac_uniform_correct"] = sum(uniform_groups(correct, G)) / need
        m[METRIC_PREFIX + "extra_groups"] = extra
        m[METRIC_PREFIX + "generated_ratio"] = (need + extra) / need
        m[METRIC_PREFIX + "fallback_groups"] = fallback
        return m
