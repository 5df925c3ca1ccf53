"""One generation path, measured in a fresh process: tokens/s, % of the bandwidth bound, peak memory, and whether it
samples from the distribution the trainer scores.

    echo '{"model": "DIR", "prompts": ["..."], "new_tokens": 64, "path": "today", "device": "cuda"}' \\
        | python bench/generation_paths.py

Paths (PATHS): `today` is transformers `generate` with its dynamic cache, as the engine runs it; `paged` is
continuous batching with paged attention (`generate_batch`, TRL's `use_transformers_continuous_batching`);
`static` is a static cache; `static-compile` a static cache with `torch.compile` (CUDA graphs).

Agreement: for every sampled token, the path's own log-probability against a full teacher-forced forward pass,
the way TRL scores completions for the loss. A path that samples from the policy's distribution agrees to
within rounding; the `today` row gives that rounding for the model and dtype. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATHS = ("today", "paged", "static", "static-compile")
AGREEMENT_ROWS, AGREEMENT_TOKENS = 8, 128  # the log-prob check's batch: every step's logits are kept for it


def _peak_gb(device: str) -> float:
    import psutil
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return psutil.Process().memory_info().rss / 2**30


def _generate(
    model: Any,
    tok: Any,
    prompts: list[list[int]],
    n: int,
    path: str,
    device: str,
    compile_ok: bool,
    logprobs: bool = False,
) -> tuple[list[list[int]], list[list[float]] | None]:
    """Completion ids and, when asked, the path's log-probability of each sampled token (None if it gives none)."""
    import torch
    from transformers import GenerationConfig

    common = dict(
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        pad_token_id=tok.pad_token_id,
    )
    if path == "paged":
        from transformers import ContinuousBatchingConfig

        outs = model.generate_batch(
            prompts,
            generation_config=GenerationConfig(**common),
            continuous_batching_config=ContinuousBatchingConfig(return_logprobs=logprobs),
            progress_bar=False,
        )
        ordered = [outs[k] for k in sorted(outs, key=lambda k: int("".join(c for c in k if c.isdigit()) or 0))]
        lps = [list(o.logprobs) for o in ordered]
        return [list(o.generated_tokens) for o in ordered], lps if logprobs and all(lps) else None
    extra: dict[str, Any] = {}
    if path in ("static", "static-compile"):
        extra["cache_implementation"] = "static"
    # TRL pins disable_compile=True; the compiled path is what generate does when that is lifted
    extra["disable_compile"] = not (path == "static-compile" and compile_ok)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    config = GenerationConfig(**common, **extra, return_dict_in_generate=True, output_logits=logprobs)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    completion = out.sequences[:, width:]
    if not logprobs:
        return completion.tolist(), None
    logits = torch.stack(out.logits, dim=1).float()  # raw: temperature 1, no filtering
    lps = torch.log_softmax(logits, -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    return completion.tolist(), lps.tolist()


def _teacher_forced(
    model: Any, tok: Any, prompts: list[list[int]], completions: list[list[int]], device: str
) -> list[list[float]]:
    """Each completion token's log-probability from one forward pass over prompt + completion (TRL's scoring)."""
    import torch

    out = []
    with torch.no_grad():
        for p, c in zip(prompts, completions):
            ids = torch.tensor([p + c], device=device)
            logits = model(input_ids=ids).logits[0, len(p) - 1 : -1].float()
            out.append(torch.log_softmax(logits, -1).gather(-1, torch.tensor(c, device=device)[:, None])[:, 0].tolist())
    return out


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_tui.engine.train.generation_bound import GenerationBound, GenerationCall, decode_cost, device_bandwidth

    device, path, n = spec["device"], spec["path"], int(spec["new_tokens"])
    if path not in PATHS:
        raise SystemExit(f"unknown path {path!r}; one of {', '.join(PATHS)}")
    tok = AutoTokenizer.from_pretrained(spec["model"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=dtype).to(device).eval()
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True)
        for q in spec["prompts"]
    ]
    prompts = [list(p["input_ids"] if isinstance(p, dict) or hasattr(p, "keys") else p) for p in prompts]
    compile_ok = device == "cuda"  # on the CPU (a dry run) the compiled path runs uncompiled: it tests the script
    with torch.no_grad():
        _generate(model, tok, prompts[:2], min(n, 4), path, device, compile_ok)  # warm-up (and compilation)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        completions, _ = _generate(model, tok, prompts, n, path, device, compile_ok)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    tokens = sum(len(c) for c in completions)
    # agreement on a few rows in a separate call: keeping every step's logits would distort time and memory
    rows = prompts[:AGREEMENT_ROWS]
    with torch.no_grad():
        completions_lp, path_lps = _generate(
            model, tok, rows, min(n, AGREEMENT_TOKENS), path, device, compile_ok, logprobs=True
        )
    mean_context = sum(len(p) for p in prompts) / len(prompts) + tokens / len(completions) / 2
    bound = GenerationBound(decode_cost(model), device_bandwidth(device)).tokens_per_s(
        [GenerationCall(tokens, len(completions), mean_context)]
    )
    result: dict[str, Any] = {
        "path": path,
        "tokens_per_s": tokens / seconds,
        "bound_tokens_per_s": bound,
        "peak_gb": _peak_gb(device),
        "rows": len(completions),
        "tokens": tokens,
        "logprob_max_abs_diff": None,
        "logprob_mean_abs_diff": None,
        "compiled": path == "static-compile" and compile_ok,
    }
    if path_lps is not None:
        forced = _teacher_forced(model, tok, rows, completions_lp, device)
        diffs = [abs(a - b) for xs, ys in zip(path_lps, forced) for a, b in zip(xs, ys)]
        if diffs:
            result["logprob_max_abs_diff"] = max(diffs)
            result["logprob_mean_abs_diff"] = sum(diffs) / len(diffs)
    return result


if __name__ == "__main__":
    print(json.dumps(run(json.load(sys.stdin))))
