"""The trained model out of a run (`grpo-tui export`; its command line is tui/console/export.py).

A LoRA checkpoint is merged into its base weights with peft's merge_and_unload
(or, with --adapter, kept as the adapter alone); full-weight checkpoints are
saved as they are. DIR gets safetensors weights, the tokenizer, a generation
config (the run's sampling, completion budget and stop strings) and a model card
(README.md: preset, base model, steps, the reward curve from events.jsonl, the
latest eval results, the system prompt and the one-shot example it was trained
with; run text in it is escaped). DIR may not lie inside a run directory. Everything is written into a
temporary sibling directory and renamed into place, so a failure leaves no
half-exported DIR. The result loads with `AutoModelForCausalLM.from_pretrained`
(`PeftModel.from_pretrained` for --adapter).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from grpo_tui.engine.eval.errors import EvalError
from grpo_tui.engine.eval.resolve import ModelSpec, resolve_model
from grpo_tui.rundir.event_reader import iter_events
from grpo_tui.rundir.layout import RunDir, enclosing_run
from grpo_tui.rundir.unsafe_text import UNSAFE_CODEPOINTS

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
    inside = enclosing_run(out)
    if inside is not None:
        raise ExportError(
            f"--out {out}: inside the run directory {inside}; the engine owns everything there "
            "(a resume or --restart may move or delete it): choose a directory outside any run."
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: exists and is not an empty directory; choose a new one.")
    if adapter and not spec.adapter:
        raise ExportError(f"{spec_text}: this checkpoint holds full weights, not a LoRA adapter; drop --adapter.")
    return spec


# Characters a model card never holds (str.translate drops them): an ESC in a run name would retitle a terminal
# that `cat`s the card, or write its clipboard (OSC 52).
_CONTROL = dict.fromkeys(UNSAFE_CODEPOINTS)
# Markdown's inline syntax (emphasis, code, links, images, HTML, entities, table cells); run text never starts a
# line of the card, so the line-start markers (-, +, 1.) need no escape.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~&])")


def md_text(value: Any) -> str:
    """Run text (a run name, a preset's description, a reward name) as literal markdown on one line:
    control characters dropped, whitespace folded, every character markdown could act on backslash-escaped."""
    text = " ".join(str(value).translate(_CONTROL).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_block(value: Any) -> list[str]:
    """Multi-line run text (a system prompt, the one-shot example) as a fenced block that it cannot close:
    control characters dropped, the fence longer than any run of backticks inside."""
    text = str(value).replace("\r\n", "\n").translate(_CONTROL).expandtabs(4)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def _reward_summary(events: Iterable[dict[str, Any]]) -> list[str]:
    steps, rewards, first, last = 0, [], {}, {}
    last_step = None
    for e in events:  # one pass over the log: its size doesn't matter
        if e.get("type") != "step" or not isinstance(e.get("metrics"), dict):
            continue
        steps, last_step, m = steps + 1, e.get("step"), e["metrics"]
        if m.get("reward") is not None:
            rewards.append((e.get("step"), m["reward"]))
        for k, v in m.items():
            if k.startswith("rewards/") and k.endswith("/mean") and v is not None:
                first.setdefault(k[len("rewards/") : -len("/mean")], v)
                last[k[len("rewards/") : -len("/mean")]] = v
    if not steps:
        return ["No training steps were logged."]
    lines = [f"{steps} logged optimizer steps (last: step {md_text(last_step)})."]
    if rewards:
        k = max(1, len(rewards) // 10)  # mean over the first and last tenth: one step is noise
        a = sum(r for _, r in rewards[:k]) / k
        b = sum(r for _, r in rewards[-k:]) / k
        best = max(rewards, key=lambda x: x[1])
        lines.append(
            f"Mean total reward: {a:.3f} over the first {k} step(s), {b:.3f} over the last {k}; "
            f"highest {best[1]:.3f} at step {md_text(best[0])}."
        )
    if first:
        lines += ["", "| reward | first step | last step |", "|---|---|---|"]
        for n in sorted(first):
            lines.append(f"| {md_text(n)} | {first[n]:.3f} | {last[n]:.3f} |")
    return lines


def _eval_table(evals: list[dict[str, Any]]) -> list[str]:
    evals = [e for e in evals if e.get("n")]
    if not evals:
        return ["No evaluation during training ([eval] every_steps = 0); run `grpo-tui eval --model DIR ...`."]
    lines = ["| step | dataset | items | strict | flexible |", "|---|---|---|---|---|"]
    for e in evals[-8:]:
        flex = e.get("accuracy_flex")
        lines.append(
            f"| {md_text(e.get('step'))} | {md_text(e.get('dataset'))} | {md_text(e['n'])} | "
            f"{100 * (e.get('accuracy') or 0):.1f}% | " + ("-" if flex is None else f"{100 * flex:.1f}%") + " |"
        )
    return lines


def model_card(spec: ModelSpec, adapter: bool, base: str) -> str:
    """README.md for the exported model, from the run's config and events.jsonl.

    Every piece of run text in it (the run's name, the preset's name and description, reward and dataset
    names, the prompts) is shown literally: control characters dropped, markdown escaped or fenced.
    """
    root = Path(spec.run_dir or ".")
    run = RunDir(root)
    evals: list[dict[str, Any]] = []

    def events() -> Iterator[dict[str, Any]]:
        for batch in iter_events(run.events):
            for e in batch:
                if e.get("type") == "eval":
                    evals.append(e)
                yield e

    curve = _reward_summary(events())
    cfg = spec.config
    preset = md_text(cfg.preset.name) if cfg else "?"
    t = cfg.train if cfg else None
    rewards = ", ".join(f"{md_text(k)} ({v:g})" for k, v in cfg.reward_weights().items()) if cfg else "?"
    how = (
        "a LoRA adapter (load it with peft on top of the base model)"
        if adapter
        else "full weights" + (" (the LoRA adapter merged into the base model)" if spec.adapter else "")
    )
    front = [
        "---",
        "library_name: " + ("peft" if adapter else "transformers"),
        "tags:",
        "- grpo",
        "- trl",
        "- grpo-tui",
    ]
    if not Path(base).is_absolute():  # a hub id; a local base directory means nothing to readers of the card
        front.append(f"base_model: {json.dumps(' '.join(base.translate(_CONTROL).split()), ensure_ascii=True)}")
    lines = [
        *front,
        "---",
        "",
        f"# {md_text(root.name)} @ step {spec.step}",
        "",
        f"Trained with GRPO (TRL) by grpo-tui, preset {preset}, from {md_text(cfg.model.name if cfg else base)}. "
        f"This export holds {how}.",
        "",
        "## Training",
        "",
        f"- preset: {preset}" + (f" ({md_text(cfg.preset.description)})" if cfg and cfg.preset.description else ""),
        f"- checkpoint: step {spec.step}" + (f" of max\\_steps {t.max_steps}" if t else ""),
    ]
    if cfg and t:
        lines += [
            f"- data: {md_text(cfg.data.source)}" + (f" {md_text(cfg.data.dataset)}" if cfg.data.dataset else ""),
            f"- prompt format: {md_text(cfg.prompt.format)}",
            f"- rewards: {rewards}",
            f"- G = {t.num_generations}, learning rate {t.learning_rate:g}, beta {t.beta:g}, "
            f"loss {md_text(t.loss_type)}, max completion {t.max_completion_length} tokens",
        ]
        if t.stop_strings:
            lines.append(
                "- each completion ended at the first of: " + ", ".join(md_text(repr(x)) for x in t.stop_strings)
            )
        for k, v in t.trl_extra.items():
            lines.append(f"- {md_text(k)} = {md_text(repr(v))} (trl.GRPOConfig)")
    lines += [
        "",
        "## Reward curve",
        "",
        *curve,
        "",
        "## Evaluation",
        "",
        *_eval_table(evals),
        "",
        "## Use",
        "",
        "```python",
    ]
    if adapter:
        lines += ["from peft import AutoPeftModelForCausalLM", "model = AutoPeftModelForCausalLM.from_pretrained(PATH)"]
    else:
        lines += [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "model = AutoModelForCausalLM.from_pretrained(PATH)",
            "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        ]
        if cfg and cfg.train.stop_strings:  # transformers needs the tokenizer to find stop strings
            lines += [
                "# generation_config.json holds the stop strings the run used: pass the tokenizer along",
                "output = model.generate(**inputs, tokenizer=tokenizer)",
            ]
    lines += ["```", ""]
    if cfg:
        from grpo_tui.engine.data.prompts import EXAMPLE_QUESTION, system_prompt
        from grpo_tui.engine.rewards.answer_format import answer_format

        lines += [
            "Ask with the system prompt it was trained with:",
            "",
            *md_block(system_prompt(cfg.prompt.format, cfg.prompt.system_prompt)),
            "",
        ]
        if cfg.prompt.one_shot:
            lines += [
                "It was trained with one worked example as an earlier chat turn, before each question; "
                "give it the same turns:",
                "",
                "user:",
                "",
                *md_block(EXAMPLE_QUESTION),
                "",
                "assistant:",
                "",
                *md_block(answer_format(cfg.prompt.format).example),
                "",
            ]
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
        tok_dir = (
            spec.adapter if spec.adapter and (Path(spec.adapter) / "tokenizer_config.json").is_file() else spec.path
        )
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
            gen = (
                GenerationConfig.from_pretrained(spec.path)
                if (Path(spec.path) / "generation_config.json").is_file()
                else GenerationConfig()
            )
        else:
            log(f"loading {spec.path}" + (f" + adapter {spec.adapter}" if spec.adapter else ""))
            model = AutoModelForCausalLM.from_pretrained(
                spec.path, dtype=torch.float32 if not torch.cuda.is_available() else "auto"
            )
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
            if cfg.train.stop_strings:  # the run ended each completion there; generate() needs tokenizer= for it
                gen.stop_strings = list(cfg.train.stop_strings)
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
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise ExportError(
            f"--push-to-hub {repo_id}: the hub is switched off here (HF_HUB_OFFLINE=1); the export is "
            f"in {out}: push it later with `hf upload {repo_id} {out}`."
        )
    try:
        api = HfApi()
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="model", commit_message="grpo-tui export")
        return str(url)
    except Exception as e:  # noqa: BLE001 - no token, no network, no permission: say so with the way out
        raise ExportError(
            f"--push-to-hub {repo_id}: {type(e).__name__}: {str(e)[:300]}. The export is in {out}; "
            "log in with `hf auth login` and retry, or upload it by hand."
        ) from None
