"""Which model to evaluate: a hub id or folder, a run directory (its latest or a chosen checkpoint,
with the run's prompt), and loading it for generation."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import Config, ModelConfig, PresetError, PromptConfig
from grpo_tui.engine.eval.errors import EvalError
from grpo_tui.rundir.checkpoints import checkpoint_step, find_checkpoints
from grpo_tui.rundir.layout import RunDir


@dataclass
class ModelSpec:
    """What --model names, resolved: weights to load, an optional LoRA adapter, the prompt to ask with."""

    label: str
    path: str  # full weights (dir or hub id)
    adapter: str | None = None  # peft adapter dir on top of `path`
    tokenizer: str | None = None  # where the tokenizer lives (default: adapter dir if it has one, else path)
    prompt: PromptConfig | None = None
    config: Config | None = None  # the run's or preset's config, if any
    run_dir: str | None = None
    step: int | None = None  # checkpoint step (None: not a checkpoint)
    stage: str = "model"  # model | base | sft | grpo


def _run_config(root: Path) -> Config | None:
    from grpo_tui.engine.config import load_resolved

    try:
        return load_resolved(RunDir(root).config)
    except PresetError:
        return None


def _run_prompt(root: Path) -> PromptConfig | None:
    """The prompt section of a run's config.json, even when the rest no longer validates."""
    try:
        raw = json.loads(RunDir(root).config.read_text()).get("prompt") or {}
    except (OSError, json.JSONDecodeError):
        return None
    known = {f for f in PromptConfig.__dataclass_fields__}
    return PromptConfig(**{k: v for k, v in raw.items() if k in known})


def _base_of_run(root: Path, cfg: Config | None) -> str:
    """Weights a run's GRPO stage started from: its SFT model when it had one, else [model] name."""
    from grpo_tui.engine.models import resolve_model_path

    run = RunDir(root)
    if run.sft_done():
        return str(run.sft_model)
    if cfg is None:
        raise EvalError(f"{root}: can't read config.json to find the run's base model.")
    return resolve_model_path(cfg.model, log=lambda m: print(m, file=sys.stderr))


def run_checkpoints(root: Path) -> dict[int, Path]:
    """Complete checkpoints by step (the one definition of complete is rundir.checkpoints.checkpoint_problem)."""
    return find_checkpoints(RunDir(root).checkpoints).usable


def resolve_model(spec: str, preset: Config | None = None) -> ModelSpec:
    """--model value -> ModelSpec. Run directories take @STEP, @latest (default), @sft (the SFT stage) or @base."""
    from grpo_tui.engine.models import SMOLLM2, TINY, resolve_model_path

    name, at = spec, None
    if "@" in spec and not Path(spec).expanduser().exists():
        name, at = spec.rsplit("@", 1)
    path = Path(name).expanduser()
    prompt = preset.prompt if preset else None
    # A checkpoint directory inside a run: treat as RUN@STEP.
    ck_step, owner = checkpoint_step(path), RunDir(path.parent.parent)
    if ck_step is not None and at is None and owner.checkpoints == path.parent and owner.is_run():
        path, at = owner.root, str(ck_step)
    if path.is_dir() and RunDir(path).is_run():
        root = path.resolve()
        cfg = _run_config(root)
        prompt = prompt or (cfg.prompt if cfg else _run_prompt(root))
        if at == "base":
            if cfg is None:
                raise EvalError(f"{root}: can't read config.json to find the run's base model.")
            base = resolve_model_path(cfg.model, log=lambda m: print(m, file=sys.stderr))
            return ModelSpec(f"{root.name}@base", base, prompt=prompt, config=cfg, run_dir=str(root), stage="base")
        if at == "sft":
            sft = RunDir(root).sft_model
            if not RunDir(root).sft_done():
                raise EvalError(f"{root}@sft: this run has no finished SFT stage ({sft} missing).")
            return ModelSpec(f"{root.name}@sft", str(sft), prompt=prompt, config=cfg, run_dir=str(root), stage="sft")
        ckpts = run_checkpoints(root)
        if not ckpts:
            raise EvalError(
                f"{root}: the run has no checkpoint yet; use {root}@base or {root}@sft, or wait for a checkpoint."
            )
        if at in (None, "latest"):
            step = max(ckpts)
        else:
            try:
                step = int(at.replace("checkpoint-", ""))
            except ValueError:
                raise EvalError(f"--model {spec}: after @ give a step number, 'latest', 'sft' or 'base'.") from None
            if step not in ckpts:
                raise EvalError(f"--model {spec}: no checkpoint-{step}; this run has steps {sorted(ckpts)}.")
        ck = ckpts[step]
        label = f"{root.name}@{step}"
        if (ck / "adapter_config.json").is_file():
            base = _base_of_run(root, cfg)
            return ModelSpec(
                label, base, adapter=str(ck), prompt=prompt, config=cfg, run_dir=str(root), step=step, stage="grpo"
            )
        return ModelSpec(label, str(ck), prompt=prompt, config=cfg, run_dir=str(root), step=step, stage="grpo")
    if at is not None:
        raise EvalError(f"--model {spec}: @STEP works on run directories only ({name} is not one).")
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise EvalError(f"{path}: adapter_config.json names no base model.")
            return ModelSpec(path.name, base, adapter=str(path.resolve()), prompt=prompt)
        if not (path / "config.json").is_file():
            raise EvalError(f"--model {name}: the directory has neither config.json nor adapter_config.json.")
        return ModelSpec(path.name, str(path.resolve()), prompt=prompt)
    if name.startswith((".", "/", "~")):
        raise EvalError(f"--model {name}: no such directory.")
    mcfg = preset.model if preset and preset.model.name == name else ModelConfig(name=name)
    if name in (SMOLLM2, TINY):
        return ModelSpec(name, resolve_model_path(mcfg, log=lambda m: print(m, file=sys.stderr)), prompt=prompt)
    return ModelSpec(name, name, prompt=prompt)  # a hub id


def load_for_eval(spec: ModelSpec, device: str, dtype: str = "auto") -> tuple[Any, Any]:
    """(model in eval mode on device, tokenizer with left padding). LoRA adapters are merged for speed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_tui.engine.models import pick_dtype

    torch_dtype = pick_dtype(ModelConfig(dtype=dtype), device)
    tok_dir = spec.tokenizer or spec.path
    if spec.adapter and (Path(spec.adapter) / "tokenizer_config.json").is_file():
        tok_dir = spec.adapter
    tok = AutoTokenizer.from_pretrained(tok_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch_dtype)
    if spec.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.adapter).merge_and_unload()
    model.to(device)
    model.eval()
    return model, tok
