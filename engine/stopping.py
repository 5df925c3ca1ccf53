"""Stop strings ([train] stop_strings): the rows a stop string ended, made to end the way EOS-ended rows do.

`generate(stop_strings=..., tokenizer=...)` stops a row at the string and pads the rest; everything
downstream (TRL's completion mask, the held-out eval's token count) ends a completion at its first
EOS token. No TRL import: training (engine/train/trl_hooks.py) and evaluation share it.
"""

from __future__ import annotations

import torch


def end_stopped_rows(completion_ids: torch.Tensor, pad_id: int | None, eos_ids: list[int]) -> None:
    """In place: a row that a stop string ended is padded after it; its first pad becomes the end-of-turn token.

    TRL ends a completion at its first EOS and would otherwise train on the padding of a model whose pad token is
    not its EOS (Qwen2.5). Where pad is EOS (SmolLM2) the row already ends there and nothing changes.
    """
    if pad_id is None or pad_id in eos_ids or completion_ids.numel() == 0:
        return
    eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device)).any(dim=1)
    pad = completion_ids == pad_id
    # the trailing run of pads: a pad at every position from some point to the end
    trailing = pad.flip(1).int().cumprod(1).flip(1).bool()
    starts = trailing.int().argmax(dim=1)
    rows = (~eos & trailing.any(dim=1)).nonzero().flatten()
    completion_ids[rows, starts[rows]] = eos_ids[0]
