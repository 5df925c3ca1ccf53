"""The `grpo-tui` command.

    grpo-tui [--preset P] [--run-dir D] [--max-steps N] [--set K=V ...] [--no-ui]
    grpo-tui attach RUN_DIR [--no-ui]
    grpo-tui stop|pause|resume|checkpoint RUN_DIR [--wait]
    grpo-tui set RUN_DIR KEY=VALUE... [--wait]      (learning_rate, temperature, top_p, beta, reward_weights.NAME)
    grpo-tui browse [RUN_DIR]
    grpo-tui compare RUN_DIR RUN_DIR... [--no-ui]
    grpo-tui presets [--gpu-mem GB] [--explain NAME] [--fields [SECTION]]
    grpo-tui rewards --answer GOLD [--completion FILE|-] [--preset P]
    grpo-tui rewards --ui [--preset P] [--answer GOLD] [--completion FILE]
    grpo-tui eval --model ID|PATH|RUN_DIR[@STEP] --dataset gsm8k|math500|synthetic|FILE.jsonl|OWNER/NAME [--limit N] [--samples K]
                  [--question-field F | --question-template T] [--answer-field F] [--gold-format G]
                  [--protocol lm-eval-gsm8k]
    grpo-tui export RUN_DIR[@STEP] --out DIR [--adapter] [--push-to-hub REPO_ID]

Textual is imported only by the commands that open a Textual app, so the
headless path and the engine never load it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from grpo_tui.tui.console.control import SHELL_COMMANDS as CONTROL
from grpo_tui.tui.launcher import default_run_dir

SUBCOMMANDS = ("attach", *CONTROL, "browse", "compare", "presets", "rewards", "eval", "export")


def _default_preset() -> tuple[str, str]:
    """Best shipped preset for the detected GPU whose optional packages are installed, cpu-demo without one."""
    from grpo_tui.engine.gpu import visible_gpus
    from grpo_tui.engine.plan.memory import choose_preset
    gpu = visible_gpus()
    return choose_preset(gpu.total_gib if gpu else None)


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-tui", description="Watch and steer GRPO training of language models on math.",
        epilog="other commands: grpo-tui attach RUN_DIR | stop|pause|resume|checkpoint RUN_DIR | "
               "set RUN_DIR KEY=VALUE... | browse [RUN_DIR] | compare RUN_DIR... | presets [--gpu-mem GB] | "
               "rewards --answer GOLD [--completion FILE|-] | eval --model M --dataset D | "
               "export RUN_DIR[@STEP] --out DIR")
    p.add_argument("--preset", help="preset name (see `grpo-tui presets`) or a .toml path; "
                                    "default: the best preset for the detected GPU, cpu-demo without one")
    p.add_argument("--run-dir", type=Path, help="where the run is written (default: runs/<timestamp>-<preset>)")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a preset value, e.g. --set train.learning_rate=1e-5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its latest checkpoint")
    p.add_argument("--restart", action="store_true",
                   help="start the run in --run-dir over from step 0 (when --resume finds no usable checkpoint); "
                        "its event log is kept, old checkpoints and rollouts are set aside in the run directory")
    p.add_argument("--no-ui", action="store_true", help="run headless: print progress with rich, no Textual")
    p.add_argument("--device", choices=("cpu",),
                   help="cpu: run the preset on the CPU with every other knob as written (a smoke test of a GPU "
                        "preset); parts that need CUDA (vLLM, 4-bit, paged/8-bit optimizers, DeepSpeed) stop in "
                        "pre-flight with the --set that replaces them")
    return p


def cmd_train(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    reason = None
    if (args.resume or args.restart) and not args.run_dir:
        print(f"error: {'--resume' if args.resume else '--restart'} needs --run-dir RUN_DIR", file=sys.stderr)
        return 2
    if args.device == "cpu":
        args.overrides.append("train.use_cpu=true")  # the engine's --device cpu, recorded in config.json
    preset = args.preset
    if not preset and not (args.resume or args.restart) and args.device == "cpu":
        preset, reason = "cpu-demo", "--device cpu"
        print(f"preset: {preset} ({reason})")
    elif not preset and not (args.resume or args.restart):
        preset, reason = _default_preset()
        print(f"preset: {preset} ({reason})")
    run_dir = args.run_dir or default_run_dir(preset)
    from grpo_tui.tui.launcher import check_request
    problem = check_request(preset, run_dir, args.max_steps, args.overrides, args.resume, args.restart)
    if problem:  # before any UI shows "starting": a typo fails at once, with the engine's own words
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.no_ui:
        from grpo_tui.tui.headless import run_headless
        return run_headless(preset, run_dir, args.max_steps, args.overrides, args.resume, args.restart)
    from grpo_tui.tui.app import run_dashboard
    return run_dashboard(preset, run_dir, args.max_steps, args.overrides, attach=False, preset_reason=reason,
                         resume=args.resume, restart=args.restart)


def cmd_attach(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="grpo-tui attach", description="re-attach to a running or finished run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-ui", action="store_true", help="follow it headless")
    args = p.parse_args(argv)
    from grpo_tui.rundir.layout import RunDir
    if not RunDir(args.run_dir).exists():
        print(f"error: {args.run_dir} is not a run directory (no events.jsonl)", file=sys.stderr)
        return 2
    if args.no_ui:
        from grpo_tui.tui.headless import follow
        return follow(args.run_dir, None)
    from grpo_tui.tui.app import run_dashboard
    return run_dashboard(None, args.run_dir, attach=True)


def cmd_control(command: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from grpo_tui.tui.console.control import main
        return main(command, argv)
    return run


def cmd_browse(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="grpo-tui browse", description="browse the saved rollouts of a run")
    p.add_argument("run_dir", type=Path, nargs="?", help="a run directory (default: pick from runs/)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="where to list runs from")
    args = p.parse_args(argv)
    from grpo_tui.tui.browser.app import run_browser
    return run_browser(args.run_dir, args.runs_root)


def cmd_compare(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="grpo-tui compare",
                                description="overlay the curves of several runs by step and show their config differences")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument("--no-ui", action="store_true", help="print tables with rich instead of opening the Textual screen")
    args = p.parse_args(argv)
    from grpo_tui.tui.console.compare import load_runs, print_comparison
    runs, problems = load_runs(args.run_dirs)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.no_ui:
        print_comparison(runs)
        return 0
    from grpo_tui.tui.compare import run_compare
    return run_compare(runs)


def cmd_presets(argv: list[str]) -> int:
    from grpo_tui.tui.console.presets import main
    return main(argv)


def cmd_rewards(argv: list[str]) -> int:
    if "--ui" not in argv:
        from grpo_tui.tui.console.rewards import main
        return main(argv)
    p = argparse.ArgumentParser(prog="grpo-tui rewards --ui",
                                description="the reward playground: edit a completion and the gold answer, "
                                            "every reward of the preset recomputes as you type")
    p.add_argument("--ui", action="store_true", required=True)
    p.add_argument("--preset", help="preset name or path: use its rewards, weights and prompt format")
    p.add_argument("--answer", default="7", help="the gold answer to start with")
    p.add_argument("--completion", type=Path, help="a file with the completion to start with")
    p.add_argument("--format", choices=("reasoning", "think"), help="prompt format (default: the preset's)")
    args = p.parse_args(argv)
    from grpo_tui.engine.rewards.playground import EXAMPLE_COMPLETION
    from grpo_tui.tui.console.rewards import _load_preset
    from grpo_tui.engine.rewards.spec import RewardSpecError
    rewards, fmt, base_dir = None, args.format, None
    try:
        if args.preset:
            rewards, preset_fmt, base_dir = _load_preset(args.preset)
            fmt = fmt or preset_fmt
        text = args.completion.read_text(encoding="utf-8") if args.completion else EXAMPLE_COMPLETION
    except RewardSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot read --completion {args.completion}: {e.strerror}", file=sys.stderr)
        return 2
    from grpo_tui.tui.playground import run_rewards
    return run_rewards(rewards, fmt or "reasoning", base_dir, args.answer, text, args.preset or "")


def cmd_eval(argv: list[str]) -> int:
    from grpo_tui.tui.console.eval import main
    return main(argv)


def cmd_export(argv: list[str]) -> int:
    from grpo_tui.engine.export import main
    return main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in SUBCOMMANDS:
        return {"attach": cmd_attach, **{c: cmd_control(c) for c in CONTROL}, "browse": cmd_browse,
                "compare": cmd_compare, "presets": cmd_presets, "rewards": cmd_rewards, "eval": cmd_eval,
                "export": cmd_export}[argv[0]](argv[1:])
    if argv and not argv[0].startswith("-"):  # training takes no positional argument: a mistyped command
        import difflib
        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else ""
        print(f"error: unknown command {argv[0]!r}.{hint} Commands: {', '.join(SUBCOMMANDS)} "
              "(or no command to train: grpo-tui --preset P).", file=sys.stderr)
        return 2
    return cmd_train(argv)


if __name__ == "__main__":
    sys.exit(main())
