"""`grpo-tui rewards`: score one completion with every reward of a preset (rich, no Textual).

    grpo-tui rewards --answer 72 --completion out.txt [--preset P] [--format think]
    echo '<reasoning>...' | grpo-tui rewards --answer 72

Prints each reward's score, its weight and weighted score, the total, the
extracted answer and the correct/incorrect judgment. The scoring itself is
engine/rewards/score_completion.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grpo_tui.engine.rewards.extract import PROMPT_FORMATS
from grpo_tui.engine.rewards.score_completion import score_completion
from grpo_tui.engine.rewards.spec import RewardSpecError
from grpo_tui.rundir.errors import GrpoTuiError
from grpo_tui.tui.fmt import score


def _load_preset(name_or_path: str) -> tuple[dict, str, Path | None]:
    """(rewards table, prompt format, folder user reward files resolve against) of a preset."""
    from grpo_tui.engine.config import load_config

    cfg = load_config(name_or_path)
    return dict(cfg.rewards), cfg.prompt.format, cfg.base_dir


def _parse_reward_arg(s: str) -> tuple[str, float]:
    if "=" in s:
        name, w = s.rsplit("=", 1)
        try:
            return name, float(w)
        except ValueError:
            raise RewardSpecError(f"--reward {s!r}: the weight after '=' must be a number") from None
    return s, 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="grpo-tui rewards",
        description="Score one completion with each reward function; "
        "prints scores, weighted total and the extracted answer.",
    )
    # --ui is taken by `grpo-tui rewards --ui` (tui/cli.py) before this parser runs; listed so --help shows it
    parser.add_argument(
        "--ui", action="store_true", help="open the reward playground instead (see rewards --ui --help)"
    )
    parser.add_argument("--answer", help="the gold answer (required without --ui)")
    parser.add_argument("--completion", default="-", help="file with the completion text, or - for stdin (default)")
    parser.add_argument("--preset", help="preset name or path: use its rewards, weights and prompt format")
    parser.add_argument(
        "--format", choices=PROMPT_FORMATS, help="prompt format (default: the preset's, else reasoning)"
    )
    parser.add_argument(
        "--reward",
        action="append",
        default=[],
        metavar="NAME[=WEIGHT]",
        help="score with this reward (repeatable; built-in name, file.py:function, package.module:function or "
        "model:PATH_OR_ID); default: the recipe's set",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.answer is None:
        parser.error("the following arguments are required: --answer")

    from rich.console import Console
    from rich.table import Table

    console = Console()
    err = Console(stderr=True)
    try:
        if args.completion == "-":
            if sys.stdin is None or sys.stdin.isatty():
                err.print("[red]no completion: pass --completion FILE or pipe the text on stdin[/red]")
                return 2
            text = sys.stdin.read()
        else:
            try:
                text = Path(args.completion).read_text(encoding="utf-8")
            except OSError as e:
                err.print(f"[red]cannot read --completion {args.completion}: {e.strerror}[/red]")
                return 2
        rewards: dict | None = None
        fmt = args.format
        base_dir = None
        if args.preset:
            rewards, preset_fmt, base_dir = _load_preset(args.preset)
            fmt = fmt or preset_fmt
        if args.reward:
            rewards = dict(_parse_reward_arg(r) for r in args.reward)
        result = score_completion(text, args.answer, rewards, fmt or "reasoning", base_dir)
    except GrpoTuiError as e:
        err.print(f"error: {e}", style="red", markup=False)
        return e.exit_code

    if args.json:
        console.print_json(json.dumps(result))
        return 0
    table = Table(title=f"rewards ({result['prompt_format']} format)")
    table.add_column("reward")
    table.add_column("score", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("weighted", justify="right")
    for row in result["rewards"]:
        name = row["name"] + (f"  [red]! {row['failure']['kind']}[/red]" if row["failure"] else "")
        table.add_row(
            name, score(row["score"], 4, trim=True), f"{row['weight']:g}", score(row["weighted"], 4, trim=True)
        )
    table.add_section()
    table.add_row("[b]total[/b]", "", "", f"[b]{score(result['total'], 4, trim=True)}[/b]")
    console.print(table)
    for row in result["rewards"]:
        if row["failure"]:
            console.print(
                f"{row['name']} failed ({row['failure']['kind']}): {row['failure']['example']}",
                style="red",
                markup=False,
            )
    extracted = result["extracted"]
    verdict = "[green]correct[/green]" if result["correct"] else "[red]incorrect[/red]"
    console.print(f"extracted answer: {extracted!r}   gold: {args.answer!r}   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
