"""`grpo-tui presets`: every shipped preset with its estimated peak memory and whether it fits.

    grpo-tui presets                    fits judged against the detected GPU (if any)
    grpo-tui presets --gpu-mem 24       ... against a 24 GB card
    grpo-tui presets --explain NAME     the estimate of one preset, term by term, and what to change
    grpo-tui presets --fields [SECTION] every knob a preset can set, its type, default and origin
                                        (grpo-tui's own fields, or trl.GRPOConfig / trl.SFTConfig passthrough)
    grpo-tui presets --model ID|DIR     which recipes (full, LoRA, QLoRA, checkpointing) fit one model
                     [--base PRESET] [--json]

Rich only (no Textual): this is the headless side of the core.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grpo_tui.engine.config import SECTIONS, PresetError, describe_all_fields, list_presets, load_config
from grpo_tui.engine.gpu import visible_gpus
from grpo_tui.engine.plan.advice import fit_advice
from grpo_tui.engine.plan.arch import Arch
from grpo_tui.engine.plan.memory import HEADROOM, Estimate, estimate, method_of
from grpo_tui.engine.plan.model_source import UnknownArch
from grpo_tui.engine.plan.recipes import DEFAULT_BASE, arch_json, recipe_fits
from grpo_tui.tui.text import safe_text


def _short_model(name: str) -> str:
    if name.startswith("tiny-random"):
        return "tiny-random"
    return name.rstrip("/").rsplit("/", 1)[-1].removesuffix("-Instruct")


def _fits_cell(est: Estimate, gpu_gb: float | None) -> str:
    if est.device == "cpu":
        return "[dim]cpu[/]"
    if est.peak_gb is None:
        return "[yellow]?[/]"
    fits = est.fits(gpu_gb)
    if fits is None:
        return "[dim]-[/]"
    return "[green]yes[/]" if fits else "[red]no[/]"


def _peak_cell(est: Estimate) -> str:
    if est.peak_gb is None:
        return "[yellow]unknown model size[/]"
    text = f"{est.peak_gb:.1f}"
    if est.device == "cpu":
        text += " RAM"
    return text


def build_table(rows: list[tuple[str, object]], gpu_gb: float | None, gpu_name: str | None) -> Table:
    where = f"{gpu_gb:g} GB" + (f" {gpu_name}" if gpu_name else "") if gpu_gb else "no GPU given"
    table = Table(
        title=f"grpo-tui presets (fits: {where}; estimates in GB, 1 GB = 2^30 bytes)",
        title_justify="left",
        header_style="bold",
    )
    for col, kw in [
        ("preset", {"no_wrap": True}),
        ("model", {}),
        ("method", {}),
        ("G", {"justify": "right"}),
        ("batch", {"justify": "right"}),
        ("compl.", {"justify": "right"}),
        ("ckpt", {}),
        ("vLLM", {}),
        ("est. peak", {"justify": "right"}),
        ("fits", {"justify": "center"}),
        ("made for", {"justify": "right"}),
        ("expected", {"justify": "right"}),
    ]:
        table.add_column(col, **kw)
    for name, item in rows:
        if isinstance(item, str):  # a preset that doesn't load
            table.add_row(name, f"[red]{item}[/]", *[""] * 10)
            continue
        cfg, est = item
        t = cfg.train
        vllm = f"{t.vllm_gpu_memory_utilization:.2f}" if t.use_vllm else "-"
        made_for = "cpu" if est.device == "cpu" else (f"{cfg.preset.min_gpu_gb:g} GB" if cfg.preset.min_gpu_gb else "-")
        reported = f"{cfg.preset.expected_peak_gb:g}" if cfg.preset.expected_peak_gb else "-"
        table.add_row(
            name,
            _short_model(est.model),
            method_of(cfg),
            str(t.num_generations),
            str(t.per_device_train_batch_size),
            str(t.max_completion_length),
            "yes" if cfg.model.gradient_checkpointing else "no",
            vllm,
            _peak_cell(est),
            _fits_cell(est, gpu_gb),
            made_for,
            reported,
        )
    return table


def explain(name: str, gpu_gb: float | None, console: Console) -> int:
    try:
        cfg = load_config(name)
    except PresetError as e:
        console.print(safe_text(str(e), style="red"))  # a preset's text (its name, its path) is data, not markup
        return 2
    est = estimate(cfg, gpu_gb)
    console.print(Text.assemble(safe_text(est.preset, style="bold"), ": ", safe_text(cfg.preset.description)))
    if cfg.preset.recipe:
        console.print(safe_text(f"recipe: {cfg.preset.recipe}"))
    for section, extra, cls in (("train", cfg.train.trl_extra, "GRPOConfig"), ("sft", cfg.sft.trl_extra, "SFTConfig")):
        for key, value in extra.items():
            console.print(safe_text(f"[{section}] {key} = {value!r}  (passed through to trl.{cls})"))
    if est.peak_gb is None:
        console.print(safe_text(est.unknown, style="yellow"))
        return 0
    console.print(
        safe_text(
            f"{est.model}, {est.method}, G={est.num_generations}, micro-batch {est.batch} "
            f"completions of {est.prompt_tokens} prompt + {est.completion_tokens} completion tokens"
        )
    )
    table = Table(header_style="bold")
    table.add_column("term")
    table.add_column("GB", justify="right")
    table.add_column("how")
    for term in est.terms:
        if term.bytes:
            table.add_row(term.name, f"{term.gb:.2f}", term.note)
    console.print(table)
    phases = ", ".join(f"{k} {v:.1f}" for k, v in est.phases.items())
    where = "RAM" if est.device == "cpu" else "GPU"
    console.print(f"peak {where}: [bold]{est.peak_gb:.1f} GB[/] during the {est.peak_phase} ({phases})")
    for note in est.notes:
        console.print(safe_text(f"note: {note}"))
    if gpu_gb and est.device == "gpu":
        advice = fit_advice(cfg, gpu_gb)
        if advice:
            console.print(Text.assemble(("warning: ", "red"), safe_text(advice[0])))
            for line in advice[1:]:
                console.print(safe_text(line))
        else:
            console.print(f"[green]fits[/] a {gpu_gb:g} GB GPU (keeping {HEADROOM:.0%} free).")
    return 0


def _params_line(arch: Arch, model: str) -> Text:
    line = Text(f"{model}: {arch.params / 1e9:.2f}B parameters")
    if arch.is_moe:
        line.append(
            f" ({arch.active_params / 1e9:.2f}B active per token: {arch.experts_per_token} of "
            f"{arch.experts} experts; weights count all of them, activations the active ones)"
        )
    return line


def model_fits(model: str, gpu_gb: float | None, base: str, as_json: bool, console: Console) -> int:
    """`presets --model`: every recipe's estimated peak for one model, and which fit the card."""
    try:
        arch, fits = recipe_fits(model, gpu_gb, base)
    except (UnknownArch, PresetError) as e:
        print(f"grpo-tui presets --model: {e}", file=sys.stderr)
        return 2
    if as_json:
        doc = {
            "model": model,
            **arch_json(arch),
            "gpu_gb": gpu_gb,
            "base": base,
            "headroom": HEADROOM,
            "recipes": [f.to_json(gpu_gb) for f in fits],
        }
        print(json.dumps(doc, indent=2))
        return 0
    console.print(_params_line(arch, model))
    first = fits[0].estimate
    console.print(
        Text(
            f"batch shape of {base}: G={first.num_generations}, micro-batch {first.batch} completions "
            f"of {first.prompt_tokens} prompt + {first.completion_tokens} completion tokens "
            "(--base PRESET for another)"
        )
    )
    where = f"{gpu_gb:g} GB" if gpu_gb else "no GPU given"
    table = Table(title=f"recipes (fits: {where}; GB = 2^30 bytes)", title_justify="left", header_style="bold")
    for col in ("recipe", "est. peak", "during", "fits"):
        table.add_column(col, justify="left" if col == "recipe" else "right")
    for f in fits:
        e = f.estimate
        table.add_row(Text(f.recipe), f"{e.peak_gb:.1f}", e.peak_phase or "-", _fits_cell(e, gpu_gb))
    console.print(table)
    if gpu_gb:
        ok = [f.recipe for f in fits if f.estimate.fits(gpu_gb)]
        smallest = min(fits, key=lambda f: f.estimate.peak_gb)
        console.print(
            Text(
                f"fits {gpu_gb:g} GB: {', '.join(ok)}"
                if ok
                else f"none of these fits {gpu_gb:g} GB; the smallest, {smallest.recipe}, needs about "
                f"{smallest.estimate.peak_gb:.1f} GB"
            )
        )
    else:
        console.print("No GPU detected: pass --gpu-mem GB to check the recipes against a card.")
    return 0


def fields_table(section: str | None, console: Console) -> int:
    if section is not None and section not in SECTIONS:
        console.print(Text(f"error: unknown section {section!r}; one of {', '.join(SECTIONS)}"))
        return 2
    table = Table(title="Preset fields" + (f" [{section}]" if section else ""), show_lines=False)
    for col in ("key", "type", "default", "origin", "help"):
        table.add_column(col, overflow="fold")
    for key, tp, default, help_, origin in describe_all_fields(section):
        table.add_row(Text(key), Text(tp), Text(default[:40]), Text(origin), Text(help_[:160]))
    console.print(table)
    console.print(
        Text(
            "trl.* fields are written directly in [train] / [sft] and checked against the installed "
            "TRL's dataclass; the engine sets output_dir, logging, seeds and reward_weights itself."
        )
    )
    return 0


def show(name: str, fmt: str) -> int:
    """Plain text on stdout (no rich markup), so it can be redirected into a file and used as is."""
    from grpo_tui.engine.config import find_preset
    from grpo_tui.engine.config.recipe import to_trl_yaml

    try:
        text = to_trl_yaml(load_config(name)) if fmt == "trl-yaml" else find_preset(name).read_text(encoding="utf-8")
    except (PresetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="grpo-tui presets", description="List presets with estimated peak memory and whether each fits a GPU."
    )
    parser.add_argument(
        "--gpu-mem", type=float, metavar="GB", help="GPU memory to check against, in GB (default: the detected GPU)"
    )
    parser.add_argument("--explain", metavar="PRESET", help="show one preset's estimate term by term")
    parser.add_argument(
        "--fields",
        nargs="?",
        const="all",
        metavar="SECTION",
        help="list every knob (of one section) with its type, default and origin",
    )
    parser.add_argument(
        "--model",
        metavar="ID|DIR",
        help="a hub id or model directory: which recipes (full, LoRA, QLoRA, checkpointing) fit it",
    )
    parser.add_argument(
        "--base",
        metavar="PRESET",
        default=DEFAULT_BASE,
        help=f"with --model: the preset whose batch shape the recipes keep (default {DEFAULT_BASE})",
    )
    parser.add_argument("--json", action="store_true", help="with --model: print the estimates as JSON")
    parser.add_argument("--show", metavar="PRESET", help="print one preset (see --format)")
    parser.add_argument(
        "--format",
        choices=("toml", "trl-yaml"),
        default="toml",
        help="with --show: the preset file as written (toml), or the preset as a TRL recipe for "
        "`trl grpo --config` and `grpo-tui --config` (trl-yaml)",
    )
    args = parser.parse_args(argv)
    if args.show:
        return show(args.show, args.format)
    console = Console(width=max(Console().width, 140) if not sys.stdout.isatty() else None)
    if args.fields:
        return fields_table(None if args.fields == "all" else args.fields, console)
    gpu_gb, gpu_name = args.gpu_mem, None
    if gpu_gb is not None and gpu_gb <= 0:
        parser.error("--gpu-mem must be positive")
    if gpu_gb is None:
        detected = visible_gpus()
        if detected:
            gpu_name, gpu_gb = detected.name, detected.total_gib
    if args.model:
        return model_fits(args.model, gpu_gb, args.base, args.json, console)
    if args.json:
        parser.error("--json goes with --model")
    if args.explain:
        return explain(args.explain, gpu_gb, console)
    rows: list[tuple[str, object]] = []
    for name in list_presets():
        try:
            cfg = load_config(name)
        except PresetError as e:
            rows.append((name, str(e)))
            continue
        rows.append((name, (cfg, estimate(cfg, gpu_gb))))
    console.print(build_table(rows, gpu_gb, gpu_name))
    if gpu_gb is None:
        console.print("No GPU detected: pass --gpu-mem GB to check the GPU presets against a card.")
        return 0
    misfits = [(n, item) for n, item in rows if not isinstance(item, str) and item[1].fits(gpu_gb) is False]
    for name, (cfg, est) in misfits:
        if cfg.preset.min_gpu_gb and cfg.preset.min_gpu_gb > gpu_gb * 1.1:
            continue  # made for a bigger card: "no" in the table says enough
        advice = fit_advice(cfg, gpu_gb)
        if advice:
            console.print(f"[red]warning:[/] {advice[0]}")
            for line in advice[1:]:
                console.print(line)
    others = [n for n, item in misfits if item[0].preset.min_gpu_gb and item[0].preset.min_gpu_gb > gpu_gb * 1.1]
    if others:
        console.print(
            f"[dim]Made for bigger cards: {', '.join(others)} "
            f"(see `grpo-tui presets --gpu-mem {gpu_gb:g} --explain NAME` for what to change).[/]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
