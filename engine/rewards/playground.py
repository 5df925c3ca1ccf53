"""Reward playground: score one completion with every reward of a preset.

    grpo-tui rewards --answer 72 --completion out.txt [--preset P] [--format think]
    echo '<reasoning>...' | grpo-tui rewards --answer 72

Prints each reward's score, its weight and weighted score, the total, the
extracted answer and the correct/incorrect judgment (rich, no Textual).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .builtin import GSM8K_RECIPE, THINK_RECIPE
from .extract import PROMPT_FORMATS, extract_answer, is_correct
from .guard import guard
from .spec import RewardSpecError, resolve_reward


EXAMPLE_COMPLETION = "<reasoning>\n3 apples plus 4 apples make 7 apples.\n</reasoning>\n<answer>\n7\n</answer>"


def _split(entry: Any, name: str) -> tuple[float, dict]:
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        return float(entry), {}
    if isinstance(entry, dict):
        options = {k: v for k, v in entry.items() if k != "weight"}
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise RewardSpecError(f"reward {name!r}: weight must be a number, got {weight!r}")
        return float(weight), options
    raise RewardSpecError(f"reward {name!r}: expected a weight or a table with 'weight' and options, got {entry!r}")


def default_rewards(prompt_format: str) -> dict[str, float]:
    names = THINK_RECIPE if prompt_format == "think" else GSM8K_RECIPE
    return {n: 1.0 for n in names}


def score_completion(
    text: str,
    gold: str,
    rewards: dict[str, float | dict] | None = None,
    prompt_format: str = "reasoning",
    base_dir: Path | None = None,
    completion_ids: list[int] | None = None,
) -> dict:
    """Score one completion. ``rewards`` maps a spec to a weight or {weight, **options}.

    Returns {"rewards": [{"name", "score", "weight", "weighted", "failure"}...],
    "scores": {name: score}, "weighted": {name: weighted}, "total",
    "extracted", "correct"}. Spec errors raise RewardSpecError; a reward that
    fails at run time scores 0 and its failure is in its row.
    """
    if prompt_format not in PROMPT_FORMATS:
        raise RewardSpecError(f"prompt format {prompt_format!r}: expected one of {', '.join(PROMPT_FORMATS)}")
    rewards = default_rewards(prompt_format) if rewards is None else rewards
    rows = []
    kwargs: dict[str, Any] = {"prompt_format": prompt_format}
    if completion_ids is not None:
        kwargs["completion_ids"] = [completion_ids]
    for name, entry in rewards.items():
        weight, options = _split(entry, name)
        fn = guard(resolve_reward(name, options, base_dir), name)
        score = fn([""], [text], [gold], **kwargs)[0]
        failures = fn.drain_failures()
        rows.append(
            {
                "name": name,
                "score": score,
                "weight": weight,
                "weighted": score * weight,
                "failure": failures[0] if failures else None,
            }
        )
    extracted = extract_answer(text, prompt_format)
    return {
        "rewards": rows,
        "scores": {r["name"]: r["score"] for r in rows},
        "weighted": {r["name"]: r["weighted"] for r in rows},
        "total": sum(r["weighted"] for r in rows),
        "extracted": extracted,
        "correct": is_correct(extracted, gold),
        "prompt_format": prompt_format,
    }


def _load_preset(name_or_path: str):
    try:
        from engine.config import load_preset  # written alongside; may not exist yet
    except ImportError as e:
        raise RewardSpecError(
            f"--preset needs engine.config.load_preset, which is not available ({e}); pass --reward NAME[=WEIGHT] instead"
        ) from e
    try:
        preset = load_preset(name_or_path)
    except Exception as e:  # noqa: BLE001 - PresetError and friends: report, don't trace back
        raise RewardSpecError(str(e)) from e
    rewards = getattr(preset, "rewards", None)
    if not isinstance(rewards, dict):
        raise RewardSpecError(f"preset {name_or_path!r} has no rewards table")
    prompt = getattr(preset, "prompt", None)
    fmt = getattr(prompt, "format", None) if prompt is not None else None
    base_dir = None
    for attr in ("base_dir", "path", "source", "source_path"):
        v = getattr(preset, attr, None)
        if v:
            p = Path(v)
            base_dir = p if p.is_dir() else p.parent
            break
    if base_dir is None and Path(name_or_path).suffix == ".toml":
        base_dir = Path(name_or_path).resolve().parent
    return dict(rewards), fmt, base_dir


def _parse_reward_arg(s: str) -> tuple[str, float]:
    if "=" in s:
        name, w = s.rsplit("=", 1)
        try:
            return name, float(w)
        except ValueError:
            raise RewardSpecError(f"--reward {s!r}: the weight after '=' must be a number") from None
    return s, 1.0


def _fmt(x: float) -> str:
    return f"{x:+.4f}".rstrip("0").rstrip(".") if x else "0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="grpo-tui rewards",
        description="Score one completion with each reward function; prints scores, weighted total and the extracted answer.",
    )
    parser.add_argument("--answer", required=True, help="the gold answer")
    parser.add_argument("--completion", default="-", help="file with the completion text, or - for stdin (default)")
    parser.add_argument("--preset", help="preset name or path: use its rewards, weights and prompt format")
    parser.add_argument("--format", choices=PROMPT_FORMATS, help="prompt format (default: the preset's, else reasoning)")
    parser.add_argument(
        "--reward", action="append", default=[], metavar="NAME[=WEIGHT]",
        help="score with this reward (repeatable; built-in name or file.py:function); default: the recipe's set",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

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
    except RewardSpecError as e:
        err.print(f"error: {e}", style="red", markup=False)
        return 2

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
        table.add_row(name, _fmt(row["score"]), f"{row['weight']:g}", _fmt(row["weighted"]))
    table.add_section()
    table.add_row("[b]total[/b]", "", "", f"[b]{_fmt(result['total'])}[/b]")
    console.print(table)
    for row in result["rewards"]:
        if row["failure"]:
            console.print(f"{row['name']} failed ({row['failure']['kind']}): {row['failure']['example']}", style="red", markup=False)
    extracted = result["extracted"]
    verdict = "[green]correct[/green]" if result["correct"] else "[red]incorrect[/red]"
    console.print(f"extracted answer: {extracted!r}   gold: {args.answer!r}   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
