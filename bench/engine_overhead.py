"""Engine overhead: plain TRL GRPOTrainer vs the grpo-tui engine, same config and seed.

Runs the two side by side in one process, alternating rounds (the machine is
shared and noisy, so only the ratio measured in one run means anything), and
prints the per-step time ratio engine / plain. Target: at most 1.03.

Two measures per step: process CPU time (all threads of this process; torch
runs one thread by default here, so CPU time tracks the work done and is
little moved by other jobs on the machine) and wall time (what a user waits,
but at the mercy of those jobs). The CPU-time ratio is the headline.

    python bench/engine_overhead.py [--preset tiny] [--steps 12] [--rounds 3] [--threads 1]

The engine side is the real path of `python -m grpo_tui.engine train`: RecordingGRPOTrainer
(rollouts.jsonl for every group), guarded rewards, EngineCallback (step and
memory events, command polling). The plain side is GRPOTrainer with the same
reward functions behind a bare text adapter and no callbacks of ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from trl import GRPOTrainer  # noqa: E402

from grpo_tui.engine.config import Config, load_config  # noqa: E402
from grpo_tui.engine.data.loader import load_rows, to_dataset  # noqa: E402
from grpo_tui.engine.models import load_model  # noqa: E402
from grpo_tui.engine.rewards import resolve_reward  # noqa: E402
from grpo_tui.engine.rewards.chat_format import message_text  # noqa: E402
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer  # noqa: E402
from grpo_tui.engine.train.grpo_args import grpo_args  # noqa: E402
from grpo_tui.engine.train.orchestrator import train as engine_train  # noqa: E402
from grpo_tui.rundir.event_reader import read_events  # noqa: E402
from grpo_tui.rundir.layout import RunDir  # noqa: E402


class StepTimer(TrainerCallback):
    """Wall and CPU time between consecutive step logs (the engine's step_time_s is the same wall measure).

    Added last, after the engine's own callback, so the engine's per-step work
    (events, memory probe) falls inside the measured step.
    """

    def __init__(self) -> None:
        self.last = (time.perf_counter(), time.process_time())
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_train_begin(self, args, state, control, **kw):
        self.last = (time.perf_counter(), time.process_time())

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "train_runtime" not in logs:
            now = (time.perf_counter(), time.process_time())
            self.wall.append(now[0] - self.last[0])
            self.cpu.append(now[1] - self.last[1])
            self.last = now


def plain_reward(name: str, fn):
    def reward(prompts, completions, answer=None, **kw):
        return fn([message_text(p) for p in prompts], [message_text(c) for c in completions], answer, **kw)

    reward.__name__ = name
    return reward


def run_plain(cfg: Config, out: Path) -> StepTimer:
    rows, _ = load_rows(cfg.data, cfg.train.seed)
    loaded = load_model(cfg.model, "cpu", log=lambda m: None)
    rewards = [plain_reward(n, resolve_reward(n, cfg.reward_options()[n] or None)) for n in cfg.rewards]
    torch.manual_seed(cfg.train.seed)
    cfg.train.save_final = False
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=rewards,
        args=grpo_args(cfg, out, "cpu"),
        train_dataset=to_dataset(rows, cfg.prompt),
        processing_class=loaded.tokenizer,
    )
    trainer.remove_callback(PrinterCallback)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return timer


def run_engine(cfg: Config, out: Path) -> StepTimer:
    """The real engine path; a StepTimer is slipped in after the engine's callback."""
    cfg.train.save_final = False
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    (run.control).mkdir(mode=0o700, exist_ok=True)
    timer = StepTimer()
    original = RecordingGRPOTrainer.add_callback

    def add_then_time(self, cb):
        original(self, cb)
        if type(cb).__name__ == "EngineCallback":  # the trainer's own callbacks come through here too
            original(self, timer)

    RecordingGRPOTrainer.add_callback = add_then_time
    try:
        code, _ = engine_train(cfg, run, resume=False)
    finally:
        RecordingGRPOTrainer.add_callback = original
    assert code == 0, f"engine run failed, see {run.events}"
    assert len(timer.cpu) == cfg.train.max_steps, (len(timer.cpu), cfg.train.max_steps)
    assert sum(1 for e in read_events(run.events) if e["type"] == "step") == cfg.train.max_steps
    return timer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU time a measure of work)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict[str, dict[str, list[float]]] = {n: {"cpu": [], "wall": []} for n in ("plain", "engine")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            # alternate which goes first so drift in machine load hits both alike
            order = [("plain", run_plain), ("engine", run_engine)]
            if r % 2:
                order.reverse()
            for name, fn in order:
                cfg = load_config(args.preset, [f"train.max_steps={args.steps}"])
                timer = fn(cfg, Path(tmp) / f"{name}-{r}")
                cpu, wall = timer.cpu[1:], timer.wall[1:]  # the first step pays one-off warm-up
                res[name]["cpu"].append(statistics.median(cpu))
                res[name]["wall"].append(statistics.median(wall))
                print(
                    f"round {r + 1} {name:6s}: median step cpu {statistics.median(cpu):.3f}s "
                    f"wall {statistics.median(wall):.3f}s over {len(cpu)} steps",
                    flush=True,
                )
    print()
    for measure in ("cpu", "wall"):
        ratios = [e / p for e, p in zip(res["engine"][measure], res["plain"][measure])]
        print(
            f"{measure:4s} per-round ratio engine/plain: {', '.join(f'{x:.3f}' for x in ratios)}; "
            f"median {statistics.median(ratios):.3f}"
        )
    cpu_ratio = statistics.median(e / p for e, p in zip(res["engine"]["cpu"], res["plain"]["cpu"]))
    print(f"step-time ratio engine/plain (CPU time, median of rounds): {cpu_ratio:.3f}  (target <= 1.03)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
