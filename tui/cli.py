"""The `grpo-tui` command.

    grpo-tui [--preset P] [--run-dir D] [--max-steps N] [--set K=V ...] [--no-ui]
    grpo-tui attach RUN_DIR [--no-ui]
    grpo-tui browse [RUN_DIR]
    grpo-tui presets [--gpu-mem GB]
    grpo-tui rewards --answer GOLD [--completion FILE|-] [--preset P]
    grpo-tui eval --model ID|PATH|RUN_DIR[@STEP] --dataset gsm8k|math500|synthetic|FILE.jsonl [--limit N] [--samples K]

Textual is imported only by the commands that open a Textual app, so the
headless path and the engine never load it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tui.launcher import default_run_dir

SUBCOMMANDS = ("attach", "browse", "presets", "rewards", "eval")


def _default_preset() -> tuple[str, str]:
    """Best shipped preset for the detected GPU whose optional packages are installed, cpu-demo without one."""
    try:
        from engine.plan.memory import choose_preset, detect_gpu
    except ImportError:
        return "cpu-demo", "no GPU detection available; using the CPU demo"
    gpu = detect_gpu()
    return choose_preset(gpu[1] if gpu else None)


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-tui", description="Watch and steer GRPO training of language models on math.",
        epilog="other commands: grpo-tui attach RUN_DIR | browse [RUN_DIR] | presets [--gpu-mem GB] | "
               "rewards --answer GOLD [--completion FILE|-] | eval --model M --dataset D")
    p.add_argument("--preset", help="preset name (see `grpo-tui presets`) or a .toml path; "
                                    "default: the best preset for the detected GPU, cpu-demo without one")
    p.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/<timestamp>-<preset>)")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset value, e.g. --set train.learning_rate=1e-5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    p.add_argument("--no-ui", action="store_true", help="run headless: print progress with rich, no Textual")
    p.add_argument("--device", choices=("cpu",),
                   help="cpu: run the preset on the CPU with every other knob as written (a smoke test of a GPU "
                        "preset); parts that need CUDA (vLLM, 4-bit, paged/8-bit optimizers, DeepSpeed) stop in "
                        "pre-flight with the --set that replaces them")
    return p


def cmd_train(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    reason = None
    if args.resume and not args.run_dir:
        print("error: --resume needs --run-dir RUN_DIR", file=sys.stderr)
        return 2
    if args.device == "cpu":
        args.overrides.append("train.use_cpu=true")  # the engine's --device cpu, recorded in config.json
    preset = args.preset
    if not preset and not args.resume and args.device == "cpu":
        preset, reason = "cpu-demo", "--device cpu"
        print(f"preset: {preset} ({reason})")
    elif not preset and not args.resume:
        preset, reason = _default_preset()
        print(f"preset: {preset} ({reason})")
    run_dir = args.run_dir or default_run_dir(preset)
    if args.no_ui:
        from tui.headless import run_headless
        return run_headless(preset, run_dir, args.max_steps, args.overrides, args.resume)
    from tui.app import run_dashboard
    return run_dashboard(preset, run_dir, args.max_steps, args.overrides, attach=False, preset_reason=reason,
                         resume=args.resume)


def cmd_attach(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="grpo-tui attach", description="re-attach to a running or finished run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-ui", action="store_true", help="follow it headless")
    args = p.parse_args(argv)
    from rundir.layout import RunDir
    if not RunDir(args.run_dir).exists():
        print(f"error: {args.run_dir} is not a run directory (no events.jsonl)", file=sys.stderr)
        return 2
    if args.no_ui:
        from tui.headless import follow
        return follow(args.run_dir, None)
    from tui.app import run_dashboard
    return run_dashboard(None, args.run_dir, attach=True)


def cmd_browse(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="grpo-tui browse", description="browse the saved rollouts of a run")
    p.add_argument("run_dir", type=Path, nargs="?", help="a run directory (default: pick from runs/)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="where to list runs from")
    args = p.parse_args(argv)
    from tui.browser.app import run_browser
    return run_browser(args.run_dir, args.runs_root)


def cmd_presets(argv: list[str]) -> int:
    from tui.console.presets import main
    return main(argv)


def cmd_rewards(argv: list[str]) -> int:
    from engine.rewards.playground import main
    return main(argv)


def cmd_eval(argv: list[str]) -> int:
    from engine.eval.evaluate import main
    return main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in SUBCOMMANDS:
        return {"attach": cmd_attach, "browse": cmd_browse, "presets": cmd_presets,
                "rewards": cmd_rewards, "eval": cmd_eval}[argv[0]](argv[1:])
    return cmd_train(argv)


if __name__ == "__main__":
    sys.exit(main())
