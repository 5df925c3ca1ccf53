"""`grpo-tui export RUN[@STEP] --out DIR [--adapter] [--push-to-hub ID]`: the trained model out of a run.

A LoRA checkpoint is merged into its base weights with peft's merge_and_unload
(or, with --adapter, kept as the adapter alone); full-weight checkpoints are
saved as they are. DIR gets safetensors weights, the tokenizer, a generation
config and a model card (README.md: preset, base model, steps, the reward
curve from events.jsonl, the latest eval results). Everything is written into a
temporary sibling directory and renamed into place, so a failure leaves no
half-exported DIR. The result loads with `AutoModelForCausalLM.from_pretrained`
(`PeftModel.from_pretrained` for --adapter).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from grpo_tui.engine.eval.evaluate import EvalError, ModelSpec, resolve_model
from grpo_tui.rundir.events import read_events
from grpo_tui.rundir.layout import RunDir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class ExportError(RuntimeError):
    """A run, step or output directory that can't be exported; the message says what to do (exit 2)."""


def resolve_export(spec_text: str, out: Path, adapter: bool) -> ModelSpec:
    """Checks that need no model: a run directory with a checkpoint at @STEP, an empty or new DIR."""
    try:
        spec = resolve_model(spec_text)
    except EvalError as e:
        raise ExportError(str(e)) from None
    if spec.run_dir is None:
        raise ExportError(f"{spec_text}: not a run directory; export takes RUN_DIR[@STEP] (a run with checkpoints).")
    if spec.stage == "base":
        raise ExportError(f"{spec_text}: @base is the model the run started from; export a trained step instead.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: exists and is not an empty directory; choose a new one.")
    if adapter and not spec.adapter:
        raise ExportError(f"{spec_text}: this checkpoint holds full weights, not a LoRA adapter; drop --adapter.")
    return spec


def _reward_summary(events: list[dict[str, Any]]) -> list[str]:
    steps = [e for e in events if e.get("type") == "step" and isinstance(e.get("metrics"), dict)]
    if not steps:
        return ["No training steps were logged."]
    rewards = [(e["step"], e["metrics"].get("reward")) for e in steps if e["metrics"].get("reward") is not None]
    lines = [f"{len(steps)} logged optimizer steps (last: step {steps[-1]['step']})."]
    if rewards:
        k = max(1, len(rewards) // 10)  # mean over the first and last tenth: one step is noise
        first = sum(r for _, r in rewards[:k]) / k
        last = sum(r for _, r in rewards[-k:]) / k
        best = max(rewards, key=lambda x: x[1])
        lines.append(f"Mean total reward: {first:.3f} over the first {k} step(s), {last:.3f} over the last {k}; "
                     f"highest {best[1]:.3f} at step {best[0]}.")
    names = sorted({k.split("/")[1] for e in steps for k in e["metrics"] if k.startswith("rewards/") and k.endswith("/mean")})
    if names:
        lines += ["", "| reward | first step | last step |", "|---|---|---|"]
        for n in names:
            vals = [e["metrics"].get(f"rewards/{n}/mean") for e in steps]
            vals = [v for v in vals if v is not None]
            if vals:
                lines.append(f"| {n} | {vals[0]:.3f} | {vals[-1]:.3f} |")
    return lines


def _eval_table(events: list[dict[str, Any]]) -> list[str]:
    evals = [e for e in events if e.get("type") == "eval" and e.get("n")]
    if not evals:
        return ["No evaluation during training ([eval] every_steps = 0); run `grpo-tui eval --model DIR ...`."]
    lines = ["| step | dataset | items | strict | flexible |", "|---|---|---|---|---|"]
    for e in evals[-8:]:
        flex = e.get("accuracy_flex")
        lines.append(f"| {e.get('step')} | {e.get('dataset')} | {e['n']} | {100 * e.get('accuracy', 0):.1f}% | "
                     + ("-" if flex is None else f"{100 * flex:.1f}%") + " |")
    return lines


def model_card(spec: ModelSpec, adapter: bool, base: str) -> str:
    """README.md for the exported model, from the run's config and events.jsonl."""
    root = Path(spec.run_dir or ".")
    run = RunDir(root)
    events = read_events(run.events) if run.events.exists() else []
    cfg = spec.config
    preset = cfg.preset.name if cfg else "?"
    t = cfg.train if cfg else None
    rewards = ", ".join(f"{k} ({v:g})" for k, v in cfg.reward_weights().items()) if cfg else "?"
    how = ("a LoRA adapter (load it with peft on top of the base model)" if adapter else
           "full weights" + (" (the LoRA adapter merged into the base model)" if spec.adapter else ""))
    front = ["---", "library_name: " + ("peft" if adapter else "transformers"), "tags:", "- grpo", "- trl", "- grpo-tui"]
    if not Path(base).is_absolute():
        front.append(f"base_model: {base}")  # a hub id; a local base directory means nothing to readers of the card
    lines = [
        *front, "---", "",
        f"# {root.name} @ step {spec.step}", "",
        f"Trained with GRPO (TRL) by grpo-tui, preset `{preset}`, from `{cfg.model.name if cfg else base}`. "
        f"This export holds {how}.", "",
        "## Training", "",
        f"- preset: `{preset}`" + (f" ({cfg.preset.description})" if cfg and cfg.preset.description else ""),
        f"- checkpoint: step {spec.step}" + (f" of max_steps {t.max_steps}" if t else ""),
    ]
    if cfg and t:
        lines += [f"- data: {cfg.data.source}" + (f" {cfg.data.dataset}" if cfg.data.dataset else ""),
                  f"- prompt format: {cfg.prompt.format}", f"- rewards: {rewards}",
                  f"- G = {t.num_generations}, learning rate {t.learning_rate:g}, beta {t.beta:g}, "
                  f"loss {t.loss_type}, max completion {t.max_completion_length} tokens"]
        for k, v in t.trl_extra.items():
            lines.append(f"- {k} = {v!r} (trl.GRPOConfig)")
    lines += ["", "## Reward curve", "", *_reward_summary(events), "", "## Evaluation", "", *_eval_table(events), "",
              "## Use", "", "```python"]
    if adapter:
        lines += ["from peft import AutoPeftModelForCausalLM", "model = AutoPeftModelForCausalLM.from_pretrained(PATH)"]
    else:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "model = AutoModelForCausalLM.from_pretrained(PATH)", "tokenizer = AutoTokenizer.from_pretrained(PATH)"]
    lines += ["```", ""]
    if cfg:
        from grpo_tui.engine.data.prompts import system_prompt
        lines += ["Ask with the system prompt it was trained with:", "", "```",
                  system_prompt(cfg.prompt.format, cfg.prompt.system_prompt), "```", ""]
    return "\n".join(lines)


def export_model(spec_text: str, out: Path, adapter: bool = False, log: Any = print) -> Path:
    """Write the export into out (which must be new or empty). Raises ExportError for bad input."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    spec = resolve_export(spec_text, out, adapter)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tok_dir = spec.adapter if spec.adapter and (Path(spec.adapter) / "tokenizer_config.json").is_file() else spec.path
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        if adapter:
            for name in ADAPTER_FILES:
                src = Path(spec.adapter) / name
                if src.is_file():
                    shutil.copy2(src, tmp / name)
            cfg_path = tmp / "adapter_config.json"
            acfg = json.loads(cfg_path.read_text())
            acfg["base_model_name_or_path"] = spec.path  # where the base weights are (a hub id or a local dir)
            cfg_path.write_text(json.dumps(acfg, indent=2))
            gen = GenerationConfig.from_pretrained(spec.path) if (Path(spec.path) / "generation_config.json").is_file() \
                else GenerationConfig()
        else:
            log(f"loading {spec.path}" + (f" + adapter {spec.adapter}" if spec.adapter else ""))
            model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32 if not torch.cuda.is_available()
                                                         else "auto")
            if spec.adapter:
                from peft import PeftModel
                model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
            model.save_pretrained(tmp, safe_serialization=True)
            gen = model.generation_config
        # generation defaults that match training: the run's sampling and completion budget, pad/eos from the tokenizer
        cfg = spec.config
        if cfg is not None:
            gen.max_new_tokens = cfg.train.max_completion_length
            gen.temperature, gen.top_p = cfg.train.temperature, cfg.train.top_p
            gen.do_sample = True
        if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
            gen.pad_token_id = tokenizer.pad_token_id
        if gen.eos_token_id is None and tokenizer.eos_token_id is not None:
            gen.eos_token_id = tokenizer.eos_token_id
        gen.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(spec, adapter, spec.path), encoding="utf-8")
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def push_to_hub(out: Path, repo_id: str, private: bool = True) -> str:
    """Upload DIR to a hub model repo with huggingface_hub's API; returns the repo URL. Raises ExportError."""
    from huggingface_hub import HfApi
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        raise ExportError(f"--push-to-hub {repo_id}: the hub is switched off here (HF_HUB_OFFLINE=1); the export is "
                          f"in {out}: push it later with `hf upload {repo_id} {out}`.")
    try:
        api = HfApi()
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="model",
                          commit_message="grpo-tui export")
        return str(url)
    except Exception as e:  # noqa: BLE001 - no token, no network, no permission: say so with the way out
        raise ExportError(f"--push-to-hub {repo_id}: {type(e).__name__}: {str(e)[:300]}. The export is in {out}; "
                          "log in with `hf auth login` and retry, or upload it by hand.") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpo-tui export",
                                description="Export a run's checkpoint as a transformers model (LoRA merged) or a "
                                            "LoRA adapter, with tokenizer, generation config and a model card.")
    p.add_argument("run", metavar="RUN_DIR[@STEP]", help="a run directory; @STEP picks a checkpoint (default latest)")
    p.add_argument("--out", type=Path, required=True, help="new (or empty) output directory")
    p.add_argument("--adapter", action="store_true", help="keep the LoRA adapter instead of merging it")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload DIR to this hub model repo (private)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.push_to_hub:
        from huggingface_hub import constants
        if constants.HF_HUB_OFFLINE:  # say it before minutes of merging, not after
            print(f"error: --push-to-hub {args.push_to_hub}: the hub is switched off here (HF_HUB_OFFLINE=1); "
                  "export without --push-to-hub and upload later with `hf upload`.", file=sys.stderr)
            return EXIT_USAGE
    try:
        out = export_model(args.run, args.out, args.adapter)
        print(f"exported {args.run} to {out}" + (" (LoRA adapter)" if args.adapter else ""))
        if args.push_to_hub:
            print(f"pushed to {push_to_hub(out, args.push_to_hub)}")
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
