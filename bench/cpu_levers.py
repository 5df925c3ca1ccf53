"""Side-by-side cost of the cpu-demo's speed levers, interleaved in one process.

Each round times every variant once, in turn, so machine load hits all of them
alike; the table shows the median seconds and the ratio to the baseline. On a
shared machine only the ratios mean anything.

  python bench/cpu_levers.py --rounds 2            # generation + forward/backward levers
  python bench/cpu_levers.py --only generation     # one group
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def load(attn: str | None = None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_tui.engine.models import ensure_smollm2

    path = ensure_smollm2()
    tok = AutoTokenizer.from_pretrained(path)
    kw = {"attn_implementation": attn} if attn else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)
    model.eval()
    return model, tok


def demo_prompt_ids(tok: Any) -> list[int]:
    """The cpu-demo's real first prompt: one-shot system prompt + a synthetic problem."""
    from grpo_tui.engine.config import load_config
    from grpo_tui.engine.data.loader import load_rows, to_dataset

    cfg = load_config("cpu-demo")
    rows, _ = load_rows(cfg.data, cfg.train.seed)
    ds = to_dataset(rows[:1], cfg.prompt)
    return tok.apply_chat_template(ds[0]["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)


def generate(
    model: Any, tok: Any, ids: list[int], G: int, new: int, fast: bool = False, shared: bool = False, **kw: Any
) -> float:
    """Seconds to sample G completions of `new` tokens; `fast`: [train] fast_cpu_decode's path; `shared`: the
    prompt prefilled once for the G rows ([train] share_prompt_prefix's path)."""
    import functools

    from grpo_tui.engine.fast_decode import fast_cpu_generate
    from grpo_tui.engine.train import shared_prefix

    x = torch.tensor([ids] * G)
    fn = functools.partial(fast_cpu_generate, model.generate, model) if fast else model.generate
    kw.update(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        do_sample=True,
        temperature=0.8,
        max_new_tokens=new,
        min_new_tokens=new,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        shared_prefix.generate(fn, model, **kw) if shared else fn(**kw)
    return time.perf_counter() - t0


def forward_backward(model: Any, ids: list[int], G: int, new: int) -> float:
    x = torch.tensor([ids + [42] * new] * G)
    t0 = time.perf_counter()
    out = model(input_ids=x, attention_mask=torch.ones_like(x))
    out.logits[:, -new:].float().log_softmax(-1).mean().backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--G", type=int, default=8)
    p.add_argument("--new", type=int, default=64, help="completion tokens (forced, so every variant does equal work)")
    p.add_argument("--only", choices=["generation", "backward", "threads"], default=None)
    p.add_argument("--all", action="store_true", help="also eager attention, G/2 and 3/4 length (slower to run)")
    a = p.parse_args(argv)
    print(f"load: {os.getloadavg()}  torch threads {torch.get_num_threads()}", flush=True)
    threads = torch.get_num_threads()
    model, tok = load()
    ids = demo_prompt_ids(tok)
    print(
        f"prompt {len(ids)} tokens, G={a.G}, {a.new} new tokens; attention={model.config._attn_implementation}",
        flush=True,
    )
    variants: dict[str, Callable[[], float]] = {}
    if a.only in (None, "generation"):
        variants["generate: dynamic cache (baseline)"] = lambda: generate(model, tok, ids, a.G, a.new)
        variants["generate: static cache"] = lambda: generate(
            model, tok, ids, a.G, a.new, cache_implementation="static"
        )
        variants["generate: fast_cpu_decode"] = lambda: generate(model, tok, ids, a.G, a.new, fast=True)
        variants["generate: shared prefix"] = lambda: generate(model, tok, ids, a.G, a.new, shared=True)
        variants["generate: shared prefix + fast_cpu_decode (cpu-demo)"] = lambda: generate(
            model, tok, ids, a.G, a.new, fast=True, shared=True
        )
        if a.all:
            eager, _ = load("eager")
            variants["generate: eager attention"] = lambda: generate(eager, tok, ids, a.G, a.new)
            variants["generate: G/2 (half the completions)"] = lambda: generate(model, tok, ids, a.G // 2, a.new)
            variants["generate: 3/4 completion length"] = lambda: generate(model, tok, ids, a.G, a.new * 3 // 4)
    if a.only in (None, "threads"):

        def one_thread() -> float:
            torch.set_num_threads(1)
            try:
                return generate(model, tok, ids, a.G, a.new)
            finally:
                torch.set_num_threads(threads)

        variants["generate: 1 torch thread"] = one_thread
    if a.only in (None, "backward"):
        from peft import LoraConfig, get_peft_model

        n = model.config.num_hidden_layers
        peft8 = get_peft_model(
            load()[0],
            LoraConfig(
                r=16,
                lora_alpha=32,
                task_type="CAUSAL_LM",
                layers_to_transform=list(range(n - 8, n)),
                layers_pattern="layers",
            ),
        )
        peft4 = get_peft_model(
            load()[0],
            LoraConfig(
                r=16,
                lora_alpha=32,
                task_type="CAUSAL_LM",
                layers_to_transform=list(range(n - 4, n)),
                layers_pattern="layers",
            ),
        )
        peft8.train(), peft4.train()
        variants["fwd+bwd: LoRA top 8 layers (baseline)"] = lambda: forward_backward(peft8, ids, a.G, a.new)
        variants["fwd+bwd: LoRA top 4 layers"] = lambda: forward_backward(peft4, ids, a.G, a.new)

        def one_thread_fb() -> float:
            torch.set_num_threads(1)
            try:
                return forward_backward(peft8, ids, a.G, a.new)
            finally:
                torch.set_num_threads(threads)

        variants["fwd+bwd: 1 torch thread"] = one_thread_fb
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(a.rounds):
        for name, fn in variants.items():
            times[name].append(fn())
            print(f"round {r + 1} {name}: {times[name][-1]:.2f}s  load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nmedian of {a.rounds} interleaved rounds; load now {os.getloadavg()}")
    base: dict[str, float] = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        group = name.split(":")[0]
        base.setdefault(group, med)
        print(f"{name:45s} {med:8.2f}s  x{med / base[group]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
