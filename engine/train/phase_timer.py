"""Where a training step's seconds go: generation, rewards, logprobs, forward/backward, optimizer, recording.

`PhaseTimer` charges wall time to the innermost open phase only (exclusive
time), so nested phases never count twice and the phases of a step add up to
the step's wall time; time outside every phase lands in `other`. A step ends at
`snapshot()`: phases still open are split there, their rest counts towards the
next step (the step event is written in the middle of TRL's `log()`).

engine/train/trl_hooks.py `HookedGRPOTrainer` opens the phases around TRL 1.16
GRPOTrainer methods (only `super()` calls wrapped; it is the one home of TRL
internals); `PhaseCallback` brackets the optimizer step with the trainer's
public callbacks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from transformers import TrainerCallback

from grpo_tui.engine.train.generation_bound import GenerationCall
from grpo_tui.rundir.phases import PHASES

EXCLUDED = "excluded"  # a pause: neither a phase nor step time, whatever runs inside it


class PhaseTimer:
    """Exclusive wall time per phase of the current step; one per trainer, main thread only."""

    def __init__(self, clock: Any = time.perf_counter, sync: Callable[[], None] | None = None) -> None:
        self.clock = clock
        # CUDA runs kernels after the call that queued them returns: without a sync at each boundary a phase's
        # GPU work is charged to whichever later phase first waits for it (an .item(), a copy to the CPU)
        self.sync = sync
        self._stack: list[str] = []
        self._mark = clock()  # when the time since the last charge started
        self._seconds: dict[str, float] = {}
        self._gen_tokens = 0
        self._gen_s = 0.0
        self._gen_calls: list[GenerationCall] = []
        self.step_generation: list[GenerationCall] = []  # the generate calls of the step snapshot() ended
        self._owed = 0.0  # seconds to leave out of the next charges (in-run evals; pauses use EXCLUDED)
        self._owner = threading.get_ident()

    def _now(self) -> float:
        if self.sync is not None:
            self.sync()
        return self.clock()

    def _charge(self, now: float) -> None:
        elapsed = now - self._mark
        skip = min(elapsed, self._owed)
        self._owed -= skip
        name = EXCLUDED if EXCLUDED in self._stack else (self._stack[-1] if self._stack else "other")
        self._seconds[name] = self._seconds.get(name, 0.0) + elapsed - skip
        self._mark = now

    def discard(self, seconds: float) -> None:
        """Leave `seconds` that have just passed out of every phase (the step time leaves them out too)."""
        self._owed += max(0.0, seconds)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the time inside to `name` (minus any phase opened inside it). Other threads are not timed."""
        if threading.get_ident() != self._owner:
            yield
            return
        self.enter(name)
        try:
            yield
        finally:
            self.exit(name)

    def enter(self, name: str) -> None:
        self._charge(self._now())
        self._stack.append(name)

    def exit(self, name: str) -> None:
        self._charge(self._now())
        if name in self._stack:  # tolerate an unmatched exit (a callback that saw no matching enter)
            del self._stack[len(self._stack) - 1 - self._stack[::-1].index(name)]

    def excluded(self) -> contextlib.AbstractContextManager:
        """Time inside (a pause, with any checkpoint taken during it) counts nowhere."""
        return self.phase(EXCLUDED)

    @property
    def current(self) -> str | None:
        return self._stack[-1] if self._stack else None

    def count_generated(self, tokens: int, seconds: float, rows: int = 0, mean_context: float = 0.0) -> None:
        """One generate call: completion tokens, its seconds, and the shape the generation bound needs."""
        self._gen_tokens += tokens
        self._gen_s += seconds
        if rows:
            self._gen_calls.append(GenerationCall(tokens, rows, mean_context))

    def count_generation(self, prompt_ids: list, completion_ids: list, seconds: float) -> None:
        """count_generated from the token ids of one call (prompts may be fewer than rows: one per group)."""
        tokens = sum(len(c) for c in completion_ids)
        rows = len(completion_ids)
        mean_prompt = sum(len(p) for p in prompt_ids) / len(prompt_ids) if len(prompt_ids) else 0.0
        # the cache grows from the prompt to the full completion: on average half the completion is in it
        self.count_generated(tokens, seconds, rows, mean_prompt + (tokens / rows / 2 if rows else 0.0))

    def reset(self) -> None:
        """Start a new step now (training begins, or a resume from pause)."""
        self._mark = self._now()
        self._seconds = {}
        self._gen_tokens, self._gen_s = 0, 0.0
        self._gen_calls, self.step_generation = [], []
        self._owed = 0.0

    def snapshot(self) -> tuple[dict[str, float], float | None]:
        """End the step: seconds per phase (every name in PHASES) and generated tokens per second.

        The step's generate calls stay readable in `step_generation` until the next snapshot."""
        self._charge(self._now())
        out = {name: round(self._seconds.get(name, 0.0), 4) for name in PHASES}  # EXCLUDED is dropped
        tps = self._gen_tokens / self._gen_s if self._gen_s > 0 else None
        self._seconds = {}
        self._gen_tokens, self._gen_s = 0, 0.0
        self.step_generation, self._gen_calls = self._gen_calls, []
        return out, (round(tps, 2) if tps is not None else None)


class PhaseCallback(TrainerCallback):
    """Gradient clipping is timed by the mixin; this brackets optimizer.step, the scheduler and zero_grad."""

    def __init__(self, timer: PhaseTimer) -> None:
        self.timer = timer

    def on_train_begin(self, args, state, control, **kwargs):
        self.timer.reset()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.timer.current != "optimizer":
            self.timer.enter("optimizer")

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.exit("optimizer")
