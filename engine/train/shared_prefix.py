"""Encode each distinct prompt once per batch: the G completions of a group share their prompt's KV cache.

GRPO samples and scores G completions of the same prompt, and both TRL passes
run every row's whole prompt: generation prefills G copies of it, and the
scoring forward (`_get_per_token_logps_and_entropies`, with grad for the loss)
runs prompt + completion for each row. In the cpu-demo a 145-token prompt sits
before completions of about 55 tokens, so three quarters of the training
forward and backward re-encodes the same prompt.

Here each distinct prompt, all but its last token, runs once through the model
with a KV cache; the cache is copied to the prompt's rows (`batch_select_indices`;
in the backward, that copy sums the rows' gradients back into the shared
prompt), and only the last prompt token and the completion run per row.

- Scoring goes through TRL's fused LM head (`model(..., labels=..., fused_lm_head=True)`,
  trl.trainer.utils.add_fused_lm_head) with the same positions, masks and
  temperature as TRL's own pass, so log-probs, entropies and gradients equal
  TRL's to float rounding (tests/test_shared_prefix.py).
- Generation hands the shared cache to `generate`, with the position ids
  `generate` gives left-padded prompts itself; greedy output is unchanged.

Single process only: under DDP/DeepSpeed/FSDP a forward is one call through the
wrapper, and this makes two (engine.config.validate refuses it there), and not
with gradient checkpointing, which turns the model's cache off in training.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from grpo_tui.engine.fast_decode import cache_name


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each distinct prompt, each row's index into those), or None when no two rows share a prompt."""
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    n, distinct = key.size(0), int(inverse.max()) + 1 if key.size(0) else 0
    if distinct == n:
        return None
    rows = torch.arange(n, device=inverse.device)
    first = torch.full((distinct,), n, dtype=rows.dtype, device=inverse.device)
    first.scatter_reduce_(0, inverse, rows, reduce="amin")
    # keep the distinct prompts in the order they first appear (torch.unique sorts them)
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(distinct, device=order.device)
    return first[order], rank[inverse]


def _prefix_cache(model: Any, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None) -> Any:
    """The KV cache of `ids` (one row per distinct prompt); None when the model keeps none (gradient checkpointing)."""
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": True, "logits_to_keep": 1}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    return model(**kwargs).get(cache_name())


def score(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    batch_size: int | None = None,
    compute_entropy: bool = False,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Per-token log-probs (and entropies) of the last `logits_to_keep` tokens, as TRL's scoring pass returns them.

    Rows are processed in chunks of `batch_size` (TRL's memory bound for its no-grad passes). Returns None, and
    the caller runs TRL's own pass, when some chunk has no repeated prompt or the model keeps no cache.
    """
    P = input_ids.size(1) - logits_to_keep
    if P < 2:
        return None
    step = batch_size or input_ids.size(0)
    chunks = []
    for start in range(0, input_ids.size(0), step):
        ids, mask = input_ids[start : start + step], attention_mask[start : start + step]
        groups = prompt_groups(ids[:, :P], mask[:, :P])
        if groups is None:
            return None
        chunks.append((ids, mask, groups))
    logps, entropies = [], []
    for ids, mask, (first, rows) in chunks:
        with autocast():
            # TRL's pass gives the prompt positions 0..P-1 whatever the padding; so does a cache of P-1 tokens
            cache = _prefix_cache(model, ids[first, : P - 1], mask[first, : P - 1], None)
            if cache is None:
                return None
            cache.batch_select_indices(rows)
            tail = ids[:, P - 1 :]  # the last prompt token predicts the first completion token
            labels = tail.masked_fill(mask[:, P - 1 :] == 0, -100)
            labels[:, 0] = -100
            out = model(input_ids=tail, attention_mask=mask, labels=labels, fused_lm_head=True, **{cache_name(): cache})
        logps.append(out.log_probs)
        if compute_entropy:
            entropies.append(out.entropy)
    return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None)


def generation_positions(mask: torch.Tensor) -> torch.Tensor:
    """The position ids `generate` gives a left-padded prompt: count of real tokens so far, pads at 1."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


def generate(
    generate_fn: Callable[..., Any],
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[Any, bool]:
    """(`generate_fn(input_ids, ...)`, whether it ran on a shared prefill): each distinct prompt prefilled once,
    its cache copied to its rows. Without a repeated prompt it is the plain call."""

    def plain() -> tuple[Any, bool]:
        return generate_fn(input_ids=input_ids, attention_mask=attention_mask, **kwargs), False

    if attention_mask is None or input_ids.size(1) < 2 or cache_name() in kwargs or "past_key_values" in kwargs:
        return plain()
    groups = prompt_groups(input_ids, attention_mask)
    if groups is None:
        return plain()
    first, rows = groups
    ids, mask = input_ids[first, :-1], attention_mask[first, :-1]
    with torch.no_grad():
        cache = _prefix_cache(model, ids, mask, generation_positions(mask))
    if cache is None:
        return plain()
    cache.batch_select_indices(rows)
    return generate_fn(input_ids=input_ids, attention_mask=attention_mask, **{cache_name(): cache}, **kwargs), True
