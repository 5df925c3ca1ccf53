"""Stop strings ([train] stop_strings): the rows a stop string ended, made to end the way EOS-ended rows do.

`generate(stop_strings=..., tokenizer=...)` stops a row at the string and pads the rest; everything
downstream (TRL's completion mask and its clipped-ratio metric, `mask_truncated_completions`, the held-out
eval's token count) ends a completion at its first EOS token and calls a row without one cut at the cap.
No TRL import: training (engine/train/trl_hooks.py) and evaluation share it.

Training and the held-out eval find the stopped rows exactly (`stopped_lengths`, with generate's own stop-string
test); training closes them with `close_stopped_rows`. A row whose string completed on the last allowed token is
stopped, not cut, and the end-of-turn token each stopped row gets was never sampled, so the trainer leaves it out
of the loss and the KL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# StopStringCriteria(input_ids, scores) -> (rows,) bool: does each sequence end with a stop string
StopTest = Callable[..., torch.Tensor]


def end_positions(completion_ids: torch.Tensor, pad_id: int | None, eos_ids: list[int]) -> torch.Tensor:
    """Per row, where its generation ended: the first end-of-turn token, or where its trailing padding starts;
    the width for a row with neither."""
    width = completion_ids.size(1)
    eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    cols = torch.arange(width, device=completion_ids.device).expand_as(completion_ids)
    ends = torch.where(eos, cols, width).min(dim=1).values
    if pad_id is not None and pad_id not in eos_ids:
        trailing = (completion_ids == pad_id).flip(1).int().cumprod(1).flip(1).bool()
        ends = torch.minimum(ends, torch.where(trailing, cols, width).min(dim=1).values)
    return ends


def stopped_lengths(
    prompt_ids: torch.Tensor, completion_ids: torch.Tensor, is_stopped: StopTest, pad_id: int | None, eos_ids: list[int]
) -> torch.Tensor:
    """Per row, how many tokens were sampled before a stop string ended it; -1 for a row that did not stop that way
    (its own end-of-turn token, or cut at the cap).

    `is_stopped` is generate's own test (transformers' StopStringCriteria). Generation checks it after every token
    and stops a row the first time it holds, so a row whose tokens up to its end position pass it was stopped
    there, and the token at that position (padding, or the end token where pad is EOS) was not sampled. A row
    that used every allowed token and passes it completed its string on the last one: stopped, not cut.
    """
    ends = end_positions(completion_ids, pad_id, eos_ids)
    lengths = torch.full_like(ends, -1)
    for e in sorted(set(ends.tolist())):
        if e == 0:  # the first token is always sampled
            continue
        rows = (ends == e).nonzero().flatten()
        seqs = torch.cat([prompt_ids[rows], completion_ids[rows, :e]], dim=1)
        hit = is_stopped(seqs, None).to(rows.device)
        lengths[rows[hit]] = e
    return lengths


def close_stopped_rows(completion_ids: list[list[int]], lengths: list[int], eos_id: int) -> list[list[int]]:
    """Each stopped row (length >= 0) as its sampled tokens and then the end-of-turn token, so everything
    downstream (TRL's completion mask, its clipped-ratio metric, `mask_truncated_completions`) sees a finished
    row; the other rows as they are. Works on token lists, so no row gains padding."""
    return [ids[:n] + [eos_id] if n >= 0 else ids for ids, n in zip(completion_ids, lengths, strict=True)]


def stop_string_test(tokenizer: Any, stop_strings: list[str]) -> StopTest:
    """The test generate applies for `stop_strings` (built once: it indexes the tokenizer's vocabulary)."""
    from transformers import StopStringCriteria

    return StopStringCriteria(tokenizer=tokenizer, stop_strings=stop_strings)
