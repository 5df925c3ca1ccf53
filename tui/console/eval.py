"""`grpo-tui eval`: evaluate models from the command line (rich output, no Textual).

    grpo-tui eval --model ID|PATH|RUN_DIR[@STEP] --dataset gsm8k|math500|synthetic|FILE.jsonl
                  [--split test] [--limit N] [--samples K] [--preset P] [--out DIR]
                  [--compare BASE] [--model OTHER ...]

Arguments, the progress bar and the summary tables. What is measured, and the
files written, are engine/eval/evaluate.py; docs/eval.md has the details.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import PromptConfig, load_config
from grpo_tui.engine.data.loader import FieldMap
from grpo_tui.engine.eval.data import gsm8k_docs, load_eval_data
from grpo_tui.engine.eval.errors import EvalError
from grpo_tui.engine.eval.evaluate import EvalRequest, evaluate_spec
from grpo_tui.engine.eval.generation import default_batch_size
from grpo_tui.engine.eval.report import compare, compare_markdown, percent, write_results
from grpo_tui.engine.eval.resolve import ModelSpec, load_for_eval, resolve_model
from grpo_tui.engine.rewards.answer_format import PROMPT_FORMATS
from grpo_tui.rundir.errors import EXIT_FAILED, EXIT_OK, GrpoTuiError
from grpo_tui.tui.console.arg_types import int_at_least
from grpo_tui.tui.text import safe_text, visible


def summary_lines(s: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value with interval) pairs for printing one model's summary."""
    rows = []
    g = s.get("greedy")
    if g:
        for mode in ("strict", "flexible"):
            r = g[mode]
            rows.append(
                (
                    f"greedy pass@1 ({mode})",
                    f"{percent(r['accuracy'])}%  [{percent(r['ci95'][0])}, {percent(r['ci95'][1])}]  "
                    f"{r['correct']}/{r['n']}",
                )
            )
        rows.append(("answers in the trained format", f"{percent(g['format_rate'])}%"))
        rows.append(("mean tokens / truncated", f"{g['mean_tokens']:.0f} / {percent(g['truncated_frac'])}%"))
    sm = s.get("sampled")
    if sm:
        k = sm["k"]
        for mode in ("strict", "flexible"):
            r = sm[mode]
            rows.append(
                (
                    f"sampled pass@1 ({mode})",
                    f"{percent(r['pass@1'])}%  [{percent(r['pass@1_ci95'][0])}, {percent(r['pass@1_ci95'][1])}]",
                )
            )
            rows.append((f"pass@{k} ({mode})", f"{percent(r[f'pass@{k}'])}%"))
            mj = r[f"maj@{k}"]
            rows.append(
                (
                    f"maj@{k} ({mode})",
                    f"{percent(mj['accuracy'])}%  [{percent(mj['ci95'][0])}, {percent(mj['ci95'][1])}]",
                )
            )
        rows.append((f"items with all {k} samples alike", f"{percent(sm['frac_all_same'])}%"))
    return rows


def _quiet_hub_bars() -> None:
    """transformers draws a "Loading weights" bar per load; under our own bar they stack and hide it."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def run_one(
    spec: ModelSpec, req: EvalRequest, device: str, console: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """evaluate_spec with a progress bar on a terminal, one line per batch in a log file."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    n = len(req.dataset.items)
    total = (n if req.greedy else 0) + (n if req.samples else 0)
    log = lambda m: console.print(visible(m), markup=False)  # noqa: E731 - labels and paths are not markup
    _quiet_hub_bars()
    if console.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as bar:
            label = escape(visible(f"{spec.label} on {req.dataset.name}"))
            # the bar says what the wait at 0 is: loading the weights, before the first answer comes
            task = bar.add_task(label + " (loading weights)", total=total)

            def advance(k: int) -> None:
                bar.update(task, description=label, advance=k)

            return evaluate_spec(spec, req, device, progress=advance, log=log)
    # a log file: one line per batch instead of a bar redrawn in place
    done = [0]
    t_start = time.time()

    def line(k: int) -> None:
        done[0] += k
        el = time.time() - t_start
        console.print(
            visible(f"{spec.label}: {done[0]}/{total} ({el:.0f}s, ~{el / done[0] * (total - done[0]):.0f}s left)"),
            markup=False,
        )

    return evaluate_spec(spec, req, device, progress=line, log=log)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", s).strip("_") or "model"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-tui eval",
        description="Evaluate a model, checkpoint or run on GSM8K, MATH-500, held-out "
        "synthetic problems or a JSONL file: greedy pass@1 (strict and flexible), "
        "pass@K and majority vote with --samples K.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="ID|PATH|RUN_DIR[@STEP]",
        help="hub id, local model dir, smollm2-135m-instruct, tiny-random, or a run directory (latest "
        "checkpoint; @STEP, @sft, @base); repeat to compare (the first is the baseline)",
    )
    p.add_argument("--compare", metavar="BASE", help="baseline model to compare against (evaluated first)")
    p.add_argument("--dataset", required=True, help="gsm8k, math500, synthetic, or a .jsonl/.parquet file")
    p.add_argument("--split", default="test", help="split of gsm8k/math500/a hub dataset (default test)")
    p.add_argument("--dataset-config", help="configuration of a hub dataset, if it has several")
    p.add_argument(
        "--protocol",
        choices=("grpo-tui", "lm-eval-gsm8k"),
        default="grpo-tui",
        help="grpo-tui: zero-shot in the training format (default); lm-eval-gsm8k: lm-evaluation-harness's "
        "gsm8k task (5-shot 'Question: ... Answer:', strict '#### N' and flexible last number), "
        "comparable with published GSM8K tables",
    )
    p.add_argument(
        "--fewshot-file",
        help="lm-eval-gsm8k: GSM8K-format train split for the few-shot examples "
        "(default: the local gsm8k train copy, else the hub)",
    )
    p.add_argument(
        "--question-field",
        default="auto",
        help="field holding the question (default auto: question, problem, prompt or messages)",
    )
    p.add_argument("--question-template", help='question built from fields, e.g. "{Body} {Question}" (SVAMP)')
    p.add_argument(
        "--answer-field", default="auto", help="field holding the gold (default auto: answer, else solution)"
    )
    p.add_argument(
        "--gold-format",
        default="auto",
        choices=("auto", "gsm8k", "boxed", "plain", "number"),
        help="how the gold is written: after ####, last \\boxed{}, the whole field, one number with or "
        "without a unit ('9 (apples)', '145.0'), or guessed per row (default)",
    )
    p.add_argument(
        "--limit", type=int_at_least(0), default=0, help="evaluate the first N items (0 = all; synthetic: 500)"
    )
    p.add_argument("--shuffle", type=int, metavar="SEED", help="shuffle items with SEED before --limit")
    p.add_argument(
        "--samples",
        type=int_at_least(0),
        default=0,
        metavar="K",
        help="also sample K answers per item: pass@1, pass@K, maj@K",
    )
    p.add_argument("--no-greedy", action="store_true", help="skip the greedy pass (with --samples)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the preset's, else 1.0)")
    p.add_argument("--top-p", type=float, help="nucleus sampling (default: the preset's, else 1.0)")
    p.add_argument(
        "--max-new-tokens", type=int_at_least(1), default=256, help="tokens generated per answer (default 256)"
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(0),
        default=0,
        help="sequences generated at once (default 64 on a GPU, 8 on a CPU)",
    )
    p.add_argument(
        "--preset", help="preset whose prompt format to ask in (default: the run's config.json, else 'reasoning')"
    )
    p.add_argument("--format", choices=PROMPT_FORMATS, help="override the prompt format")
    p.add_argument(
        "--one-shot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show (or not) the worked example turn, overriding the preset/run",
    )
    p.add_argument(
        "--difficulty",
        type=int,
        choices=(1, 2, 3),
        help="synthetic problems' difficulty (default: the preset's, else 1)",
    )
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        help="CPU threads for torch (default: torch's choice); on a CPU shared "
        "with other jobs, 1 is often several times faster",
    )
    p.add_argument("--out", type=Path, help="output directory (default: evals/<time>-<dataset>)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    if args.samples < 0 or (args.no_greedy and not args.samples):
        console.print("error: --no-greedy needs --samples K (K >= 1)")
        return EvalError.exit_code
    try:
        preset = load_config(args.preset) if args.preset else None
        specs_in = ([args.compare] if args.compare else []) + args.model
        specs = [resolve_model(s, preset) for s in specs_in]
        # one prompt for every model compared: a plain model is asked the way the run it is compared with was
        shared = next((s.prompt for s in specs if s.prompt), None)
        for s in specs:
            s.prompt = s.prompt or shared
        cfg_for_data = preset or next((s.config for s in specs if s.config), None)
        if args.protocol == "lm-eval-gsm8k":
            return _main_lm_eval(args, specs, console)
        fields = FieldMap(args.question_field, args.answer_field, args.question_template, args.gold_format)
        data = load_eval_data(
            args.dataset,
            args.split,
            args.limit,
            cfg_for_data,
            args.difficulty,
            args.shuffle,
            fields,
            args.dataset_config,
        )
    except GrpoTuiError as e:
        console.print(visible(f"error: {e}"), markup=False)
        return e.exit_code
    warning = data.gold_warning()
    if warning:
        console.print(f"[bold red]{escape(visible(warning))}[/]")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    temp_src = preset or next((s.config for s in specs if s.config), None)
    override = None
    if args.format or args.one_shot is not None:
        base = (preset.prompt if preset else None) or specs[0].prompt or PromptConfig()
        override = PromptConfig(
            format=args.format or base.format,
            system_prompt=base.system_prompt if not args.format else None,
            one_shot=base.one_shot if args.one_shot is None else args.one_shot,
        )
    req = EvalRequest(
        dataset=data,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        samples=args.samples,
        greedy=not args.no_greedy,
        temperature=args.temperature
        if args.temperature is not None
        else (temp_src.train.temperature if temp_src else 1.0),
        top_p=args.top_p if args.top_p is not None else (temp_src.train.top_p if temp_src else 1.0),
        seed=args.seed,
        prompt_override=override,
        dtype=args.dtype,
    )
    out = args.out or Path("evals") / f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(Path(data.name).stem)}"
    console.print(
        visible(
            f"{len(data.items)} items from {data.origin}"
            + (f" ({data.skipped} skipped)" if data.skipped else "")
            + f"; device {device}"
            + ("" if device.startswith("cuda") else " (no GPU: expect minutes per 100 items)")
        ),
        markup=False,
    )
    summaries, all_rows = [], []
    labels = Counter()
    for spec in specs:
        done, code = _per_model(spec, console, lambda: run_one(spec, req, device, console))
        if done is None:
            return code
        rows, summary = done
        sub = _result_dir(out, spec.label, labels)
        write_results(sub, rows, summary)
        summaries.append(summary)
        all_rows.append(rows)
        t = Table(
            title=safe_text(f"{spec.label} on {data.name} ({summary['n']} items, {summary['generation_s']:.0f} s)")
        )
        t.add_column("metric")
        t.add_column("value (95% CI)")
        for k, v in summary_lines(summary):
            t.add_row(k, v)
        console.print(t)
        console.print(f"results: {sub / 'results.jsonl'}\nsummary: {sub / 'summary.json'}")
    if len(summaries) > 1:
        cmp = compare(summaries, all_rows)
        (out / "compare.json").write_text(json.dumps(cmp, indent=2))
        (out / "compare.md").write_text(compare_markdown(cmp))
        t = Table(title=safe_text(f"before/after on {data.name} ({cmp['n']} items)"))
        t.add_column("metric (%)")
        for m in cmp["models"]:
            t.add_column(safe_text(m))
        for m in cmp["models"][1:]:
            t.add_column(safe_text(f"Δ {m}"))
        for row in cmp["table"]:
            t.add_row(
                row["metric"],
                *[percent(v) for v in row["values"]],
                *["-" if d is None else f"{100 * d:+.1f}" for d in row["delta"][1:]],
            )
        console.print(t)
        for p in cmp["paired"]:
            console.print(
                visible(
                    f"{p['model']} vs {cmp['models'][0]} ({p['mode']}): fixed {p['fixed']}, "
                    f"broke {p['broken']} of {p['items']}"
                ),
                markup=False,
            )
        console.print(f"compare: {out / 'compare.md'}")
    return EXIT_OK


def _per_model(spec: ModelSpec, console: Any, work: Callable[[], Any]) -> tuple[Any, int]:
    """(work(), EXIT_OK), or (None, exit code) with the error printed: one model's failure named, not a traceback."""
    try:
        return work(), EXIT_OK
    except GrpoTuiError as e:
        console.print(visible(f"error: {e}"), markup=False)
        return None, e.exit_code
    except Exception as e:  # noqa: BLE001 - a model that won't load or generate: say which
        console.print(visible(f"error: {spec.label}: {type(e).__name__}: {e}"), markup=False)
        return None, EXIT_FAILED


def _result_dir(out: Path, label: str, seen: Counter) -> Path:
    """A model's own folder of results: a label met again (the same model twice, RUN@STEP) gets a number."""
    seen[label] += 1
    return out / (_slug(label) + (f"-{seen[label]}" if seen[label] > 1 else ""))


def _main_lm_eval(args: argparse.Namespace, specs: list[ModelSpec], console: Any) -> int:
    """--protocol lm-eval-gsm8k: lm-evaluation-harness's gsm8k task, one results table per model."""
    from grpo_tui.engine.eval import lm_eval_gsm8k as lm

    try:
        test_docs, origin = gsm8k_docs(args.dataset, args.split, "--dataset")
        train_docs, train_origin = gsm8k_docs(args.fewshot_file or "gsm8k", "train", "--fewshot-file")
    except GrpoTuiError as e:
        console.print(visible(f"error: {e}"), markup=False)
        return e.exit_code
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(test_docs)
    if args.limit:
        test_docs = test_docs[: args.limit]  # lm-eval's --limit: the first N
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = args.out or Path("evals") / f"{time.strftime('%Y%m%d-%H%M%S')}-lm-eval-gsm8k"
    console.print(
        visible(
            f"lm-eval gsm8k protocol: {len(test_docs)} items from {origin}, {lm.NUM_FEWSHOT}-shot "
            f"from {train_origin}; device {device}"
        ),
        markup=False,
    )

    def one(spec: ModelSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        model, tok = load_for_eval(spec, device, args.dtype)
        return lm.run(
            model,
            tok,
            test_docs,
            train_docs,
            batch_size=args.batch_size or default_batch_size(device),
            max_new_tokens=args.max_new_tokens,
        )  # 256 by default, lm-eval's max_gen_toks

    labels = Counter()
    for spec in specs:
        t0 = time.time()
        done, code = _per_model(spec, console, lambda: one(spec))
        if done is None:
            return code
        rows, numbers = done
        summary = {
            "model": spec.label,
            "model_path": spec.path,
            "adapter": spec.adapter,
            "run_dir": spec.run_dir,
            "step": spec.step,
            "dataset": args.dataset,
            "dataset_origin": origin,
            "fewshot_origin": train_origin,
            "device": device,
            "generation_s": round(time.time() - t0, 2),
            **numbers,
        }
        sub = _result_dir(out, spec.label, labels)
        write_results(sub, rows, summary)
        console.print(visible(lm.table_markdown(spec.label, numbers)), markup=False)
        console.print(f"results: {sub / 'results.jsonl'}\nsummary: {sub / 'summary.json'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
