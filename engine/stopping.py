"""Stop strings ([train] stop_strings): the rows a stop string ended, made to end the way EOS-ended rows do.

`generate(stop_strings=..., tokenizer=...)` stops a row at the string and pads the rest; everything
downstream (TRL's completion mask and its clipped-ratio metric, `mask_truncated_completions`, the held-out
eval's token count) ends a completion at its first EOS token and calls a row without one cut at the cap.
No TRL import: training (engine/train/trl_hooks.py) and evaluation share it.
"""

from __future__ import annotations

import torch


def end_stopped_rows(completion_ids: torch.Tensor, pad_id: int | None, eos_ids: list[int],
                     max_new_tokens: int) -> torch.Tensor:
    """The completions with each row that a stop string ended closed by the end-of-turn token.

    A row padded after its stop gets the end-of-turn token where its padding starts: TRL would otherwise train on
    the padding of a model whose pad token is not its EOS (Qwen2.5). Where pad is EOS (SmolLM2) it already ends
    there. The row that stopped last has no padding to put it in: when generation ended short of
    `max_new_tokens`, every row had stopped, so such a row gets one more column (the others get padding there).
    Rows cut at the cap are left as they are. May modify `completion_ids` in place; returns the result.
    """
    if completion_ids.numel() == 0:
        return completion_ids
    eos_t = torch.tensor(eos_ids, device=completion_ids.device)
    filler = pad_id if pad_id is not None else eos_ids[0]
    eos = torch.isin(completion_ids, eos_t).any(dim=1)
    if completion_ids.size(1) < max_new_tokens and not (eos | (completion_ids[:, -1] == filler)).all():
        # a row ends on its last column unclosed: one column of padding, which the pass below closes like any
        # other stopped row's (where pad is EOS, or there is no pad, the padding is the end token already)
        completion_ids = torch.cat([completion_ids, completion_ids.new_full((completion_ids.size(0), 1), filler)], 1)
    if pad_id is None or pad_id in eos_ids:
        return completion_ids
    pad = completion_ids == pad_id
    # the trailing run of pads: a pad at every position from some point to the end
    trailing = pad.flip(1).int().cumprod(1).flip(1).bool()
    starts = trailing.int().argmax(dim=1)
    rows = (~eos & trailing.any(dim=1)).nonzero().flatten()
    completion_ids[rows, starts[rows]] = eos_ids[0]
    return completion_ids
