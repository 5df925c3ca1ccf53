"""Batched generation for evaluation: the chat-templated prompts and greedy or sampled completions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grpo_tui.engine.config import PromptConfig
from grpo_tui.engine.eval.scoring import Completion


def render_prompts(
    tokenizer: Any, questions: list[str], prompt: PromptConfig, template_kwargs: dict[str, Any] | None = None
) -> list[str]:
    """Chat-templated prompt text, exactly as the trainer builds it (system prompt, optional one-shot turn,
    the run's chat_template_kwargs)."""
    from grpo_tui.engine.data.prompts import build_messages, system_prompt

    system = system_prompt(prompt.format, prompt.system_prompt)
    shot = prompt.format if prompt.one_shot else None
    return [
        tokenizer.apply_chat_template(
            build_messages(q, system, shot), tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
        )
        for q in questions
    ]


def default_batch_size(device: str) -> int:
    return 64 if device.startswith("cuda") else 8


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
    stop_strings: list[str] | None = None,
    fast_cpu_decode: bool = True,
) -> list[list[Completion]]:
    """num_samples completions per prompt, batched with left padding (longest prompts first, so a batch that
    doesn't fit memory fails at once). batch_size counts sequences. Returns them in prompt order.
    stop_strings: each completion ends at the first of them, as in training with [train] stop_strings.
    fast_cpu_decode: on the CPU, decode as [train] fast_cpu_decode does in training (engine/fast_decode.py)."""
    import torch
    from transformers import GenerationConfig

    from grpo_tui.engine.stopping import stop_string_test

    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        eos_ids.add(gen_eos)
    elif gen_eos:
        eos_ids.update(gen_eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    gen = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        pad_token_id=pad,
        eos_token_id=sorted(eos_ids),
        use_cache=True,
        num_return_sequences=num_samples,
        stop_strings=stop_strings or None,
        **({"temperature": temperature, "top_p": top_p, "top_k": top_k or None} if do_sample else {}),
    )
    per_batch = max(1, batch_size // max(1, num_samples))
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    out: list[list[Completion]] = [[] for _ in prompts]
    tokenizer.padding_side = "left"
    is_stopped = stop_string_test(tokenizer, stop_strings) if stop_strings else None
    # a sampled eval during training seeds its own stream, then gives training's back untouched
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if do_sample:
            torch.manual_seed(seed)
        for b in range(0, len(order), per_batch):
            idx = order[b : b + per_batch]
            _generate_batch(
                model,
                tokenizer,
                [prompts[i] for i in idx],
                gen,
                device,
                eos_ids,
                pad,
                is_stopped,
                fast_cpu_decode,
                [out[idx[r // num_samples]] for r in range(len(idx) * num_samples)],
            )
            if on_batch:
                on_batch(len(idx))
    return out


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    gen: Any,
    device: Any,
    eos_ids: set[int],
    pad: int,
    is_stopped: Any,
    fast_cpu_decode: bool,
    sinks: list[list[Completion]],
) -> None:
    """One batch: each row's Completion appended to its prompt's list (sinks, one per row)."""
    import torch

    from grpo_tui.engine.fast_decode import fast_cpu_generate
    from grpo_tui.engine.stopping import stopped_lengths

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    kwargs = dict(enc, generation_config=gen, **({"tokenizer": tokenizer} if is_stopped is not None else {}))
    with torch.no_grad():
        seqs = (
            fast_cpu_generate(model.generate, model, **kwargs)
            if fast_cpu_decode and device.type == "cpu"
            else model.generate(**kwargs)
        )
    new = seqs[:, enc["input_ids"].shape[1] :].cpu()
    # rows a stop string ended, found with generate's own test: finished (not cut) even on the last allowed token
    if is_stopped is not None:
        prompt_ids = enc["input_ids"].cpu().repeat_interleave(gen.num_return_sequences, dim=0)
        stopped = stopped_lengths(prompt_ids, new, is_stopped, pad, sorted(eos_ids)).tolist()
    else:
        stopped = [-1] * len(new)
    for r, row in enumerate(new.tolist()):
        if stopped[r] >= 0:
            ids, truncated = row[: stopped[r]], False
        else:
            n_tok = next((j + 1 for j, t in enumerate(row) if t in eos_ids), None)
            truncated = n_tok is None
            ids = row if truncated else row[:n_tok]
        sinks[r].append(Completion(tokenizer.decode(ids, skip_special_tokens=True), len(ids), truncated))
