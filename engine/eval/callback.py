"""Held-out evaluation during training: a fixed subset, greedy, every [eval] every_steps steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import Config
from grpo_tui.engine.data.prompts import chat_template_kwargs
from grpo_tui.engine.eval.data import load_eval_data
from grpo_tui.engine.eval.evaluate import evaluate_loaded
from grpo_tui.engine.eval.generation import default_batch_size
from grpo_tui.rundir.layout import RunDir


class TrainingEvaluator:
    """The fixed held-out subset and settings of a run's [eval] section; scores the live model."""

    def __init__(self, cfg: Config, run_root: Path, device: str) -> None:
        e = cfg.eval
        self.cfg = cfg
        self.data = load_eval_data(
            e.dataset, e.split, e.limit, cfg, shuffle_seed=None if e.dataset == "synthetic" else 1234
        )
        self.max_new_tokens = e.max_new_tokens or cfg.train.max_completion_length
        self.batch_size = e.batch_size or default_batch_size(device)
        self.run_dir = RunDir(Path(run_root))

    def run(self, model: Any, tokenizer: Any, step: int) -> dict[str, Any]:
        """Greedy pass on the subset; writes eval/step-N.jsonl; returns the `eval` event's fields."""
        old_side = tokenizer.padding_side
        t0 = time.time()
        try:
            rows, numbers = evaluate_loaded(
                model,
                tokenizer,
                self.data,
                self.cfg.prompt,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
                stop_strings=self.cfg.train.stop_strings,
                fast_cpu_decode=self.cfg.train.fast_cpu_decode,
                template_kwargs=chat_template_kwargs(self.cfg),
            )
        finally:
            tokenizer.padding_side = old_side
        path = self.run_dir.eval_results(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        g = numbers["greedy"]
        return {
            "step": step,
            "dataset": self.data.name,
            "n": numbers["n"],
            "accuracy": g["strict"]["accuracy"],
            "correct": g["strict"]["correct"],
            "ci_low": g["strict"]["ci95"][0],
            "ci_high": g["strict"]["ci95"][1],
            "accuracy_flex": g["flexible"]["accuracy"],
            "correct_flex": g["flexible"]["correct"],
            "format_rate": g["format_rate"],
            "mean_tokens": round(g["mean_tokens"], 2),
            "truncated_frac": g["truncated_frac"],
            "max_new_tokens": self.max_new_tokens,
            "eval_s": round(time.time() - t0, 2),
            "path": str(path),
        }


def make_eval_callback(cfg: Config, run_root: Path, device: str, events: Any, engine_callback: Any = None) -> Any:
    """A TrainerCallback that writes `eval` events: before the first step, every N steps, after the last."""
    from transformers import TrainerCallback

    evaluator = TrainingEvaluator(cfg, run_root, device)
    every = cfg.eval.every_steps

    class EvalCallback(TrainerCallback):
        def __init__(self) -> None:
            self.done: set[int] = set()  # steps already evaluated (on_log and on_train_begin may both fire)

        def _eval(self, state: Any, model: Any, tokenizer: Any) -> None:
            step = state.global_step
            if step in self.done or model is None or tokenizer is None:
                return
            self.done.add(step)
            if hasattr(model, "module"):
                model = model.module
            fields = evaluator.run(model, tokenizer, step)
            events.emit("eval", **fields)
            print(
                f"eval step {step}: {fields['correct']}/{fields['n']} = {100 * fields['accuracy']:.1f}% "
                f"[{100 * fields['ci_low']:.1f}, {100 * fields['ci_high']:.1f}] "
                f"(flexible {100 * fields['accuracy_flex']:.1f}%) in {fields['eval_s']:.1f}s",
                flush=True,
            )
            if engine_callback is not None and hasattr(engine_callback, "exclude"):
                engine_callback.exclude(fields["eval_s"])  # eval time is not step time

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step == 0:
                self._eval(state, model, processing_class)

        def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kw):
            if not logs or "train_runtime" in logs:
                return
            last = state.global_step >= state.max_steps or control.should_training_stop
            if state.global_step % every == 0 or last:
                self._eval(state, model, processing_class)

    return EvalCallback()
