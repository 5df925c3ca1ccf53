"""Where a training step's seconds go: generation, rewards, logprobs, forward/backward, optimizer, recording.

`PhaseTimer` charges wall time to the innermost open phase only (exclusive
time), so nested phases never count twice and the phases of a step add up to
the step's wall time; time outside every phase lands in `other`. A step ends at
`snapshot()`: phases still open are split there, their rest counts towards the
next step (the step event is written in the middle of TRL's `log()`).

`PhaseTimingMixin` opens the phases around TRL 1.16 GRPOTrainer methods (no
code copied from TRL, only `super()` calls wrapped); `PhaseCallback` brackets
the optimizer step with the trainer callbacks. Every use of a TRL/transformers
method name is in this file, so it can move into the TRL hooks module whole.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

import torch
from transformers import TrainerCallback

from rundir.phases import PHASES

EXCLUDED = "excluded"  # a pause: neither a phase nor step time, whatever runs inside it


class PhaseTimer:
    """Exclusive wall time per phase of the current step; one per trainer, main thread only."""

    def __init__(self, clock: Any = time.perf_counter) -> None:
        self.clock = clock
        self._stack: list[str] = []
        self._mark = clock()  # when the time since the last charge started
        self._seconds: dict[str, float] = {}
        self._gen_tokens = 0
        self._gen_s = 0.0
        self._owed = 0.0  # seconds to leave out of the next charges (in-run evals; pauses use EXCLUDED)
        self._owner = threading.get_ident()

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
        self._charge(self.clock())
        self._stack.append(name)

    def exit(self, name: str) -> None:
        self._charge(self.clock())
        if name in self._stack:  # tolerate an unmatched exit (a callback that saw no matching enter)
            del self._stack[len(self._stack) - 1 - self._stack[::-1].index(name)]

    def excluded(self) -> contextlib.AbstractContextManager:
        """Time inside (a pause, with any checkpoint taken during it) counts nowhere."""
        return self.phase(EXCLUDED)

    @property
    def current(self) -> str | None:
        return self._stack[-1] if self._stack else None

    def count_generated(self, tokens: int, seconds: float) -> None:
        self._gen_tokens += tokens
        self._gen_s += seconds

    def reset(self) -> None:
        """Start a new step now (training begins, or a resume from pause)."""
        self._mark = self.clock()
        self._seconds = {}
        self._gen_tokens, self._gen_s = 0, 0.0
        self._owed = 0.0

    def snapshot(self) -> tuple[dict[str, float], float | None]:
        """End the step: seconds per phase (every name in PHASES) and generated tokens per second."""
        self._charge(self.clock())
        out = {name: round(self._seconds.get(name, 0.0), 4) for name in PHASES}  # EXCLUDED is dropped
        tps = self._gen_tokens / self._gen_s if self._gen_s > 0 else None
        self._seconds = {}
        self._gen_tokens, self._gen_s = 0, 0.0
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


class PhaseTimingMixin:
    """Put before GRPOTrainer in the bases: times TRL's methods into `self.phase_timer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.phase_timer = PhaseTimer()
        super().__init__(*args, **kwargs)
        self.add_callback(PhaseCallback(self.phase_timer))

    def training_step(self, model, inputs, num_items_in_batch=None):
        # transformers' training_step also prepares inputs (generation); the nested phases take that part
        with self.phase_timer.phase("forward_backward"):
            return super().training_step(model, inputs, num_items_in_batch)

    def _prepare_inputs(self, generation_batch):
        # the scoring glue around generate/rewards/logprobs (tokenizing, decoding, advantages) counts as generation
        with self.phase_timer.phase("generation"):
            return super()._prepare_inputs(generation_batch)

    def _generate_single_turn(self, prompt_ids, *args: Any, **kwargs: Any):
        t0 = time.perf_counter()
        with self.phase_timer.phase("generation"):
            out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        completion_ids = out[0]
        self.phase_timer.count_generated(sum(len(c) for c in completion_ids), time.perf_counter() - t0)
        return out

    def _calculate_rewards(self, *args: Any, **kwargs: Any):
        with self.phase_timer.phase("rewards"):
            return super()._calculate_rewards(*args, **kwargs)

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        # Called for the loss too (with grad): that forward is part of forward_backward.
        if self.phase_timer.current == "forward_backward" or torch.is_grad_enabled():
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)
        with self.phase_timer.phase("logprobs"):
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)

    def _clip_grad_norm(self, model):
        with self.phase_timer.phase("optimizer"):
            return super()._clip_grad_norm(model)

    def log(self, *args: Any, **kwargs: Any):
        # TRL gathers its metrics here and calls on_log, which writes the step event
        with self.phase_timer.phase("recording"):
            return super().log(*args, **kwargs)

    def _save_checkpoint(self, *args: Any, **kwargs: Any):
        with self.phase_timer.phase("checkpoint"):
            return super()._save_checkpoint(*args, **kwargs)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.phase_timer.phase(name):
            yield
