"""The SFT cold-start stage: stage 1 of the two-stage recipe, before GRPO.

A preset with `[sft] enabled = true` first fine-tunes the model on worked
solutions written in the run's answer format, then GRPO starts from those
weights in the same run (same run directory, same event log):

- Examples are GSM8K solutions (the `<<48/2=24>>` calculator notes stripped)
  or, for the built-in synthetic problems, a step-by-step trace worked out from
  the problem's sentences. Each becomes `<reasoning>steps</reasoning><answer>
  gold</answer>` or `<think>steps</think>\\boxed{gold}`, asked with exactly the
  prompt GRPO will use (system prompt, optional one-shot turn).
- Training is TRL's SFTTrainer on a prompt/completion dataset with
  `completion_only_loss=True`: prompt tokens get label -100, so the loss and
  its gradient come from the solution tokens only.
- Full fine-tuning, or LoRA (`[sft] lora = true`) merged into the weights
  before GRPO. The result is saved to RUN_DIR/sft/model; a resumed or switched
  run finds it there and skips the stage.

Events: `stage` (sft started/finished/skipped/stopped) and `sft_step` per
optimizer step (loss, mean_token_accuracy, learning_rate, progress); see
docs/run-directory.md.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import Config, ModelConfig, PresetError
from grpo_tui.engine.rewards.answer_format import answer_format
from grpo_tui.rundir.checkpoints import find_checkpoints
from grpo_tui.rundir.layout import RunDir

_CALC_RE = re.compile(r"<<[^<>]*>>")


# ------------------------------------------------------------------------- examples


def strip_calc(text: str) -> str:
    """GSM8K's calculator annotations out: '48/2 = <<48/2=24>>24' -> '48/2 = 24'."""
    return _CALC_RE.sub("", text)


def gsm8k_solution(answer_field: str) -> tuple[str, str] | None:
    """(worked steps, gold) from a GSM8K answer field, or None without '####'."""
    from grpo_tui.engine.rewards import gold_from_solution

    if not answer_field or "####" not in answer_field:
        return None
    gold = gold_from_solution(answer_field, "gsm8k")
    steps = strip_calc(answer_field.rsplit("####", 1)[0]).strip()
    steps = "\n".join(line.rstrip() for line in steps.splitlines() if line.strip())
    return (steps, gold) if gold and steps else None


_SYN_START = re.compile(r"^(?P<name>\w+) has (?P<n>\d+) (?P<item>\w+)\.$")
_SYN_STEPS = [
    (re.compile(r"^(?:Then they get|A friend gives them) (?P<n>\d+) more \w+\.$"), "add"),
    (re.compile(r"^(?:Then they give away|They lose) (?P<n>\d+) \w+\.$"), "sub"),
    (re.compile(r"^They split the \w+ equally into (?P<n>\d+) boxes and keep one box\.$"), "div"),
    (re.compile(r"^Then the number of \w+ becomes (?P<n>\d+) times as many\.$"), "mul"),
    (re.compile(r"^Then they multiply their \w+ by (?P<n>\d+)\.$"), "mul"),
]


def synthetic_trace(question: str, answer: str) -> str | None:
    """Step-by-step working for a built-in synthetic problem, checked against its answer (None if it can't)."""
    sentences = re.findall(r"[^.?]+[.?]", question)
    if len(sentences) < 3:
        return None
    m = _SYN_START.match(sentences[0].strip())
    if not m:
        return None
    value, item, name = int(m.group("n")), m.group("item"), m.group("name")
    lines = [f"{name} starts with {value} {item}."]
    for s in sentences[1:-1]:
        s = s.strip()
        for rx, op in _SYN_STEPS:
            mm = rx.match(s)
            if mm:
                n = int(mm.group("n"))
                if op == "add":
                    lines.append(f"Getting {n} more gives {value} + {n} = {value + n}.")
                    value += n
                elif op == "sub":
                    lines.append(f"Giving away {n} leaves {value} - {n} = {value - n}.")
                    value -= n
                elif op == "div":
                    lines.append(f"Splitting into {n} boxes and keeping one gives {value} / {n} = {value // n}.")
                    value //= n
                else:
                    lines.append(f"{n} times as many is {value} * {n} = {value * n}.")
                    value *= n
                break
        else:
            return None
    return "\n".join(lines) if str(value) == str(answer).strip() else None


def target_text(steps: str, gold: str, fmt: str) -> str:
    """The completion to imitate, in the run's answer format (laid out as the format's worked example)."""
    return answer_format(fmt).render(steps, gold)


def sft_source(cfg: Config) -> str:
    if cfg.sft.source != "auto":
        return cfg.sft.source
    return "synthetic" if cfg.data.source == "synthetic" else "gsm8k"


def _gsm8k_records(cfg: Config) -> tuple[list[dict[str, Any]], str]:
    from grpo_tui.engine.data.loader import GSM8K_HUB, hub_records, read_file

    files = cfg.sft.data_files or (cfg.data.data_files if cfg.data.source == "gsm8k" else [])
    if files:
        recs: list[dict[str, Any]] = []
        for f in files:
            p = Path(f).expanduser()
            if not p.is_file():
                raise PresetError(f"[sft] data_files: {f} does not exist (paths are relative to {Path.cwd()}).")
            recs += list(read_file(p))
        return recs, ", ".join(files)
    return list(hub_records(*GSM8K_HUB, split="train", where="[sft]")), f"hub {GSM8K_HUB[0]} train"


def build_sft_rows(cfg: Config) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Prompt/completion rows for SFTTrainer, plus a report (origin, counts)."""
    from grpo_tui.engine.data.prompts import build_messages, system_prompt

    fmt = cfg.prompt.format
    system = system_prompt(fmt, cfg.prompt.system_prompt)
    shot = fmt if cfg.prompt.one_shot else None
    source = sft_source(cfg)
    pairs: list[tuple[str, str, str]] = []  # question, steps, gold
    skipped = 0
    if source == "synthetic":
        from grpo_tui.engine.data.synthetic import generate

        origin = f"built-in synthetic, difficulty {cfg.data.synthetic_difficulty}"
        # the GRPO training problems' own distribution, a different stream (a different seed) of it
        for p in generate(
            max(cfg.data.synthetic_size, cfg.sft.max_examples or 0),
            cfg.data.synthetic_difficulty,
            cfg.train.seed + 1_000_000,
        ):
            steps = synthetic_trace(p["question"], p["answer"])
            if steps is None:
                skipped += 1
            else:
                pairs.append((p["question"], steps, p["answer"]))
    else:
        records, origin = _gsm8k_records(cfg)
        for rec in records:
            q, sol = rec.get("question"), rec.get("answer")
            parsed = gsm8k_solution(sol) if isinstance(sol, str) else None
            if not isinstance(q, str) or not q.strip() or parsed is None:
                skipped += 1
                continue
            pairs.append((q.strip(), *parsed))
    random.Random(cfg.train.seed).shuffle(pairs)
    if cfg.sft.max_examples:
        pairs = pairs[: cfg.sft.max_examples]
    if not pairs:
        raise PresetError(f"[sft] no usable examples from {origin} ({skipped} skipped).")
    rows = [
        {
            "prompt": build_messages(q, system, shot),
            "completion": [{"role": "assistant", "content": target_text(steps, gold, fmt)}],
        }
        for q, steps, gold in pairs
    ]
    return rows, {"source": source, "origin": origin, "examples": len(rows), "skipped": skipped}


def starting_model(cfg: Config, run_root: Path) -> ModelConfig:
    """The model section GRPO loads: the run's finished SFT model when it has one (resume, switch), else [model]."""
    run = RunDir(Path(run_root))
    if cfg.sft.enabled and run.sft_done():
        return dataclasses.replace(cfg.model, name=str(run.sft_model))
    return cfg.model


def sft_args(cfg: Config, output_dir: Path, device: str) -> Any:
    """TRL's SFTConfig from [sft]; TRL fields the preset wrote directly in [sft] (trl_extra) come last."""
    import torch
    from trl import SFTConfig

    from grpo_tui.engine.train.grpo_args import tracker_settings

    s = cfg.sft
    bf16 = cfg.train.bf16 if cfg.train.bf16 is not None else (device == "cuda" and torch.cuda.is_bf16_supported())
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=s.epochs,
        max_steps=s.max_steps if s.max_steps > 0 else -1,
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler_type,
        warmup_steps=s.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=s.weight_decay,
        max_grad_norm=s.max_grad_norm,
        optim=s.optim,
        per_device_train_batch_size=s.per_device_train_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_length=s.max_length,
        packing=False,
        completion_only_loss=True,  # the point of the stage: prompt tokens get label -100
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        bf16=bf16,
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        logging_steps=1,
        disable_tqdm=True,
        save_strategy="steps" if s.save_steps > 0 else "no",
        save_steps=max(s.save_steps, 1),
        save_total_limit=2,
        use_cpu=device == "cpu",
    )
    # output_dir is RUN_DIR/sft/checkpoints: trackers live at the run's root, the SFT stage named apart
    trackers = tracker_settings(cfg, Path(output_dir).parent.parent)
    kwargs.update(trackers, run_name=f"{trackers['run_name']}-sft")
    kwargs.update(s.trl_extra)
    return SFTConfig(**kwargs)


def _latest_sft_checkpoint(run_root: Path) -> Path | None:
    # the one definition of a usable checkpoint lives in rundir.checkpoints
    return find_checkpoints(RunDir(Path(run_root)).sft_checkpoints).latest


# --------------------------------------------------------------------------- the stage


@dataclass
class SftResult:
    model: Any
    stopped: bool = False
    skipped: bool = False


def make_sft_callback(events: Any, watcher: Any) -> Any:
    from transformers import TrainerCallback

    from grpo_tui.engine.train.commands import StepCommands

    class SftEventCallback(StepCommands, TrainerCallback):
        """sft_step events, and stop/pause from control/ at SFT step boundaries.

        Checkpoint, switch and a resume that finds nothing paused wait for the GRPO stage's callback.
        """

        handles = frozenset({"stop", "pause"})

        def __init__(self) -> None:
            self.events, self.watcher = events, watcher
            self.t_start = self.t_last = time.time()
            self.step_times: list[float] = []
            self.stopped = False
            self.last: dict[str, Any] = {}

        @property
        def stop_requested(self) -> bool:  # type: ignore[override]
            return self.stopped

        def on_train_begin(self, args, state, control, **kw):
            self.t_start = self.t_last = time.time()

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "train_runtime" in logs:
                return control
            now = time.time()
            dt, self.t_last = now - self.t_last, now
            self.step_times.append(dt)
            recent = self.step_times[-10:]
            fields = {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "epoch": state.epoch,
                "loss": logs.get("loss"),
                "mean_token_accuracy": logs.get("mean_token_accuracy"),
                "learning_rate": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
                "entropy": logs.get("entropy"),
                "num_tokens": logs.get("num_tokens"),
                "step_time_s": round(dt, 4),
                "elapsed_s": round(now - self.t_start, 3),
                "eta_s": round((state.max_steps - state.global_step) * sum(recent) / len(recent), 1),
            }
            fields = {k: (float(v) if hasattr(v, "item") else v) for k, v in fields.items()}
            self.last = fields
            events.emit("sft_step", **fields)
            print(
                f"sft step {state.global_step}/{state.max_steps} loss={fields['loss']} "
                f"token_acc={fields['mean_token_accuracy']} {dt:.2f}s",
                flush=True,
            )
            self._handle_commands(state, control)
            return control

        # GRPO's run state counts GRPO steps: the SFT stage reports step 0 and says where it is in detail
        def state_fields(self, state_name: str, state: Any) -> dict[str, Any]:
            if state_name == "paused":
                return {"step": 0, "detail": f"sft step {state.global_step}"}
            return {"step": 0, "detail": "sft stage"}

        def command_stop(self, state, control, cid) -> None:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # an SFT checkpoint, so --resume continues the stage
            events.state("stopping", step=0, detail="sft stage")
            events.emit(
                "command", id=cid, command="stop", status="done", detail=f"SFT stopped at step {state.global_step}"
            )

    return SftEventCallback()


def run_sft_stage(cfg: Config, run_root: Path, loaded: Any, events: Any, watcher: Any, device: str) -> SftResult:
    """Train loaded.model in place (full FT) or through a merged LoRA; save it; return the model GRPO starts from."""
    run_root = Path(run_root)
    run = RunDir(run_root)
    if run.sft_done():
        events.emit(
            "stage", stage="sft", status="skipped", detail="finished earlier in this run", path=str(run.sft_model)
        )
        return SftResult(loaded.model, skipped=True)
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from grpo_tui.engine.models import lora_config, save_model

    t0 = time.time()
    rows, report = build_sft_rows(cfg)
    args = sft_args(cfg, run.sft_checkpoints, device)
    peft = None
    if cfg.sft.lora:
        peft = lora_config(
            dataclasses.replace(cfg.model, lora=True), getattr(loaded.model.config, "num_hidden_layers", None)
        )
    callback = make_sft_callback(events, watcher)
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.tokenizer,
        peft_config=peft,
        callbacks=[callback],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    resume = _latest_sft_checkpoint(run_root)
    events.emit(
        "stage",
        stage="sft",
        status="started",
        examples=report["examples"],
        source=report["source"],
        origin=report["origin"],
        skipped=report["skipped"],
        lora=cfg.sft.lora,
        epochs=cfg.sft.epochs,
        max_steps=trainer.args.max_steps if trainer.args.max_steps > 0 else None,
        effective_batch=cfg.sft.per_device_train_batch_size * cfg.sft.gradient_accumulation_steps,
        learning_rate=cfg.sft.learning_rate,
        resume_from=str(resume) if resume else None,
    )
    events.state("running", step=0, detail="sft stage")
    print(
        f"SFT stage: {report['examples']} examples from {report['origin']}"
        f"{' (resuming ' + resume.name + ')' if resume else ''}",
        flush=True,
    )
    out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    if callback.stopped:
        events.emit(
            "stage", stage="sft", status="stopped", step=trainer.state.global_step, elapsed_s=round(time.time() - t0, 2)
        )
        return SftResult(model, stopped=True)
    if cfg.sft.lora:
        model = model.merge_and_unload()
    model.config.use_cache = True
    save_model(model, loaded.tokenizer, run.sft_model, replace=True)  # complete or absent
    last = callback.last
    events.emit(
        "stage",
        stage="sft",
        status="finished",
        steps=trainer.state.global_step,
        train_loss=float(out.training_loss),
        loss=last.get("loss"),
        mean_token_accuracy=last.get("mean_token_accuracy"),
        path=str(run.sft_model),
        elapsed_s=round(time.time() - t0, 2),
    )
    print(
        f"SFT stage done: {trainer.state.global_step} steps, loss {last.get('loss')}, "
        f"token accuracy {last.get('mean_token_accuracy')}, saved to {run.sft_model}",
        flush=True,
    )
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return SftResult(model)


__all__ = [
    "build_sft_rows",
    "gsm8k_solution",
    "run_sft_stage",
    "starting_model",
    "strip_calc",
    "synthetic_trace",
    "target_text",
]


def before_grpo(
    cfg: Config, run_root: Path, loaded: Any, rows: list[dict[str, str]], events: Any, watcher: Any, device: str
) -> list[dict[str, str]] | None:
    """The stages between loading the model and GRPO: SFT cold start, then the curriculum pre-pass.

    Updates loaded.model in place; returns the training rows GRPO uses, or None when a stop command
    ended the run during the SFT stage.
    """
    from grpo_tui.engine import distributed

    if distributed.world_size() > 1:
        raise PresetError(
            "[sft] / [curriculum] prepass run in a single process for now; run them with "
            "[distributed] num_processes = 1, then start the multi-GPU GRPO run from RUN_DIR/sft/model."
        )
    if cfg.sft.enabled:
        result = run_sft_stage(cfg, run_root, loaded, events, watcher, device)
        loaded.model = result.model
        if result.stopped:
            return None
    if cfg.curriculum.prepass:
        from grpo_tui.engine.train.curriculum import prepass_filter

        rows = prepass_filter(cfg, run_root, loaded, rows, events, device)
    events.emit("stage", stage="grpo", status="started", rows=len(rows))
    return rows
