"""`grpo-tui export RUN[@STEP] --out DIR [--adapter] [--push-to-hub ID]`: the command line of engine/export.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpo_tui.engine.export import ExportError, export_model, push_to_hub
from grpo_tui.rundir.errors import EXIT_OK, EXIT_USAGE
from grpo_tui.tui.text import say  # messages name run paths: their escapes are shown, never run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpo-tui export",
        description="Export a run's checkpoint as a transformers model (LoRA merged) or a "
        "LoRA adapter, with tokenizer, generation config and a model card.",
    )
    p.add_argument("run", metavar="RUN_DIR[@STEP]", help="a run directory; @STEP picks a checkpoint (default latest)")
    p.add_argument("--out", type=Path, required=True, help="new (or empty) output directory")
    p.add_argument("--adapter", action="store_true", help="keep the LoRA adapter instead of merging it")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload DIR to this hub model repo (private)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.push_to_hub:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # say it before minutes of merging, not after
            print(
                f"error: --push-to-hub {args.push_to_hub}: the hub is switched off here (HF_HUB_OFFLINE=1); "
                "export without --push-to-hub and upload later with `hf upload`.",
                file=sys.stderr,
            )
            return EXIT_USAGE

    try:
        out = export_model(args.run, args.out, args.adapter, log=say)
        say(f"exported {args.run} to {out}" + (" (LoRA adapter)" if args.adapter else ""))
        if args.push_to_hub:
            say(f"pushed to {push_to_hub(out, args.push_to_hub)}")
    except ExportError as e:
        say(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
