"""Curriculum filtering: train on problems the starting model solves sometimes, not always or never.

GRPO learns only from groups whose completions score differently. When the
model gets a problem right in all G samples, or wrong in all of them, the group
has zero reward spread and zero advantage: compute spent, no gradient (the
two-stage 7B write-up measured frac_reward_zero_std = 0.63 after its SFT
stage). The difficulty pre-pass samples K completions per training problem
with the starting model (after SFT, when there is an SFT stage), records each
problem's pass rate, and keeps the problems in a band (by default 0 < rate < 1).

Pass rates are cached in RUN_DIR/curriculum/pass_rates.jsonl (one problem a
line, appended as they are scored), so a resumed or switched run does not
score again; `[curriculum] pass_rates_file` reuses another run's cache.

Dynamic sampling, the per-step counterpart, lives in engine/train/dynamic_sampling.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import Config
from grpo_tui.engine.rewards import extract_answer, is_correct
from grpo_tui.rundir.layout import RunDir

CHUNK = 32  # problems per generation round: progress, and the cache grows as it goes


def completion_correct(text: str, gold: str | None, prompt_format: str) -> bool:
    """Raw correctness, as rollouts.jsonl records it: the answer extracted in the run's format matches the gold."""
    return bool(is_correct(extract_answer(text, prompt_format), gold))


def in_band(rate: float, lo: float, hi: float, exclusive: bool) -> bool:
    eps = 1e-9
    return (lo + eps < rate < hi - eps) if exclusive else (lo - eps <= rate <= hi + eps)


def cache_path(run_root: Path) -> Path:
    return RunDir(Path(run_root)).pass_rates


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """question -> record; later lines win; a half-written last line is skipped."""
    out: dict[str, dict[str, Any]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "question" in rec and "pass_rate" in rec:
                    out[rec["question"]] = rec
    except FileNotFoundError:
        pass
    return out


def histogram(rates: list[float], k: int) -> dict[str, int]:
    """Pass rate -> number of problems, keys as 'c/k' (0/8 ... 8/8)."""
    counts = Counter(round(r * k) for r in rates)
    return {f"{c}/{k}": counts.get(c, 0) for c in range(k + 1)}


def score_pass_rates(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, str]],
    cfg: Config,
    device: str,
    cache: Path,
    known: dict[str, dict[str, Any]],
    log: Any = print,
) -> dict[str, dict[str, Any]]:
    """Sample K completions for every row not in `known`; append each record to `cache`; return all records."""
    from grpo_tui.engine.data.prompts import chat_template_kwargs
    from grpo_tui.engine.eval.generation import default_batch_size, generate, render_prompts

    c, t = cfg.curriculum, cfg.train
    k = c.prepass_samples
    todo = [r for r in rows if r["question"] not in known or known[r["question"]].get("samples") != k]
    out = dict(known)
    if not todo:
        return out
    cache.parent.mkdir(parents=True, exist_ok=True)
    batch = c.prepass_batch_size or default_batch_size(device)
    was_training = model.training
    model.eval()
    t0 = time.time()
    try:
        with open(cache, "a", encoding="utf-8") as f:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                prompts = render_prompts(
                    tokenizer, [r["question"] for r in chunk], cfg.prompt, chat_template_kwargs(cfg)
                )
                comps = generate(
                    model,
                    tokenizer,
                    prompts,
                    max_new_tokens=t.max_completion_length,
                    batch_size=batch,
                    num_samples=k,
                    do_sample=True,
                    temperature=t.temperature,
                    top_p=t.top_p,
                    top_k=t.top_k,
                    seed=t.seed + start,
                )
                for r, cs in zip(chunk, comps):
                    correct = sum(completion_correct(x.text, r["answer"], cfg.prompt.format) for x in cs)
                    rec = {
                        "question": r["question"],
                        "answer": r["answer"],
                        "samples": k,
                        "correct": correct,
                        "pass_rate": correct / k,
                    }
                    out[r["question"]] = rec
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                done = min(start + CHUNK, len(todo))
                el = time.time() - t0
                log(
                    f"curriculum pre-pass: {done}/{len(todo)} problems scored ({el:.0f}s, "
                    f"~{el / done * (len(todo) - done):.0f}s left)"
                )
    finally:
        if was_training:
            model.train()
    return out


def prepass_filter(
    cfg: Config, run_root: Path, loaded: Any, rows: list[dict[str, str]], events: Any, device: str
) -> list[dict[str, str]]:
    """Score (or read cached) pass rates, keep the rows in the band, emit a `curriculum` event, return the kept rows."""
    from grpo_tui.engine.config import PresetError

    c = cfg.curriculum
    t0 = time.time()
    pool = rows[: c.prepass_max_problems] if c.prepass_max_problems else rows
    path = cache_path(run_root)
    known = read_cache(path)
    reused_from = None
    if c.pass_rates_file:
        other = read_cache(Path(c.pass_rates_file).expanduser())
        reused_from = c.pass_rates_file
        known = {**other, **known}
    cached = sum(1 for r in pool if r["question"] in known and known[r["question"]].get("samples") == c.prepass_samples)
    events.emit(
        "stage",
        stage="curriculum",
        status="started",
        problems=len(pool),
        cached=cached,
        samples_per_problem=c.prepass_samples,
    )
    print(f"curriculum pre-pass: {len(pool)} problems x {c.prepass_samples} samples ({cached} cached)", flush=True)
    records = score_pass_rates(
        loaded.model, loaded.tokenizer, pool, cfg, device, path, known, log=lambda m: print(m, flush=True)
    )
    if reused_from:
        # copy what was reused into this run's own cache, so the run directory is self-contained
        mine = read_cache(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for r in pool:
                rec = records.get(r["question"])
                if rec and r["question"] not in mine:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    rates = [records[r["question"]]["pass_rate"] for r in pool]
    kept = [r for r, rate in zip(pool, rates) if in_band(rate, c.min_pass_rate, c.max_pass_rate, c.exclusive)]
    band = f"{'(' if c.exclusive else '['}{c.min_pass_rate}, {c.max_pass_rate}{')' if c.exclusive else ']'}"
    fields = {
        "samples_per_problem": c.prepass_samples,
        "problems": len(pool),
        "kept": len(kept),
        "kept_frac": len(kept) / len(pool) if pool else 0.0,
        "band": band,
        "min_pass_rate": c.min_pass_rate,
        "max_pass_rate": c.max_pass_rate,
        "exclusive": c.exclusive,
        "mean_pass_rate": sum(rates) / len(rates) if rates else None,
        "all_wrong": sum(1 for x in rates if x == 0),
        "all_right": sum(1 for x in rates if x == 1),
        "histogram": histogram(rates, c.prepass_samples),
        "cached": cached,
        "reused_from": reused_from,
        "path": str(path),
        "elapsed_s": round(time.time() - t0, 2),
    }
    events.emit("curriculum", **fields)
    events.emit("stage", stage="curriculum", status="finished", kept=len(kept), problems=len(pool))
    print(
        f"curriculum: kept {len(kept)} of {len(pool)} problems with pass rate in {band} "
        f"(all wrong {fields['all_wrong']}, all right {fields['all_right']}, mean pass rate "
        f"{fields['mean_pass_rate']:.2f}); histogram {fields['histogram']}",
        flush=True,
    )
    if not kept:
        raise PresetError(
            f"[curriculum] no problem has a pass rate in {band} ({len(pool)} scored, histogram "
            f"{fields['histogram']}); widen min_pass_rate/max_pass_rate, set exclusive = false, "
            "or score more problems (prepass_max_problems)."
        )
    return kept
