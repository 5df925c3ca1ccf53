"""Synthetic run directories written through the engine's own writers, one step at a time.

For the cases a real engine can't be made to produce on demand (failures, acks, long histories, GPU memory) and
for fast, deterministic snapshots; bench/tui_cpu.py streams one of these to a dashboard to measure it.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grpo_tui.rundir import event_writer as events_module
from grpo_tui.rundir.control import ensure_control_dir
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.health import HealthMonitor, Thresholds
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import CompletionRecord, RolloutWriter

REWARDS = ["correctness", "int_answer", "strict_format", "soft_format", "xmlcount"]
NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana"]
THINGS = ["apples", "marbles", "stickers", "cards", "pencils", "cookies"]


@contextlib.contextmanager
def fixed_clock(start: float = 1_700_000_000.0, tick: float = 0.5) -> Iterator[None]:
    """Make EventWriter stamp events with a deterministic clock (for snapshot tests)."""
    real = events_module.time
    state = {"t": start}

    class _Clock:
        @staticmethod
        def time() -> float:
            state["t"] += tick
            return state["t"]

    events_module.time = _Clock  # type: ignore[assignment]
    try:
        yield
    finally:
        events_module.time = real


class SyntheticRun:
    """A run directory written through the engine's writers, one step at a time."""

    def __init__(
        self,
        root: Path,
        *,
        G: int = 8,
        groups: int = 8,
        max_steps: int = 60,
        seed: int = 0,
        preset: str = "synthetic",
        device: str = "cpu",
        health: bool = False,
    ) -> None:
        self.run = RunDir(Path(root))
        self.run.root.mkdir(parents=True, exist_ok=True)
        ensure_control_dir(self.run.control)
        self.G, self.groups, self.max_steps, self.device = G, groups, max_steps, device
        self.rng = random.Random(seed)
        self.events = EventWriter(self.run.events)
        self.rollouts = RolloutWriter(self.run.rollouts)
        self.preset = preset
        self.step = 0
        self.tokens = 0
        # health: run the engine's health rules over the steps and write `health` events, as the engine does;
        # the truncation threshold is lowered below the synthetic 15% so a warning is on screen while measuring
        self.health = HealthMonitor(Thresholds(truncation_frac=0.1), max_completion_length=96) if health else None

    def start(self, pid: int | None = None) -> None:
        e = self.events
        e.emit(
            "run_start",
            run_dir=str(self.run.root),
            preset=self.preset,
            preset_path=f"{self.preset}.toml",
            model="synthetic-model",
            pid=pid or 0,
            host="bench",
            resumed=False,
            resume_from=None,
            max_steps=self.max_steps,
            num_generations=self.G,
            reward_names=REWARDS,
            reward_weights={r: 1.0 for r in REWARDS},
            device=self.device,
            versions={},
            config={
                "train": {
                    "learning_rate": 2e-4,
                    "temperature": 1.0,
                    "top_p": 1.0,
                    "beta": 0.0,
                    "max_completion_length": 96,
                },
                "rewards": {r: 1.0 for r in REWARDS},
            },
        )
        e.state("starting")
        e.emit(
            "dataset",
            source="synthetic",
            origin="built-in, difficulty 1",
            rows_total=2000,
            rows_used=2000,
            rows_skipped=0,
            skipped={},
        )
        e.state("loading_model")
        e.emit(
            "model",
            name="synthetic-model",
            path="/nowhere",
            parameters=134_515_008,
            trainable=4_884_480,
            dtype="float32",
            load_s=1.0,
        )
        e.state("running", step=0)
        e.emit("memory", step=0, **self._memory())

    def _memory(self) -> dict[str, Any]:
        if self.device.startswith("cuda"):
            alloc = 20 + 4 * math.sin(self.step / 5) + self.rng.random()
            return {
                "device": self.device,
                "rss_gb": 3.1,
                "allocated_gb": round(alloc, 3),
                "reserved_gb": round(alloc + 6, 3),
                "peak_gb": round(alloc + 9, 3),
                "peak_reserved_gb": round(alloc + 9.5, 3),
                "total_gb": 79.6,
                "nvml_used_gb": round(alloc + 7, 3),
            }
        return {
            "device": "cpu",
            "rss_gb": round(1.2 + 0.01 * self.step + 0.05 * self.rng.random(), 3),
            "allocated_gb": None,
            "reserved_gb": None,
            "peak_gb": None,
            "nvml_used_gb": None,
            "total_gb": 23.5,
        }

    def _completion(self, gold: int, skill: float) -> CompletionRecord:
        rng = self.rng
        formatted = rng.random() < skill
        guess = gold if rng.random() < skill else gold + rng.choice([-3, -1, 1, 2, 10])
        reasoning = " ".join(
            rng.choice(["First", "Then", "So", "We add", "They have", "In total"]) + f" {rng.randint(1, 20)}"
            for _ in range(rng.randint(2, 6))
        )
        truncated = rng.random() < 0.15
        if formatted and not truncated:
            text = f"<reasoning>\n{reasoning}.\n</reasoning>\n<answer>\n{guess}\n</answer>"
            extracted = str(guess)
        elif truncated:
            text = f"<reasoning>\n{reasoning} and then we keep going and going"
            extracted = None
        else:
            text = f"{reasoning}. The answer is {guess}."
            extracted = str(guess)
        correct = extracted == str(gold)
        rewards = {
            "correctness": 2.0 if correct else 0.0,
            "int_answer": 0.5 if extracted is not None else 0.0,
            "strict_format": 0.5 if formatted and not truncated else 0.0,
            "soft_format": 0.5 if formatted and not truncated else 0.0,
            "xmlcount": round(0.125 * text.count("<") / 2, 3),
        }
        return CompletionRecord(
            text=text,
            extracted=extracted,
            correct=correct,
            rewards=rewards,
            total=sum(rewards.values()),
            advantage=0.0,
            tokens=96 if truncated else rng.randint(20, 90),
            truncated=truncated,
        )

    def write_step(self) -> None:
        """One optimizer step: its rollouts (G x groups), then the step and memory events."""
        self.step += 1
        step, rng = self.step, self.rng
        skill = min(0.9, 0.1 + step / max(1, self.max_steps))
        totals, zero_std, lengths, clipped, correct = [], 0, [], 0, 0
        per_reward = {r: [] for r in REWARDS}
        for g in range(self.groups):
            a, b = rng.randint(2, 30), rng.randint(1, 20)
            name, thing = rng.choice(NAMES), rng.choice(THINGS)
            prompt = f"{name} has {a} {thing}. Then they get {b} more {thing}. How many {thing} does {name} have now?"
            comps = [self._completion(a + b, skill) for _ in range(self.G)]
            ts = [c.total for c in comps]
            mean = sum(ts) / len(ts)
            std = (sum((t - mean) ** 2 for t in ts) / len(ts)) ** 0.5
            for c in comps:
                c.advantage = (c.total - mean) / (std + 1e-4)
                lengths.append(c.tokens)
                clipped += c.truncated
                correct += c.correct
                for r in REWARDS:
                    per_reward[r].append(c.rewards[r])
            zero_std += std < 1e-9
            totals.extend(ts)
            self.rollouts.write_group(step, g, prompt, str(a + b), comps)
        self.rollouts.flush()
        n = len(totals)
        self.tokens += sum(lengths) + 60 * n
        metrics = {
            "loss": round(rng.uniform(-0.05, 0.05), 4),
            "grad_norm": round(rng.uniform(0.1, 2), 4),
            "learning_rate": 2e-4,
            "num_tokens": float(self.tokens),
            "completions/mean_length": sum(lengths) / n,
            "completions/min_length": float(min(lengths)),
            "completions/max_length": float(max(lengths)),
            "completions/clipped_ratio": clipped / n,
            "reward": sum(totals) / n,
            "reward_std": 0.5,
            "frac_reward_zero_std": zero_std / self.groups,
            "entropy": 1.2,
            # policy metrics of a beta > 0 run (deterministic: the rng sequence, and so the snapshot
            # tests' data, stays as it was)
            "kl": 0.01 + 0.001 * step,
            "clip_ratio/region_mean": 0.002 * (step % 7),
            "clip_ratio/low_mean": 0.001 * (step % 5),
            "clip_ratio/high_mean": 0.001 * (step % 3),
        }
        for r, vals in per_reward.items():
            metrics[f"rewards/{r}/mean"] = sum(vals) / n
            metrics[f"rewards/{r}/std"] = 0.1
        ev = self.events.emit(
            "step",
            step=step,
            max_steps=self.max_steps,
            epoch=step / 250,
            metrics=metrics,
            step_time_s=1.0,
            tokens_per_s=float(sum(lengths) + 60 * n),
            elapsed_s=float(step),
            eta_s=float(self.max_steps - step),
            correct_frac=correct / n,
        )
        for h in self.health.add(ev) if self.health is not None else ():
            self.events.emit("health", **h)
        self.events.emit("memory", step=step, **self._memory())

    def finish(self, status: str = "finished") -> None:
        self.events.emit(
            "checkpoint", step=self.step, path=str(self.run.checkpoints / f"checkpoint-{self.step}"), reason="final"
        )
        self.events.state("finished", step=self.step, detail=status)
        self.events.emit("run_end", status=status, step=self.step, exit_code=0, elapsed_s=float(self.step))

    def close(self) -> None:
        self.events.close()
        self.rollouts.close()


def write_synthetic_run(
    root: Path, steps: int, *, finished: bool = True, deterministic: bool = True, **kw: Any
) -> SyntheticRun:
    """A complete synthetic run in one go (fixed timestamps when deterministic)."""
    ctx = fixed_clock() if deterministic else contextlib.nullcontext()
    with ctx:
        run = SyntheticRun(root, **kw)
        run.start()
        for _ in range(steps):
            run.write_step()
        if finished:
            run.finish()
        run.close()
    return run
