"""engine/stopping.py: rows a stop string ended get the end-of-turn token where their padding starts."""

from __future__ import annotations

import torch

from engine.stopping import end_stopped_rows


def test_end_stopped_rows_puts_the_end_token_where_padding_starts():
    pad, eos = 0, 9
    ids = torch.tensor([[5, 6, 7, 0, 0],    # a stop string ended it after 7: padded
                        [5, 9, 0, 0, 0],    # ended by EOS: left as is
                        [5, 6, 7, 8, 6],    # cut at the cap: no padding
                        [5, 0, 6, 0, 0]])   # a sampled pad inside: only the trailing run counts
    end_stopped_rows(ids, pad, [eos])
    assert ids.tolist() == [[5, 6, 7, 9, 0], [5, 9, 0, 0, 0], [5, 6, 7, 8, 6], [5, 0, 6, 9, 0]]
    same = ids.clone()
    end_stopped_rows(ids, eos, [eos])  # pad is EOS (SmolLM2): the padding already ends the row
    assert torch.equal(ids, same)
