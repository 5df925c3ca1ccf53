"""Shared fixtures. Nothing here may reach the network: the hub is off in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Set before anything imports transformers/datasets, so nothing waits on the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def random_qwen2(vocab_size: int, hidden_size: int, intermediate_size: int, layers: int, seed: int = 0):
    """A Qwen2 causal LM with random weights (4 heads, 2 KV heads, tied embeddings): any size, no download."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return Qwen2ForCausalLM(config)


def run_cli(args: list[str], timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <args>` in a child process, as a user would, with the test environment."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def write_preset(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def test_preset(tmp_path_factory) -> Path:
    """The tiny preset plus a user reward that varies (so advantages are non-zero) and one that crashes."""
    d = tmp_path_factory.mktemp("preset")
    return write_preset(
        d / "tiny-test.toml",
        f"""
extends = "tiny"
[rewards]
correctness = 1.0
xmlcount = 1.0
"{FIXTURES / "user_rewards.py"}:distinct_chars" = 1.0
"{FIXTURES / "user_rewards.py"}:crashy" = 0.5
""",
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, test_preset) -> tuple[Path, subprocess.CompletedProcess, float]:
    """A real 3-step headless run of the tiny preset: (run_dir, process result, seconds)."""
    import time

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    t0 = time.time()
    proc = run_cli(
        [
            "-m",
            "grpo_tui.tui.cli",
            "--no-ui",
            "--preset",
            str(test_preset),
            "--max-steps",
            "3",
            "--run-dir",
            str(run_dir),
        ],
        timeout=300,
    )
    return run_dir, proc, time.time() - t0
