"""Evaluation: what the model can do, before, during and after training.

The computing half: datasets, model resolution, generation, scoring, statistics,
the results files, and the callback that evaluates during training. The
`grpo-tui eval` front end (arguments, progress bar, tables) is tui/console/eval.py.

Every item is answered greedily (pass@1); with --samples K also K sampled
answers (pass@1 as their mean, pass@K with the unbiased estimator, majority
vote). Each answer is scored twice: strictly, in the format the model was
trained to answer in (engine.rewards.extract_answer + is_correct: what the
rewards saw), and flexibly (the last number; for MATH the last \\boxed{}), the
way benchmark parsers read free text. A format change alone moves the strict
score a lot and the flexible one little; the gap between them is the format.

Output: DIR/<label>/results.jsonl (one item a line), DIR/<label>/summary.json
(accuracies with Wilson 95% intervals), and with two or more models
DIR/compare.json + compare.md (the before/after table, plus how many items
each model fixed or broke). docs/eval.md has the details.

During training, EvalCallback runs the greedy part on a fixed held-out subset
every [eval] every_steps steps and writes `eval` events.

Heavy imports (torch, transformers, peft, datasets) happen inside functions so
that `grpo-tui eval --help` is instant; this module never imports textual.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from grpo_tui.engine.config import Config, ModelConfig, PresetError, PromptConfig
from grpo_tui.engine.data.loader import GSM8K_HUB, MATH500_HUB, DataReport, FieldMap, check_template, hub_records, map_record, read_file
from grpo_tui.rundir.errors import GrpoTuiError
from grpo_tui.engine.rewards import extract_answer, is_correct, last_boxed, last_number, parse_number
from grpo_tui.rundir.layout import RunDir, checkpoint_step, find_checkpoints


# The synthetic problems a model trains on come from random.Random(f"synthetic-{difficulty}-{seed}") with the
# preset's integer seed; a string seed gives a stream no training run can draw, and questions that happen to
# coincide with the training set are removed as well.
HELDOUT_SEED = "heldout"
# Where local copies of the named datasets are looked for before the hub: <dir>/gsm8k/<split>.jsonl,
# <dir>/math500/<split>.jsonl.
DATA_DIRS_ENV = "GRPO_TUI_DATA"


class EvalError(GrpoTuiError, RuntimeError):
    """A model or dataset that can't be evaluated; the message says what to do."""


# ----------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_ci(xs: list[float], z: float = 1.96) -> tuple[float, float]:
    """Normal-approximation interval of a mean of per-item scores in [0, 1] (clipped)."""
    n = len(xs)
    if n == 0:
        return 0.0, 1.0
    m = sum(xs) / n
    if n < 2:
        return max(0.0, m), min(1.0, m)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = z * sd / math.sqrt(n)
    return max(0.0, m - half), min(1.0, m + half)


# ------------------------------------------------------------------------------ scoring


def flexible_answer(text: str, math_style: bool) -> str | None:
    """What a lenient benchmark parser takes as the answer: the last number; MATH-style: last \\boxed{} first."""
    if math_style:
        boxed = last_boxed(text or "")
        if boxed is not None:
            return boxed
    return last_number(text or "")


def vote_key(answer: str | None) -> str | None:
    """Answers that mean the same number vote together ("18", "18.00", "$18")."""
    if answer is None:
        return None
    num = parse_number(answer)
    if num is not None:
        return f"#{num}"
    key = re.sub(r"\s+", "", answer)
    return key or None


def majority(answers: list[str | None]) -> str | None:
    """The most common answer (ties: the one given first); None if no sample gave one."""
    keys = [vote_key(a) for a in answers]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    best = max(counts.values())
    for a, k in zip(answers, keys):
        if k is not None and counts[k] == best:
            return a
    return None


@dataclass
class Completion:
    text: str
    tokens: int
    truncated: bool


def score_completion(c: Completion, gold: str, fmt: str, math_style: bool) -> dict[str, Any]:
    strict = extract_answer(c.text, fmt)
    flex = flexible_answer(c.text, math_style)
    return {"completion": c.text, "extracted": strict, "correct": bool(is_correct(strict, gold)),
            "extracted_flex": flex, "correct_flex": bool(is_correct(flex, gold)),
            "tokens": c.tokens, "truncated": c.truncated}


# ----------------------------------------------------------------------------- datasets


@dataclass
class EvalItem:
    id: str
    question: str
    gold: str


@dataclass
class EvalData:
    name: str          # as given on the command line
    origin: str        # file path or hub id
    items: list[EvalItem]
    math_style: bool   # answers are LaTeX (\\boxed{}) rather than plain numbers
    skipped: int = 0
    unparsed: int = 0  # golds that are neither a number nor LaTeX: only an exact string match scores them

    def gold_warning(self) -> str | None:
        """A loud line when most golds can't be compared as numbers or math (a wrong field or gold format)."""
        if not self.items or self.unparsed * 2 <= len(self.items):
            return None
        example = next((i.gold for i in self.items if parse_number(i.gold) is None and "\\" not in i.gold), "")
        return (f"WARNING: {self.unparsed} of {len(self.items)} gold answers are not a number or a LaTeX expression "
                f"(e.g. {example[:60]!r}); answers to them score only on an exact text match. Check --answer-field "
                "and --gold-format (gsm8k, boxed, plain, number).")


def _data_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if p]
    return dirs + [Path("data"), Path("..") / "shared" / "data"]


def _local_copy(name: str, split: str) -> Path | None:
    for d in _data_dirs():
        for ext in ("jsonl", "parquet"):
            p = d / name / f"{split}.{ext}"
            if p.is_file():
                return p
    return None


def items_from_records(records: Iterable[dict[str, Any]], prefix: str,
                       fields: FieldMap | None = None) -> tuple[list[EvalItem], int, bool]:
    """Items through the data loader's field mapping; by default the question from question/problem/prompt and the
    gold from answer (GSM8K '####', MATH plain) or the solution's last \\boxed{}."""
    fm = fields or FieldMap("auto", "auto")
    report = DataReport("eval", prefix)
    items, boxed = [], 0
    for i, rec in enumerate(records):
        row = map_record(rec, fm, f"{prefix} row {i + 1}", report)
        if row is None:
            continue
        gold = row["answer"]
        if "\\" in gold or parse_number(gold) is None:
            boxed += 1
        items.append(EvalItem(str(rec.get("unique_id") or rec.get("id") or f"{prefix}-{i}"), row["question"], gold))
    # MATH-style when answers are mostly not plain numbers (MATH-500: ~60% LaTeX)
    return items, sum(report.skipped.values()), bool(items) and boxed / len(items) > 0.2


def _unparsed(items: list[EvalItem]) -> int:
    return sum(1 for i in items if parse_number(i.gold) is None and "\\" not in i.gold)


def heldout_synthetic(n: int, difficulty: int, train_seed: int | None = None, train_size: int = 0) -> list[EvalItem]:
    """n built-in problems from a seed no training run uses, minus any question in the given training set."""
    from grpo_tui.engine.data.synthetic import generate
    train = {p["question"] for p in generate(train_size, difficulty, train_seed)} if train_seed is not None and train_size else set()
    out: list[EvalItem] = []
    want = n
    while len(out) < n:
        problems = generate(want + len(train) // 10 + 16, difficulty, HELDOUT_SEED)  # type: ignore[arg-type]
        out = [EvalItem(f"synthetic-{difficulty}-{i}", p["question"], p["answer"])
               for i, p in enumerate(problems) if p["question"] not in train][:n]
        want *= 2
    return out


def load_eval_data(dataset: str, split: str = "test", limit: int = 0, cfg: Config | None = None,
                   difficulty: int | None = None, shuffle_seed: int | None = None,
                   fields: FieldMap | None = None, dataset_config: str | None = None) -> EvalData:
    """The items to evaluate on. Named datasets use a local copy when there is one (see _data_dirs), else the hub;
    an 'owner/name' that is not a local path is a hub dataset. `fields` maps questions and golds (default: auto)."""
    if dataset == "synthetic":
        d = difficulty or (cfg.data.synthetic_difficulty if cfg else 1)
        train_seed = cfg.train.seed if cfg and cfg.data.source == "synthetic" else None
        train_size = cfg.data.synthetic_size if cfg and cfg.data.source == "synthetic" else 0
        items = heldout_synthetic(limit or 500, d, train_seed, train_size)
        return EvalData("synthetic", f"built-in, difficulty {d}, held-out seed", items, False)
    if fields is not None:
        try:
            check_template(fields.question_template, "--question-template:")
        except PresetError as e:
            raise EvalError(str(e)) from None
    path = Path(dataset).expanduser()
    hub_id = {"gsm8k": GSM8K_HUB, "math500": MATH500_HUB}.get(dataset)
    if hub_id is None and "/" in dataset and not path.exists() and path.suffix not in (".jsonl", ".json", ".parquet", ".csv"):
        hub_id = (dataset, dataset_config)
    if hub_id is not None and not path.exists():
        local = _local_copy(dataset, split) if dataset in ("gsm8k", "math500") else None
        if local is not None:
            path = local
        else:
            try:
                ds = hub_records(hub_id[0], hub_id[1], split, where="--dataset")
            except PresetError as e:
                raise EvalError(f"{e} (local copies of gsm8k/math500 are looked for in "
                                f"{', '.join(map(str, _data_dirs()))}; set {DATA_DIRS_ENV})") from None
            origin = f"hub {hub_id[0]}" + (f" ({hub_id[1]})" if hub_id[1] else "") + f", split {split}"
            items, skipped, math_style = items_from_records(ds, dataset.replace("/", "_"), fields)
            return _finish(EvalData(dataset, origin, items, math_style or dataset == "math500", skipped,
                                    _unparsed(items)), limit, shuffle_seed)
    if not path.is_file():
        raise EvalError(f"--dataset {dataset}: not 'gsm8k', 'math500', 'synthetic', a hub id (owner/name) or an "
                        "existing .jsonl/.json/.parquet/.csv file.")
    report = DataReport("eval", str(path))
    try:
        items, skipped, math_style = items_from_records(read_file(path, report), path.stem, fields)
    except PresetError as e:
        raise EvalError(str(e)) from None
    skipped += sum(report.skipped.values())
    if not items:
        raise EvalError(f"--dataset {path}: no usable rows ({skipped} without a question or a gold answer); "
                        "rows need question/problem and answer (or a solution with \\boxed{}), or name the fields "
                        "with --question-field/--question-template and --answer-field.")
    named = dataset if dataset in ("gsm8k", "math500") else str(path)
    return _finish(EvalData(named, str(path), items, math_style or "math" in path.parent.name.lower(), skipped,
                            _unparsed(items)), limit, shuffle_seed)


def _finish(data: EvalData, limit: int, shuffle_seed: int | None) -> EvalData:
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(data.items)
    if limit:
        data.items = data.items[:limit]
    return data


# ------------------------------------------------------------------------------- models


@dataclass
class ModelSpec:
    """What --model names, resolved: weights to load, an optional LoRA adapter, the prompt to ask with."""
    label: str
    path: str                      # full weights (dir or hub id)
    adapter: str | None = None     # peft adapter dir on top of `path`
    tokenizer: str | None = None   # where the tokenizer lives (default: adapter dir if it has one, else path)
    prompt: PromptConfig | None = None
    config: Config | None = None   # the run's or preset's config, if any
    run_dir: str | None = None
    step: int | None = None        # checkpoint step (None: not a checkpoint)
    stage: str = "model"           # model | base | sft | grpo


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


def _checkpoints(root: Path) -> dict[int, Path]:
    """Complete checkpoints by step (the one definition of complete is rundir.layout.checkpoint_problem)."""
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
        ckpts = _checkpoints(root)
        if not ckpts:
            raise EvalError(f"{root}: the run has no checkpoint yet; use {root}@base or {root}@sft, "
                            "or wait for a checkpoint.")
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
            return ModelSpec(label, base, adapter=str(ck), prompt=prompt, config=cfg, run_dir=str(root),
                             step=step, stage="grpo")
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


# --------------------------------------------------------------------------- generation


def render_prompts(tokenizer: Any, questions: list[str], prompt: PromptConfig) -> list[str]:
    """Chat-templated prompt text, exactly as the trainer builds it (system prompt, optional one-shot turn)."""
    from grpo_tui.engine.data.prompts import build_messages, system_prompt
    system = system_prompt(prompt.format, prompt.system_prompt)
    shot = prompt.format if prompt.one_shot else None
    return [tokenizer.apply_chat_template(build_messages(q, system, shot), tokenize=False, add_generation_prompt=True)
            for q in questions]


def default_batch_size(device: str) -> int:
    return 64 if device.startswith("cuda") else 8


def generate(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int, batch_size: int,
             num_samples: int = 1, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             top_k: int = 0, seed: int = 0, on_batch: Callable[[int], None] | None = None,
             stop_strings: list[str] | None = None, fast_cpu_decode: bool = True) -> list[list[Completion]]:
    """num_samples completions per prompt, batched with left padding (longest prompts first, so a batch that
    doesn't fit memory fails at once). batch_size counts sequences. Returns them in prompt order.
    stop_strings: each completion ends at the first of them, as in training with [train] stop_strings.
    fast_cpu_decode: on the CPU, decode as [train] fast_cpu_decode does in training (engine/fast_decode.py)."""
    import torch
    from transformers import GenerationConfig
    from grpo_tui.engine.fast_decode import fast_cpu_generate
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        eos_ids.add(gen_eos)
    elif gen_eos:
        eos_ids.update(gen_eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad,
                           eos_token_id=sorted(eos_ids), use_cache=True, num_return_sequences=num_samples,
                           stop_strings=stop_strings or None,
                           **({"temperature": temperature, "top_p": top_p, "top_k": top_k or None} if do_sample else {}))
    per_batch = max(1, batch_size // max(1, num_samples))
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    out: list[list[Completion]] = [[] for _ in prompts]
    tokenizer.padding_side = "left"
    if do_sample:
        torch.manual_seed(seed)
    for b in range(0, len(order), per_batch):
        idx = order[b:b + per_batch]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        kwargs = dict(enc, generation_config=gen, **({"tokenizer": tokenizer} if stop_strings else {}))
        with torch.no_grad():
            seqs = fast_cpu_generate(model.generate, model, **kwargs) if fast_cpu_decode and device.type == "cpu" \
                else model.generate(**kwargs)
        new = seqs[:, enc["input_ids"].shape[1]:].cpu()
        if stop_strings:
            from grpo_tui.engine.stopping import end_stopped_rows
            new = end_stopped_rows(new, pad, sorted(eos_ids), gen.max_new_tokens)
        for r, row in enumerate(new.tolist()):
            n_tok = next((j + 1 for j, t in enumerate(row) if t in eos_ids), None)
            truncated = n_tok is None
            ids = row if truncated else row[:n_tok]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            out[idx[r // num_samples]].append(Completion(text, len(ids), truncated))
        if on_batch:
            on_batch(len(idx))
    return out


# ------------------------------------------------------------------------------- report


def score_items(items: list[EvalItem], greedy: list[Completion] | None, samples: list[list[Completion]] | None,
                fmt: str, math_style: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-item rows and the aggregate numbers (no metadata)."""
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        row: dict[str, Any] = {"id": item.id, "question": item.question, "gold": item.gold}
        if greedy is not None:
            row.update(score_completion(greedy[i], item.gold, fmt, math_style))
        if samples is not None:
            scored = [score_completion(c, item.gold, fmt, math_style) for c in samples[i]]
            maj = majority([s["extracted"] for s in scored])
            maj_flex = majority([s["extracted_flex"] for s in scored])
            row["samples"] = scored
            row["n_correct"] = sum(s["correct"] for s in scored)
            row["n_correct_flex"] = sum(s["correct_flex"] for s in scored)
            row["majority"], row["majority_correct"] = maj, bool(is_correct(maj, item.gold))
            row["majority_flex"], row["majority_flex_correct"] = maj_flex, bool(is_correct(maj_flex, item.gold))
        rows.append(row)
    return rows, aggregate(rows, greedy is not None, len(samples[0]) if samples else 0)


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"correct": k, "n": n, "accuracy": k / n if n else 0.0, "ci95": [lo, hi]}


def aggregate(rows: list[dict[str, Any]], has_greedy: bool, k: int) -> dict[str, Any]:
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    if has_greedy and n:
        out["greedy"] = {
            "strict": _rate(sum(r["correct"] for r in rows), n),
            "flexible": _rate(sum(r["correct_flex"] for r in rows), n),
            "format_rate": sum(r["extracted"] is not None for r in rows) / n,
            "mean_tokens": sum(r["tokens"] for r in rows) / n,
            "truncated_frac": sum(r["truncated"] for r in rows) / n,
        }
    if k and n:
        sampled: dict[str, Any] = {"k": k}
        for mode, col, maj in (("strict", "n_correct", "majority_correct"), ("flexible", "n_correct_flex", "majority_flex_correct")):
            p1 = [r[col] / k for r in rows]
            pk = [pass_at_k(k, r[col], k) for r in rows]
            sampled[mode] = {
                "pass@1": sum(p1) / n, "pass@1_ci95": list(mean_ci(p1)),
                f"pass@{k}": sum(pk) / n, f"pass@{k}_ci95": list(wilson(sum(1 for x in pk if x > 0), n)),
                f"maj@{k}": _rate(sum(r[maj] for r in rows), n),
            }
        sampled["frac_all_same"] = sum(r["n_correct"] in (0, k) for r in rows) / n  # groups GRPO can't learn from
        out["sampled"] = sampled
    return out


def write_results(out_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


COMPARE_METRICS: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
    ("greedy pass@1 strict", lambda s: s.get("greedy", {}).get("strict", {}).get("accuracy")),
    ("greedy pass@1 flexible", lambda s: s.get("greedy", {}).get("flexible", {}).get("accuracy")),
    ("format rate", lambda s: s.get("greedy", {}).get("format_rate")),
    ("truncated", lambda s: s.get("greedy", {}).get("truncated_frac")),
]


def compare(summaries: list[dict[str, Any]], rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Before/after table: each metric per model, the change from the first, and per-item fixed/broken counts."""
    metrics = list(COMPARE_METRICS)
    k = (summaries[0].get("sampled") or {}).get("k")
    if k and all((s.get("sampled") or {}).get("k") == k for s in summaries):
        metrics += [(f"pass@{k} strict", lambda s, k=k: s["sampled"]["strict"][f"pass@{k}"]),
                    (f"maj@{k} strict", lambda s, k=k: s["sampled"]["strict"][f"maj@{k}"]["accuracy"])]
    table = []
    for name, get in metrics:
        vals = [get(s) for s in summaries]
        base = vals[0]
        table.append({"metric": name, "values": vals,
                      "delta": [None if v is None or base is None else v - base for v in vals]})
    paired = []
    first = {r["id"]: r for r in rows[0]}
    for s, rs in zip(summaries[1:], rows[1:]):
        both = [(first[r["id"]], r) for r in rs if r["id"] in first and "correct" in r]
        for mode, col in (("strict", "correct"), ("flexible", "correct_flex")):
            paired.append({"model": s["model"], "mode": mode, "items": len(both),
                           "fixed": sum(1 for a, b in both if b[col] and not a[col]),
                           "broken": sum(1 for a, b in both if a[col] and not b[col])})
    return {"models": [s["model"] for s in summaries], "dataset": summaries[0].get("dataset"),
            "n": summaries[0].get("n"), "table": table, "paired": paired}


def compare_markdown(cmp: dict[str, Any]) -> str:
    heads = cmp["models"]
    lines = [f"| metric | {' | '.join(heads)} | " + " | ".join(f"Δ {h}" for h in heads[1:]) + " |",
             "|---" * (1 + len(heads) + len(heads) - 1) + "|"]
    for row in cmp["table"]:
        vals = " | ".join(_pct(v) for v in row["values"])
        deltas = " | ".join("-" if d is None else f"{100 * d:+.1f}" for d in row["delta"][1:])
        lines.append(f"| {row['metric']} (%) | {vals} | {deltas} |")
    for p in cmp["paired"]:
        lines.append(f"\n{p['model']} vs {heads[0]} ({p['mode']}): fixed {p['fixed']}, broke {p['broken']} "
                     f"of {p['items']} items")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------- evaluation


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


def evaluate_loaded(model: Any, tokenizer: Any, data: EvalData, prompt: PromptConfig, *, max_new_tokens: int,
                    batch_size: int, samples: int = 0, greedy: bool = True, temperature: float = 1.0,
                    top_p: float = 1.0, seed: int = 0, progress: Callable[[int], None] | None = None,
                    stop_strings: list[str] | None = None, fast_cpu_decode: bool = True,
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate and score; returns (rows, numbers). Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        prompts = render_prompts(tokenizer, [it.question for it in data.items], prompt)
        t0 = time.time()
        g = [cs[0] for cs in generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, on_batch=progress, stop_strings=stop_strings,
                                      fast_cpu_decode=fast_cpu_decode)] \
            if greedy else None
        t_greedy = time.time() - t0
        s = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     num_samples=samples, do_sample=True, temperature=temperature, top_p=top_p, seed=seed,
                     on_batch=progress, stop_strings=stop_strings, fast_cpu_decode=fast_cpu_decode) if samples else None
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


def evaluate_spec(spec: ModelSpec, req: EvalRequest, device: str, progress: Callable[[int], None] | None = None,
                  log: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load one model and evaluate it: (rows, summary). progress(k) is called as answers are generated."""
    prompt = req.prompt_override or spec.prompt or PromptConfig()
    t0 = time.time()
    log(f"{spec.label}: loading {spec.path}" + (f" + adapter {spec.adapter}" if spec.adapter else ""))
    model, tok = load_for_eval(spec, device, req.dtype)
    load_s = time.time() - t0
    batch = req.batch_size or default_batch_size(device)
    stops = spec.config.train.stop_strings if spec.config else []  # a run's model is asked as it was trained
    rows, numbers = evaluate_loaded(model, tok, req.dataset, prompt, max_new_tokens=req.max_new_tokens,
                                    batch_size=batch, samples=req.samples, greedy=req.greedy,
                                    temperature=req.temperature, top_p=req.top_p, seed=req.seed, progress=progress,
                                    stop_strings=stops,
                                    fast_cpu_decode=spec.config.train.fast_cpu_decode if spec.config else True)
    summary = {
        "model": spec.label, "model_path": spec.path, "adapter": spec.adapter, "run_dir": spec.run_dir,
        "step": spec.step, "stage": spec.stage, "dataset": req.dataset.name, "dataset_origin": req.dataset.origin,
        "math_style": req.dataset.math_style, "prompt": asdict(prompt), "max_new_tokens": req.max_new_tokens,
        "stop_strings": list(stops), "samples": req.samples, "temperature": req.temperature if req.samples else None,
        "top_p": req.top_p if req.samples else None, "seed": req.seed, "batch_size": batch, "device": device,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "load_s": round(load_s, 2),
        **numbers,
    }
    del model
    return rows, summary


def gsm8k_docs(dataset: str, split: str, what: str) -> tuple[list[dict[str, Any]], str]:
    """Raw GSM8K-format records (question, answer with '####') of a named split or a file, for lm-eval's protocol."""
    path = Path(dataset).expanduser()
    if dataset == "gsm8k" and not path.exists():
        local = _local_copy("gsm8k", split)
        if local is None:
            try:
                return [dict(r) for r in hub_records(*GSM8K_HUB, split=split, where=what)], f"hub {GSM8K_HUB[0]} {split}"
            except PresetError as e:
                raise EvalError(f"{e} (or set {DATA_DIRS_ENV} to a folder with gsm8k/{split}.jsonl)") from None
        path = local
    if not path.is_file():
        raise EvalError(f"{what} {dataset}: not 'gsm8k' or an existing GSM8K-format file.")
    try:
        docs = [r for r in read_file(path) if isinstance(r.get("question"), str) and "####" in str(r.get("answer", ""))]
    except PresetError as e:
        raise EvalError(str(e)) from None
    if not docs:
        raise EvalError(f"{what} {path}: no GSM8K-format rows (question, answer ending in '#### N').")
    return docs, str(path)


# ------------------------------------------------------------------ during training


class TrainingEvaluator:
    """The fixed held-out subset and settings of a run's [eval] section; scores the live model."""

    def __init__(self, cfg: Config, run_root: Path, device: str) -> None:
        e = cfg.eval
        self.cfg = cfg
        self.data = load_eval_data(e.dataset, e.split, e.limit, cfg, shuffle_seed=None if e.dataset == "synthetic" else 1234)
        self.max_new_tokens = e.max_new_tokens or cfg.train.max_completion_length
        self.batch_size = e.batch_size or default_batch_size(device)
        self.run_dir = RunDir(Path(run_root))

    def run(self, model: Any, tokenizer: Any, step: int) -> dict[str, Any]:
        """Greedy pass on the subset; writes eval/step-N.jsonl; returns the `eval` event's fields."""
        old_side = tokenizer.padding_side
        t0 = time.time()
        try:
            rows, numbers = evaluate_loaded(model, tokenizer, self.data, self.cfg.prompt,
                                            max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                            stop_strings=self.cfg.train.stop_strings,
                                            fast_cpu_decode=self.cfg.train.fast_cpu_decode)
        finally:
            tokenizer.padding_side = old_side
        path = self.run_dir.eval_results(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        g = numbers["greedy"]
        return {"step": step, "dataset": self.data.name, "n": numbers["n"],
                "accuracy": g["strict"]["accuracy"], "correct": g["strict"]["correct"],
                "ci_low": g["strict"]["ci95"][0], "ci_high": g["strict"]["ci95"][1],
                "accuracy_flex": g["flexible"]["accuracy"], "correct_flex": g["flexible"]["correct"],
                "format_rate": g["format_rate"], "mean_tokens": round(g["mean_tokens"], 2),
                "truncated_frac": g["truncated_frac"], "max_new_tokens": self.max_new_tokens,
                "eval_s": round(time.time() - t0, 2), "path": str(path)}


def make_eval_callback(cfg: Config, run_root: Path, device: str, events: Any, engine_callback: Any = None) -> Any:
    """A TrainerCallback that writes `eval` events: before the first step, every N steps, after the last."""
    from transformers import TrainerCallback

    evaluator = TrainingEvaluator(cfg, run_root, device)
    every = cfg.eval.every_steps

    class EvalCallback(TrainerCallback):
        def __init__(self) -> None:
            self.done: set[int] = set()  # steps already evaluated (on_log and on_train_begin may both fire)

        def _eval(self, state: Any, model: Any, tokenizer: Any) -> None:
            step = state.global_step
            if step in self.done or model is None or tokenizer is None:
                return
            self.done.add(step)
            if hasattr(model, "module"):
                model = model.module
            fields = evaluator.run(model, tokenizer, step)
            events.emit("eval", **fields)
            print(f"eval step {step}: {fields['correct']}/{fields['n']} = {100 * fields['accuracy']:.1f}% "
                  f"[{100 * fields['ci_low']:.1f}, {100 * fields['ci_high']:.1f}] "
                  f"(flexible {100 * fields['accuracy_flex']:.1f}%) in {fields['eval_s']:.1f}s", flush=True)
            if engine_callback is not None and hasattr(engine_callback, "exclude"):
                engine_callback.exclude(fields["eval_s"])  # eval time is not step time

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step == 0:
                self._eval(state, model, processing_class)

        def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kw):
            if not logs or "train_runtime" in logs:
                return
            last = state.global_step >= state.max_steps or control.should_training_stop
            if state.global_step % every == 0 or last:
                self._eval(state, model, processing_class)

    return EvalCallback()

