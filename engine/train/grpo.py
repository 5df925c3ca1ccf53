"""GRPO training on TRL, writing the run directory as it goes.

The training loop is TRL's GRPOTrainer. Two small additions make it
observable and steerable:

- RecordingGRPOTrainer (here) hands every scored generation batch (raw reward
  per function, advantages, token ids) to the RolloutRecorder, which writes it
  as groups in rollouts.jsonl, through the hooks of engine/train/trl_hooks.py
  (the one home of TRL's private methods), with each token's log-probability
  and entropy from the loss's forward pass.
- EngineCallback (engine/train/engine_callback.py) writes a `step` and `memory`
  event after every optimizer step and acts on commands (pause, resume,
  checkpoint, stop, switch) at that step boundary.

The recorder is engine/train/rollout_recorder.py; TRL's config comes from
engine/train/grpo_args.py.
"""

from __future__ import annotations

from typing import Any

import torch

from grpo_tui.engine import distributed
from grpo_tui.engine.train.rollout_recorder import RolloutRecorder
from grpo_tui.engine.train.trl_hooks import HookedGRPOTrainer, ScoredBatch


class RecordingGRPOTrainer(HookedGRPOTrainer):
    """GRPOTrainer that hands every scored generation batch to a recorder (and times its phases)."""

    def __init__(self, *args: Any, recorder: RolloutRecorder | None = None, **kwargs: Any) -> None:
        self.recorder = recorder  # None on ranks other than 0: they gather, rank 0 records
        super().__init__(*args, **kwargs)

    def generate_batch(self, inputs):
        if self.recorder is None and distributed.world_size() == 1:
            return super().generate_batch(inputs)
        s = self.score_batch(inputs)
        with self.phase("recording"):
            self._record(s)
        return s.out

    def _record(self, s: ScoredBatch) -> None:
        advantages = s.out["advantages"].detach().float().cpu()
        # rewards are already gathered over processes (in rank order); gather the rest the same way so
        # rank 0 records the whole generation batch and groups split across ranks stay whole.
        parts = distributed.gather(
            (
                [{k: x.get(k) for k in ("question", "answer", "prompt")} for x in s.inputs],
                s.completions,
                s.completion_ids,
                advantages,
            )
        )
        if self.recorder is not None and parts:
            self.recorder.record(
                step=self.state.global_step + 1,
                inputs=[x for p in parts for x in p[0]],
                completions=[c for p in parts for c in p[1]],
                completion_ids=[c for p in parts for c in p[2]],
                rewards=s.rewards,
                advantages=torch.cat([p[3] for p in parts]),
                eos_ids=self.end_token_ids(),
                # the loss sees this process's rows only; with several, the others' would never arrive
                token_stats=len(parts) == 1 and self.model.training,
            )

    def wants_token_stats(self) -> bool:
        return self.recorder is not None and self.recorder.expects_token_stats()

    def on_token_stats(self, rows: torch.Tensor, logps: torch.Tensor, entropies: torch.Tensor) -> None:
        if self.recorder is not None:
            self.recorder.add_token_stats(rows, logps, entropies)
