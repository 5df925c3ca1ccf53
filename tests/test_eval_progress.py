"""`grpo-tui eval`'s progress bar: it says it is loading weights until the first answer, and transformers' own
"Loading weights" bars don't pile up under it."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console


def test_the_bar_says_loading_until_the_first_answer(monkeypatch) -> None:
    from transformers.utils import logging as hf_logging

    import grpo_tui.tui.console.eval as ev

    hf_logging.enable_progress_bar()
    seen: list[str] = []

    def fake_evaluate(spec, req, device, progress=None, log=None):
        assert not hf_logging.is_progress_bar_enabled(), "transformers' loading bars are off during an eval"
        seen.append(bar_text())
        progress(2)
        seen.append(bar_text())
        return [], {}

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    import rich.progress

    bars: list[rich.progress.Progress] = []

    class Recorded(rich.progress.Progress):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            bars.append(self)

    monkeypatch.setattr(rich.progress, "Progress", Recorded)

    def bar_text() -> str:
        return " ".join(str(t.description) for t in bars[-1].tasks)

    monkeypatch.setattr(ev, "evaluate_spec", fake_evaluate)
    spec = SimpleNamespace(label="base")
    req = SimpleNamespace(dataset=SimpleNamespace(items=[1, 2, 3, 4], name="gsm8k"), greedy=True, samples=0)
    try:
        ev.run_one(spec, req, "cpu", console)
    finally:
        hf_logging.enable_progress_bar()
    assert "(loading weights)" in seen[0] and "base on gsm8k" in seen[1] and "loading" not in seen[1], seen
