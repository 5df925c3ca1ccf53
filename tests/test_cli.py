"""The `grpo-tui` front door: --version, the commands in --help, one definition of the train flags."""

from __future__ import annotations

import argparse
from importlib.metadata import version

from support.processes import run_grpo_tui

from grpo_tui.engine.run import build_parser
from grpo_tui.tui.cli import COMMANDS, SUBCOMMANDS, main, train_parser


def test_version_comes_from_the_installed_metadata(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"grpo-tui {version('grpo-tui')}"


def test_help_lists_every_command_outside_the_epilog():
    parser = train_parser()
    assert parser.epilog is None
    text = parser.format_help()
    for name in SUBCOMMANDS:
        assert f"\n  {name} " in text, name
    assert set(SUBCOMMANDS) == set(COMMANDS)


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: a for a in parser._actions for opt in a.option_strings}


def test_ui_and_engine_share_the_train_flags():
    engine = build_parser()
    train = next(a for a in engine._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    ui, eng = _flags(train_parser()), _flags(train)
    shared = ["--preset", "--config", "--run-dir", "--max-steps", "--set", "--resume", "--restart", "--device"]
    for flag in shared:
        assert ui[flag].dest == eng[flag].dest and ui[flag].type == eng[flag].type, flag
        assert ui[flag].choices == eng[flag].choices and ui[flag].help.split(";")[0] == eng[flag].help.split(";")[0]
    assert eng["--run-dir"].required and not ui["--run-dir"].required
    assert ui["--config"].dest == "preset"  # a recipe is read wherever a preset is


def test_rewards_help_shows_ui_and_answer_not_required():
    proc = run_grpo_tui(["rewards", "--help"], timeout=120)
    assert proc.returncode == 0 and "--ui" in proc.stdout, proc.stdout
    usage = proc.stdout.split("\n\n")[0]
    assert "[--answer ANSWER]" in usage  # optional in the usage line: --ui runs without it
    proc = run_grpo_tui(["rewards"], timeout=120)
    assert proc.returncode == 2 and "--answer" in proc.stderr
