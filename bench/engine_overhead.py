"""Engine overhead: plain TRL GRPOTrainer vs the grpo-tui engine, same config and seed.

Runs the two side by side in one process, alternating rounds (the machine is
shared and noisy, so only the ratio measured in one run means anything), and
prints the per-step time ratio engine / plain. Target: at most 1.03.

    python bench/engine_overhead.py [--preset tiny] [--steps 12] [--rounds 3]

The engine side is the real path of `python -m engine train`: RecordingGRPOTrainer
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

from engine.config import Config, load_config  # noqa: E402
from engine.data import load_rows, to_dataset  # noqa: E402
from engine.events import read_events  # noqa: E402
from engine.models import load_model  # noqa: E402
from engine.rewards import resolve_reward  # noqa: E402
from engine.run import train as engine_train  # noqa: E402
from engine.rundir import RunDir  # noqa: E402
from engine.train import _text, grpo_args  # noqa: E402


class StepTimer(TrainerCallback):
    """Same measure as the engine's step_time_s: wall time between consecutive step logs."""

    def __init__(self) -> None:
        self.last = time.time()
        self.times: list[float] = []

    def on_train_begin(self, args, state, control, **kw):
        self.last = time.time()

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "train_runtime" not in logs:
            now = time.time()
            self.times.append(now - self.last)
            self.last = now


def plain_reward(name: str, fn):
    def reward(prompts, completions, answer=None, **kw):
        return fn([_text(p) for p in prompts], [_text(c) for c in completions], answer, **kw)
    reward.__name__ = name
    return reward


def run_plain(cfg: Config, out: Path) -> list[float]:
    rows, _ = load_rows(cfg.data, cfg.train.seed)
    loaded = load_model(cfg.model, "cpu", log=lambda m: None)
    rewards = [plain_reward(n, resolve_reward(n, cfg.reward_options()[n] or None)) for n in cfg.rewards]
    torch.manual_seed(cfg.train.seed)
    cfg.train.save_final = False
    trainer = GRPOTrainer(model=loaded.model, reward_funcs=rewards, args=grpo_args(cfg, out, "cpu"),
                          train_dataset=to_dataset(rows, cfg.prompt), processing_class=loaded.tokenizer)
    trainer.remove_callback(PrinterCallback)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return timer.times


def run_engine(cfg: Config, out: Path) -> list[float]:
    cfg.train.save_final = False
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    (run.control).mkdir(mode=0o700, exist_ok=True)
    code = engine_train(cfg, run, resume=False)
    assert code == 0, f"engine run failed, see {run.events}"
    return [e["step_time_s"] for e in read_events(run.events) if e["type"] == "step"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    plain_all, engine_all = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            # alternate which goes first so drift in machine load hits both alike
            order = [("plain", run_plain), ("engine", run_engine)]
            if r % 2:
                order.reverse()
            for name, fn in order:
                cfg = load_config(args.preset, [f"train.max_steps={args.steps}"])
                times = fn(cfg, Path(tmp) / f"{name}-{r}")[1:]  # the first step pays one-off warm-up
                (plain_all if name == "plain" else engine_all).append(statistics.median(times))
                print(f"round {r + 1} {name:6s}: median step {statistics.median(times):.3f}s "
                      f"over {len(times)} steps", flush=True)
    ratios = [e / p for e, p in zip(engine_all, plain_all)]
    print(f"\nper-round ratio engine/plain: {', '.join(f'{x:.3f}' for x in ratios)}")
    print(f"step-time ratio engine/plain (median of rounds): {statistics.median(ratios):.3f}  (target <= 1.03)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
