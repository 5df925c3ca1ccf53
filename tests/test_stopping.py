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


def _tiny_tokenizer():
    from transformers import AutoTokenizer

    from grpo_tui.engine.models import ensure_tiny_random
    return AutoTokenizer.from_pretrained(ensure_tiny_random(log=lambda *a: None))


def test_stopped_lengths_uses_generates_own_stop_test_and_counts_a_stop_on_the_last_token():
    """A row is stopped where its text completes a stop string (generate stopped it there), whether padding follows,
    or it used every column; a row that ended on its own end token, or holds no stop string, is not."""
    from grpo_tui.engine.stopping import close_stopped_rows, stop_string_test, stopped_lengths
    tok = _tiny_tokenizer()
    pad, eos = tok.pad_token_id, tok.eos_token_id
    assert pad != eos
    test = stop_string_test(tok, ["</answer>"])
    stop = tok.encode("So 12 </answer>", add_special_tokens=False)
    plain = tok.encode("So 12 apples", add_special_tokens=False)
    width = max(len(stop), len(plain)) + 2
    rows = [stop + [pad] * (width - len(stop)),                 # stopped, then padded
            plain + [eos] + [pad] * (width - len(plain) - 1),   # ended on its own end token
            (plain * 3)[:width - len(stop)] + stop,             # completed the string on the last column
            (plain * 3)[:width]]                                # cut at the cap
    prompt = torch.tensor([tok.encode("Q: 5+7?", add_special_tokens=False)] * 4)
    lengths = stopped_lengths(prompt, torch.tensor(rows), test, pad, [eos])
    assert lengths.tolist() == [len(stop), -1, width, -1]
    closed = close_stopped_rows([r[:len(stop) + 2] for r in rows[:1]] + rows[1:], lengths.tolist(), eos)
    assert closed == [stop + [eos], rows[1], rows[2] + [eos], rows[3]]
    # pad is EOS (SmolLM2): the stopped row's padding is an end token already, which was not sampled
    width = len(stop) + 2
    ended = torch.tensor([stop + [eos] * 2, plain + [eos] * (width - len(plain))])
    lengths = stopped_lengths(prompt[:2], ended, test, eos, [eos])
    assert lengths.tolist() == [len(stop), -1]
