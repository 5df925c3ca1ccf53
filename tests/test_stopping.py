"""engine/stopping.py: the rows a stop string ended, found with generate's own test, in training and the eval."""

from __future__ import annotations

import torch


def test_held_out_eval_counts_a_stop_on_the_last_allowed_token_as_finished():
    """The eval reads stopped rows with the same exact test as training: a row whose stop string completes on its
    last allowed token is finished (not cut); a row that fills the cap without one is cut."""
    from types import SimpleNamespace

    from grpo_tui.engine.eval.generation import generate

    tok = _tiny_tokenizer()
    answer = tok("<answer>7</answer>", add_special_tokens=False)["input_ids"]
    other = tok("seven seven seven seven seven", add_special_tokens=False)["input_ids"][: len(answer)]
    assert len(other) == len(answer)

    class Scripted(torch.nn.Module):
        """Returns fixed completions: generate() is the seam the eval reads from."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.generation_config = SimpleNamespace(eos_token_id=tok.eos_token_id)

        def generate(self, input_ids, **kw):
            rows = [answer, other][: input_ids.size(0)]
            return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    out = generate(
        Scripted(),
        tok,
        ["q1", "q2"],
        max_new_tokens=len(answer),
        batch_size=2,
        stop_strings=["</answer>"],
        fast_cpu_decode=False,
    )
    finished, cut = out[0][0], out[1][0]
    assert finished.text.endswith("</answer>") and not finished.truncated and finished.tokens == len(answer)
    assert cut.truncated


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
    rows = [
        stop + [pad] * (width - len(stop)),  # stopped, then padded
        plain + [eos] + [pad] * (width - len(plain) - 1),  # ended on its own end token
        (plain * 3)[: width - len(stop)] + stop,  # completed the string on the last column
        (plain * 3)[:width],
    ]  # cut at the cap
    prompt = torch.tensor([tok.encode("Q: 5+7?", add_special_tokens=False)] * 4)
    lengths = stopped_lengths(prompt, torch.tensor(rows), test, pad, [eos])
    assert lengths.tolist() == [len(stop), -1, width, -1]
    closed = close_stopped_rows([r[: len(stop) + 2] for r in rows[:1]] + rows[1:], lengths.tolist(), eos)
    assert closed == [stop + [eos], rows[1], rows[2] + [eos], rows[3]]
    # pad is EOS (SmolLM2): the stopped row's padding is an end token already, which was not sampled
    width = len(stop) + 2
    ended = torch.tensor([stop + [eos] * 2, plain + [eos] * (width - len(plain))])
    lengths = stopped_lengths(prompt[:2], ended, test, eos, [eos])
    assert lengths.tolist() == [len(stop), -1]


def test_a_sampled_eval_gives_trainings_random_stream_back_untouched():
    from types import SimpleNamespace

    from grpo_tui.engine.eval.generation import generate

    tok = _tiny_tokenizer()

    class Scripted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.generation_config = SimpleNamespace(eos_token_id=tok.eos_token_id)

        def generate(self, input_ids, **kw):
            torch.rand(3)  # sampling draws from the stream
            return torch.cat([input_ids, torch.full((input_ids.size(0), 2), tok.eos_token_id)], dim=1)

    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    generate(
        Scripted(),
        tok,
        ["q"],
        max_new_tokens=2,
        batch_size=2,
        num_samples=2,
        do_sample=True,
        seed=123,
        fast_cpu_decode=False,
    )
    assert torch.equal(torch.rand(4), expected)
