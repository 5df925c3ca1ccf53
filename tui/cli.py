"""The `grpo-tui` command.

    grpo-tui [--preset P | --config RECIPE.yaml] [--run-dir D] [--max-steps N] [--set K=V ...] [--no-ui]
    grpo-tui attach RUN_DIR [--no-ui]
    grpo-tui stop|pause|resume|checkpoint RUN_DIR [--wait]
    grpo-tui set RUN_DIR KEY=VALUE... [--wait]      (learning_rate, temperature, top_p, beta, reward_weights.NAME)
    grpo-tui browse [RUN_DIR]
    grpo-tui compare RUN_DIR RUN_DIR... [--no-ui]
    grpo-tui presets [--gpu-mem GB] [--explain NAME] [--fields [SECTION]] [--show NAME --format trl-yaml]
                     [--model ID|DIR [--base PRESET] [--json]]
    grpo-tui rewards --answer GOLD [--completion FILE|-] [--preset P]
    grpo-tui rewards --ui [--preset P] [--answer GOLD] [--completion FILE]
    grpo-tui eval --model ID|PATH|RUN_DIR[@STEP] --dataset gsm8k|math500|synthetic|FILE.jsonl|OWNER/NAME
                  [--limit N] [--samples K]
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
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from grpo_tui.engine.config import RECIPE_SUFFIXES
from grpo_tui.engine.rewards.answer_format import PROMPT_FORMATS
from grpo_tui.engine.train_flags import add_train_flags
from grpo_tui.tui.console.control import SHELL_COMMANDS as CONTROL
from grpo_tui.tui.console.control import WHAT as CONTROL_WHAT
from grpo_tui.tui.launcher import default_run_dir

# command -> (its arguments, what it does): the dispatch table below and the command list in --help
COMMANDS: dict[str, tuple[str, str]] = {
    "attach": ("RUN_DIR [--no-ui]", "re-attach to a running or finished run"),
    **{
        str(c): ("RUN_DIR KEY=VALUE... [--wait]" if str(c) == "set" else "RUN_DIR [--wait]", what)
        for c, what in CONTROL_WHAT.items()
    },
    "browse": ("[RUN_DIR]", "browse the saved rollouts of a run"),
    "compare": ("RUN_DIR RUN_DIR... [--no-ui]", "overlay the curves of several runs and their config differences"),
    "presets": (
        "[--gpu-mem GB] [--explain NAME] [--fields] [--show NAME] [--model ID|DIR [--json]]",
        "list presets with their estimated memory; show one, every config field, or what fits a model",
    ),
    "rewards": (
        "--answer GOLD [--completion FILE|-] | --ui",
        "score a completion with each reward, or open the reward playground (--ui)",
    ),
    "eval": ("--model M --dataset D [--limit N]", "evaluate a model or a run's checkpoint on a math dataset"),
    "export": ("RUN_DIR[@STEP] --out DIR", "write a checkpoint out as a model directory (or adapter, or to the hub)"),
}
SUBCOMMANDS = tuple(COMMANDS)


def package_version() -> str:
    try:
        return version("grpo-tui")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _commands_help() -> str:
    width = max(len(c) for c in COMMANDS) + 2
    lines = [
        "commands (each has its own --help):",
        f"  {'(none)':<{width}}train a new run, or continue one: the options below",
    ]
    for name, (args, what) in COMMANDS.items():
        lines.append(f"  {name:<{width}}{what}")
        lines.append(f"  {'':<{width}}  grpo-tui {name} {args}")
    return "\n".join(lines)


def _default_preset() -> tuple[str, str]:
    """Best shipped preset for the detected GPU whose optional packages are installed, cpu-demo without one."""
    from grpo_tui.engine.gpu import visible_gpus
    from grpo_tui.engine.preset_choice import choose_preset

    gpu = visible_gpus()
    return choose_preset(gpu.total_gib if gpu else None)


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-tui",
        usage="grpo-tui [COMMAND ...] | grpo-tui [options]",
        description="Watch and steer GRPO training of language models on math.\n\n" + _commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"grpo-tui {package_version()}")
    add_train_flags(p, run_dir_required=False, run_dir_default="; default: runs/<timestamp>-<preset>")
    p.add_argument("--no-ui", action="store_true", help="run headless: print progress with rich, no Textual")
    return p


def _print_recipe_notes(path: str) -> int:
    """What a TRL recipe's keys become that the user might not expect; 2 when the recipe is refused."""
    from grpo_tui.engine.config import PresetError
    from grpo_tui.engine.config.recipe import read_recipe

    try:
        notes = read_recipe(Path(path)).notes
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"{path}: note: {note}")
    return 0


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
    is_recipe = bool(preset) and Path(preset).suffix in RECIPE_SUFFIXES
    if is_recipe and _print_recipe_notes(preset):
        return 2
    run_dir = args.run_dir or default_run_dir(Path(preset).stem if is_recipe else preset)
    from grpo_tui.tui.launcher import check_request

    problem = check_request(preset, run_dir, args.max_steps, args.overrides, args.resume, args.restart)
    if problem:  # before any UI shows "starting": a typo fails at once, with the engine's own words
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.no_ui:
        from grpo_tui.tui.headless import run_headless

        return run_headless(preset, run_dir, args.max_steps, args.overrides, args.resume, args.restart)
    from grpo_tui.tui.app import run_dashboard

    return run_dashboard(
        preset,
        run_dir,
        args.max_steps,
        args.overrides,
        attach=False,
        preset_reason=reason,
        resume=args.resume,
        restart=args.restart,
    )


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
    p = argparse.ArgumentParser(
        prog="grpo-tui compare",
        description="overlay the curves of several runs by step and show their config differences",
    )
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
    from grpo_tui.tui.compare_screen import run_compare

    return run_compare(runs)


def cmd_presets(argv: list[str]) -> int:
    from grpo_tui.tui.console.presets import main

    return main(argv)


def cmd_rewards(argv: list[str]) -> int:
    if "--ui" not in argv:
        from grpo_tui.tui.console.rewards import main

        return main(argv)
    p = argparse.ArgumentParser(
        prog="grpo-tui rewards --ui",
        description="the reward playground: edit a completion and the gold answer, "
        "every reward of the preset recomputes as you type",
    )
    p.add_argument("--ui", action="store_true", required=True)
    p.add_argument("--preset", help="preset name or path: use its rewards, weights and prompt format")
    p.add_argument("--answer", default="7", help="the gold answer to start with")
    p.add_argument("--completion", type=Path, help="a file with the completion to start with")
    p.add_argument("--format", choices=PROMPT_FORMATS, help="prompt format (default: the preset's)")
    args = p.parse_args(argv)
    from grpo_tui.engine.rewards.score_completion import EXAMPLE_COMPLETION
    from grpo_tui.engine.rewards.spec import RewardSpecError
    from grpo_tui.tui.console.rewards import _load_preset

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
    from grpo_tui.tui.playground_screen import run_rewards

    return run_rewards(rewards, fmt or "reasoning", base_dir, args.answer, text, args.preset or "")


def cmd_eval(argv: list[str]) -> int:
    from grpo_tui.tui.console.eval import main

    return main(argv)


def cmd_export(argv: list[str]) -> int:
    from grpo_tui.tui.console.export import main

    return main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv and argv[0] in SUBCOMMANDS:
        return {
            "attach": cmd_attach,
            **{c: cmd_control(c) for c in CONTROL},
            "browse": cmd_browse,
            "compare": cmd_compare,
            "presets": cmd_presets,
            "rewards": cmd_rewards,
            "eval": cmd_eval,
            "export": cmd_export,
        }[argv[0]](argv[1:])
    if argv and not argv[0].startswith("-"):  # training takes no positional argument: a mistyped command
        import difflib

        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}?" if close else ""
        print(
            f"error: unknown command {argv[0]!r}.{hint} Commands: {', '.join(SUBCOMMANDS)} "
            "(or no command to train: grpo-tui --preset P).",
            file=sys.stderr,
        )
        return 2
    return cmd_train(argv)


if __name__ == "__main__":
    sys.exit(main())
