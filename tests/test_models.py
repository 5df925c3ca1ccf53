"""Model loading: the offline SmolLM2's one-time GGUF conversion reports its progress, size and time; CPU threads;
shape-true random models."""

from __future__ import annotations

import time

import pytest

from grpo_tui.engine.models import SMOLLM2, _ProgressLog, ensure_smollm2


def test_progress_log_reports_each_tenth_with_a_bar():
    lines: list[str] = []
    items = list(_ProgressLog(lines.append, "dequantizing x.gguf", time.time())(range(272), desc="ignored"))
    assert items == list(range(272))
    assert 10 <= len(lines) <= 11
    assert lines[-1].startswith("dequantizing x.gguf [####################] 272/272 tensors")
    assert any("[##########----------] 136/272" in ln for ln in lines)


@pytest.mark.slow
def test_conversion_into_an_empty_cache_logs_progress_size_and_time(tmp_path, monkeypatch):
    monkeypatch.setenv("GRPO_TUI_CACHE", str(tmp_path))
    lines: list[str] = []
    out = ensure_smollm2(lines.append)
    assert out == tmp_path / SMOLLM2 and (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert lines[0].startswith("Converting SmolLM2-135M-Instruct.Q4_1.gguf (") and " MB) to safetensors" in lines[0]
    assert sum("tensors" in ln and "[" in ln for ln in lines) >= 10
    assert lines[-1].startswith("converted SmolLM2-135M-Instruct.Q4_1.gguf") and " MB) in " in lines[-1]
    n = len(lines)
    assert ensure_smollm2(lines.append) == out and len(lines) == n  # cached: converted once


def test_pick_threads_fixed_auto_and_gpu(monkeypatch):
    import torch

    import grpo_tui.engine.models as models

    before = torch.get_num_threads()
    try:
        assert models.pick_threads(1, "cpu") == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(4)
        monkeypatch.setattr(models, "busy_cores", lambda: 2.6)
        assert models.pick_threads(0, "cpu") == 1 and torch.get_num_threads() == 1  # 4 cores, ~3 busy
        torch.set_num_threads(4)
        monkeypatch.setattr(models, "busy_cores", lambda: 0.2)
        assert models.pick_threads(0, "cpu") == 4
        monkeypatch.setattr(models, "busy_cores", lambda: 40.0)
        assert models.pick_threads(0, "cpu") == 1  # never below one
        torch.set_num_threads(3)
        assert models.pick_threads(0, "cuda") is None and torch.get_num_threads() == 3  # GPU: torch's default stays
    finally:
        torch.set_num_threads(before)


def test_busy_cores_sees_a_spinning_process_now():
    """Measured over a fraction of a second, not the lagging 1-minute load average."""
    import subprocess
    import sys

    from grpo_tui.engine.models import busy_cores

    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores() >= 0.7
    finally:
        spin.kill()
        spin.wait()


def test_negative_torch_threads_is_a_preset_error():
    from grpo_tui.engine.config import PresetError, load_config

    with pytest.raises(PresetError, match="torch_threads"):
        load_config("tiny", ["train.torch_threads=-1"])


@pytest.mark.parametrize("model_type,head_dim,tied", [("qwen2", None, True), ("qwen3", 32, False)])
def test_random_model_has_the_class_and_shape_asked_for(tmp_path, model_type, head_dim, tied):
    """save_random_model builds the published class (Qwen3: per-head q/k norms, heads wider than hidden/heads),
    and the memory estimator reads the saved directory back as that shape."""
    from grpo_tui.engine.models import save_random_model
    from grpo_tui.engine.plan.model_source import resolve_arch

    out = save_random_model(
        tmp_path / model_type,
        model_type=model_type,
        hidden=64,
        layers=2,
        heads=4,
        kv_heads=2,
        intermediate=128,
        tied=tied,
        head_dim=head_dim,
        small_tokenizer=True,
        log=lambda m: None,
    )
    arch = resolve_arch(str(out))
    assert (arch.model_type, arch.tied, arch.qk_norm) == (model_type, tied, model_type == "qwen3")
    assert arch.head_dim == (head_dim or 64 // 4) and arch.layers == 2 and arch.mlp_width == 128
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == f"{model_type.capitalize()}ForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == arch.params
