"""Scored generation batches to rollouts.jsonl, judged and written on a thread of their own."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from grpo_tui.engine.rewards import extract_answer, is_correct
from grpo_tui.engine.rewards.chat_format import message_text
from grpo_tui.engine.train.token_stats import split_rows, token_chars
from grpo_tui.rundir.rollouts import CompletionRecord, GroupRecord, RolloutWriter


@dataclass
class _Batch:
    """A scored generation batch on its way to rollouts.jsonl: judged first, written once its rows' per-token
    statistics have arrived from the loss (or the next batch comes)."""

    step: int
    inputs: list[dict]
    completions: list
    completion_ids: list[list[int]]
    rewards: torch.Tensor
    advantages: torch.Tensor
    eos_ids: set[int]
    token_stats: bool
    waiting: int = 0  # rows whose statistics have not arrived
    stats: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (rows, (2, rows, width))
    groups: list[GroupRecord] = field(default_factory=list)  # set by the recording thread


class RolloutRecorder:
    """Turns a scored generation batch into group records in rollouts.jsonl.

    Judging answers (is_correct may ask the math-verify worker, ~10 ms for an
    unusual answer) and writing happen on a background thread, so generation
    and the loss never wait on them. The step event waits until what was queued
    is judged and written (a batch is queued when it is scored, its write at
    the latest during its loss), so a recording failure is reported at its step.

    With `token_stats`, a batch's groups are written once the loss has scored
    all its rows (`add_token_stats`), with each token's id, piece of the text,
    log-probability and entropy; a batch whose rows never all arrive is written
    with those it has when the next batch is recorded, or at `close`.
    """

    def __init__(
        self,
        writer: RolloutWriter,
        reward_names: list[str],
        weights: list[float],
        num_generations: int,
        prompt_format: str,
        max_completion_length: int,
        tokenizer: Any = None,
        token_stats: bool = True,
    ) -> None:
        self.writer = writer
        self.names = reward_names
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.G = num_generations
        self.fmt = prompt_format
        self.max_len = max_completion_length
        self.tokenizer = tokenizer  # for each token's piece of the text; None: no pieces
        self.token_stats = token_stats
        self._pending: _Batch | None = None  # the batch whose rows the loss is scoring (training thread only)
        self.step_correct: dict[int, list[bool]] = {}
        self._group_counter: dict[int, int] = {}
        self._queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="rollout-recorder", daemon=True)
        self._thread.start()

    def record(
        self,
        step: int,
        inputs: list[dict],
        completions: list,
        completion_ids: list[list[int]],
        rewards: torch.Tensor,
        advantages: torch.Tensor,
        eos_ids: set[int],
        token_stats: bool = True,
    ) -> None:
        """Queue a scored batch (CPU tensors, plain lists); returns at once. With token_stats, its groups wait
        for `add_token_stats` (rows in this order)."""
        self._release()
        batch = _Batch(
            step,
            inputs,
            completions,
            completion_ids,
            rewards,
            advantages,
            eos_ids,
            token_stats=token_stats and self.token_stats,
            waiting=len(inputs),
        )
        self._queue.put(("judge", batch))
        if batch.token_stats:
            self._pending = batch
        else:
            self._queue.put(("write", batch))

    def expects_token_stats(self) -> bool:
        """Whether the batch recorded last is waiting for its rows' per-token statistics."""
        return self._pending is not None

    def add_token_stats(self, rows: torch.Tensor, logps: torch.Tensor, entropies: torch.Tensor) -> None:
        """Rows (indices into the last recorded batch) and their (rows, width) log-probabilities and entropies.

        Called inside the loss: only a detached float16 copy is kept, on the device, with no sync; the
        recording thread moves it to the CPU. Rows seen again (num_iterations > 1) are ignored."""
        batch = self._pending
        if batch is None:
            return
        batch.stats.append((rows.detach(), torch.stack([logps.detach(), entropies.detach()]).to(torch.float16)))
        batch.waiting -= rows.numel()
        if batch.waiting <= 0:
            self._release()

    def _release(self) -> None:
        batch, self._pending = self._pending, None
        if batch is not None:
            self._queue.put(("write", batch))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                kind, batch = item
                if kind == "judge":
                    self._judge(batch)
                else:
                    self._write(batch)
            except BaseException as e:  # noqa: BLE001 - reported by wait(); training must not die here
                self.error = e
            finally:
                self._queue.task_done()

    def _judge(self, b: _Batch) -> None:
        step, inputs, completions, completion_ids = b.step, b.inputs, b.completions, b.completion_ids
        rewards, advantages, eos_ids = b.rewards, b.advantages, b.eos_ids
        totals = torch.nan_to_num(rewards * self.weights.unsqueeze(0), nan=0.0).sum(dim=1)
        correct_list = self.step_correct.setdefault(step, [])
        for start in range(0, len(inputs), self.G):
            rows = []
            for i in range(start, min(start + self.G, len(inputs))):
                text = message_text(completions[i])
                extracted = extract_answer(text, self.fmt)
                correct = bool(is_correct(extracted, inputs[i].get("answer")))
                correct_list.append(correct)
                ids = completion_ids[i]
                rows.append(
                    CompletionRecord(
                        text=text,
                        extracted=extracted,
                        correct=correct,
                        rewards={n: float(rewards[i, j]) for j, n in enumerate(self.names)},
                        total=float(totals[i]),
                        advantage=float(advantages[i]),
                        tokens=len(ids),
                        truncated=bool(len(ids) >= self.max_len and (not ids or ids[-1] not in eos_ids)),
                    )
                )
            group = self._group_counter.get(step, 0)
            self._group_counter[step] = group + 1
            first = inputs[start]
            b.groups.append(
                GroupRecord(
                    step=step,
                    group=group,
                    prompt=first.get("question") or message_text(first.get("prompt")),
                    gold=str(first.get("answer", "")),
                    completions=rows,
                )
            )
        for old in [k for k in self._group_counter if k < step - 1]:
            del self._group_counter[old]

    def _write(self, b: _Batch) -> None:
        if b.token_stats:
            rows = [c for g in b.groups for c in g.completions]
            stats: dict[int, tuple] = {}
            lengths = {i: len(ids) for i, ids in enumerate(b.completion_ids)}
            for idx, st in b.stats:
                stats.update(split_rows(idx, st, lengths))
            b.stats = []
            for i, rec in enumerate(rows):
                ids = b.completion_ids[i]
                rec.token_ids = np.asarray(ids, dtype=np.int32)
                rec.token_chars = token_chars(self.tokenizer, ids, rec.text)
                if i in stats:
                    rec.token_logprobs, rec.token_entropies = stats[i]
        for g in b.groups:
            self.writer.write(g)
        self.writer.flush()

    def wait(self) -> None:
        """Block until every queued batch is written; re-raise a recording failure."""
        self._queue.join()
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"recording rollouts failed: {err!r}") from err

    def correct_frac(self, step: int) -> float | None:
        self.wait()
        vals = self.step_correct.pop(step, None)
        return sum(vals) / len(vals) if vals else None

    def close(self) -> None:
        self._release()
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.writer.close()
