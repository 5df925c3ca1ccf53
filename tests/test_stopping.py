"""engine/stopping.py: rows a stop string ended get the end-of-turn token where their padding starts, and the row
that stopped last gets one more column for it."""

from __future__ import annotations

import torch

from grpo_tui.engine.stopping import end_stopped_rows


def test_end_stopped_rows_puts_the_end_token_where_padding_starts():
    pad, eos = 0, 9
    ids = torch.tensor([[5, 6, 7, 0, 0],    # a stop string ended it after 7: padded
                        [5, 9, 0, 0, 0],    # ended by EOS: left as is
                        [5, 6, 7, 8, 6],    # cut at the cap: no padding
                        [5, 0, 6, 0, 0]])   # a sampled pad inside: only the trailing run counts
    ids = end_stopped_rows(ids, pad, [eos], max_new_tokens=5)
    assert ids.tolist() == [[5, 6, 7, 9, 0], [5, 9, 0, 0, 0], [5, 6, 7, 8, 6], [5, 0, 6, 9, 0]]
    same = ids.clone()
    ids = end_stopped_rows(ids, eos, [eos], max_new_tokens=5)  # pad is EOS (SmolLM2): the padding ends the row
    assert torch.equal(ids, same)


def test_the_row_that_stopped_last_gets_a_column_for_its_end_token():
    """Generation ended short of the cap, so every row had stopped: the one without room is closed too (TRL would
    count it as clipped, and mask it out of the loss under mask_truncated_completions)."""
    pad, eos = 0, 9
    ids = torch.tensor([[5, 6, 7],     # stopped last, on its final token
                        [5, 6, 0],     # stopped a token earlier
                        [5, 9, 0]])    # ended by EOS
    assert end_stopped_rows(ids.clone(), pad, [eos], max_new_tokens=8).tolist() == \
        [[5, 6, 7, 9], [5, 6, 9, 0], [5, 9, 0, 0]]
    # pad is EOS (SmolLM2): only the last row needs closing, and the new column pads the rest
    smol = torch.tensor([[5, 6, 7], [5, 6, 9]])
    assert end_stopped_rows(smol, eos, [eos], max_new_tokens=8).tolist() == [[5, 6, 7, 9], [5, 6, 9, 9]]
    # at the cap a full row may have been cut, not stopped: left open
    assert end_stopped_rows(ids.clone(), pad, [eos], max_new_tokens=3).tolist() == [[5, 6, 7], [5, 6, 9], [5, 9, 0]]
    # every row already closed: no new column
    closed = torch.tensor([[5, 9], [5, 0]])
    assert end_stopped_rows(closed, pad, [eos], max_new_tokens=8).tolist() == [[5, 9], [5, 9]]
