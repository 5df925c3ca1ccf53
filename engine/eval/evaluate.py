"""Evaluate one model on one dataset: generate, score, summarize (engine/eval/__init__.py maps the package)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from grpo_tui.engine.config import PromptConfig
from grpo_tui.engine.data.prompts import chat_template_kwargs
from grpo_tui.engine.eval.data import EvalData
from grpo_tui.engine.eval.generation import default_batch_size, generate, render_prompts
from grpo_tui.engine.eval.resolve import ModelSpec, load_for_eval
from grpo_tui.engine.eval.scoring import score_items


@dataclass
class EvalRequest:
    dataset: EvalData
    max_new_tokens: int = 256
    batch_size: int = 0
    samples: int = 0
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    prompt_override: PromptConfig | None = None
    dtype: str = "auto"


def evaluate_loaded(
    model: Any,
    tokenizer: Any,
    data: EvalData,
    prompt: PromptConfig,
    *,
    max_new_tokens: int,
    batch_size: int,
    samples: int = 0,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    stop_strings: list[str] | None = None,
    fast_cpu_decode: bool = True,
    template_kwargs: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate and score; returns (rows, numbers). Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        prompts = render_prompts(tokenizer, [it.question for it in data.items], prompt, template_kwargs)
        t0 = time.time()
        g = (
            [
                cs[0]
                for cs in generate(
                    model,
                    tokenizer,
                    prompts,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                    on_batch=progress,
                    stop_strings=stop_strings,
                    fast_cpu_decode=fast_cpu_decode,
                )
            ]
            if greedy
            else None
        )
        t_greedy = time.time() - t0
        s = (
            generate(
                model,
                tokenizer,
                prompts,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                num_samples=samples,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                on_batch=progress,
                stop_strings=stop_strings,
                fast_cpu_decode=fast_cpu_decode,
            )
            if samples
            else None
        )
        elapsed = time.time() - t0
    finally:
        if was_training:
            model.train()
    rows, numbers = score_items(data.items, g, s, prompt.format, data.math_style)
    gen_tokens = sum(c.tokens for c in (g or [])) + sum(c.tokens for cs in (s or []) for c in cs)
    numbers["generation_s"] = round(elapsed, 2)
    numbers["greedy_s"] = round(t_greedy, 2) if greedy else None
    numbers["generated_tokens"] = gen_tokens
    numbers["tokens_per_s"] = round(gen_tokens / elapsed, 1) if elapsed > 0 else None
    return rows, numbers


def evaluate_spec(
    spec: ModelSpec,
    req: EvalRequest,
    device: str,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load one model and evaluate it: (rows, summary). progress(k) is called as answers are generated."""
    prompt = req.prompt_override or spec.prompt or PromptConfig()
    t0 = time.time()
    log(f"{spec.label}: loading {spec.path}" + (f" + adapter {spec.adapter}" if spec.adapter else ""))
    model, tok = load_for_eval(spec, device, req.dtype)
    load_s = time.time() - t0
    batch = req.batch_size or default_batch_size(device)
    stops = spec.config.train.stop_strings if spec.config else []  # a run's model is asked as it was trained
    rows, numbers = evaluate_loaded(
        model,
        tok,
        req.dataset,
        prompt,
        max_new_tokens=req.max_new_tokens,
        batch_size=batch,
        samples=req.samples,
        greedy=req.greedy,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        progress=progress,
        stop_strings=stops,
        template_kwargs=chat_template_kwargs(spec.config),
        fast_cpu_decode=spec.config.train.fast_cpu_decode if spec.config else True,
    )
    summary = {
        "model": spec.label,
        "model_path": spec.path,
        "adapter": spec.adapter,
        "run_dir": spec.run_dir,
        "step": spec.step,
        "stage": spec.stage,
        "dataset": req.dataset.name,
        "dataset_origin": req.dataset.origin,
        "math_style": req.dataset.math_style,
        "prompt": asdict(prompt),
        "max_new_tokens": req.max_new_tokens,
        "stop_strings": list(stops),
        "samples": req.samples,
        "temperature": req.temperature if req.samples else None,
        "top_p": req.top_p if req.samples else None,
        "seed": req.seed,
        "batch_size": batch,
        "device": device,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "load_s": round(load_s, 2),
        **numbers,
    }
    del model
    return rows, summary
