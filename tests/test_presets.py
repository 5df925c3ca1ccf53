"""Every shipped preset is checked here: it loads, its rewards exist, its batch divides,
its dtype suits its device, and a GPU preset fits the card it is made for."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from grpo_tui.engine.config import list_presets, load_config, preset_dir
from grpo_tui.engine.plan.memory import HEADROOM, estimate
from grpo_tui.engine.rewards import REWARDS, resolve_reward

REWARD_NAMES = set(REWARDS)

PRESETS = list_presets()
CPU_PRESETS = {"cpu-demo", "tiny"}  # the lead's; checked here like the rest
GPU_PRESETS = [p for p in PRESETS if p not in CPU_PRESETS]
FIVE = {"correctness": 1.0, "int_answer": 1.0, "strict_format": 1.0, "soft_format": 1.0, "xmlcount": 1.0}
# What a card of each class reports (GiB), as torch / nvidia-smi show it.
CARD_GIB = {16: 14.75, 24: 23.6, 40: 39.4, 48: 47.5, 80: 79.1}
# Presets whose expected_peak_gb is a published measurement, not our estimate
# (compared with the estimator in tests/test_memory_estimate.py).
PUBLISHED = {"gpu24-qwen05b-g16", "gpu24-qwen05b-b8g8", "gpu16-qwen7b-qlora", "gpu16-qwen7b-qlora-zh"}
# Presets that train on another hub dataset than GSM8K (checked in test_chinese_gsm8k_preset).
HUB_DATASET_PRESETS = {"gpu16-qwen7b-qlora-zh"}


def test_the_issue_presets_are_shipped():
    assert {
        "gpu24-qwen05b-g16",
        "gpu24-qwen05b-b8g8",
        "gpu24-qwen15b-ckpt",
        "gpu16-qwen7b-qlora",
        "gpu40-qwen15b-full",
        "gpu40-qwen3b-lora",
        "gpu80-qwen7b-lora",
        "gpu80-qwen15b-g16",
        "gpu80-qwen7b-r1-grpo",
    } <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_is_consistent(name):
    cfg = load_config(name)
    t, m = cfg.train, cfg.model
    spg = t.steps_per_generation or t.gradient_accumulation_steps
    assert (t.per_device_train_batch_size * spg) % t.num_generations == 0
    assert cfg.preset.description
    # rewards exist, and their options are ones the reward takes
    for reward, options in cfg.reward_options().items():
        assert reward in REWARD_NAMES, f"{name}: unknown reward {reward}"
        resolve_reward(reward, options or None, cfg.base_dir)
    # dtype and quantization suit the device class
    if m.dtype in ("bfloat16", "float16") or m.load_in_4bit:
        assert cfg.preset.device == "gpu", f"{name}: {m.dtype}/4-bit needs device = 'gpu'"
    if cfg.preset.device == "cpu":
        assert m.dtype in ("float32", "auto") and not m.load_in_4bit and not t.use_vllm
    if m.load_in_4bit:
        assert m.lora and "8bit" in t.optim
    if t.use_vllm:
        assert t.vllm_mode == "colocate" and 0 < t.vllm_gpu_memory_utilization < 1


@pytest.mark.parametrize("name", GPU_PRESETS)
def test_gpu_preset_names_its_recipe_and_memory(name):
    cfg = load_config(name)
    p, n = cfg.preset, cfg.distributed.num_processes
    assert p.device == "gpu" and p.recipe and p.expected_peak_gb and p.min_gpu_gb
    # one-GPU presets are gpu<GB>-..., multi-GPU ones gpu<GB>x<GPUs>-... (memory is per GPU)
    assert name.startswith(f"gpu{int(p.min_gpu_gb)}-" if n == 1 else f"gpu{int(p.min_gpu_gb)}x{n}-")


@pytest.mark.parametrize("name", GPU_PRESETS)
def test_gpu_preset_fits_the_card_it_is_made_for(name):
    cfg = load_config(name)
    card = CARD_GIB[int(cfg.preset.min_gpu_gb)]
    est = estimate(cfg, card)
    assert est.peak_gb is not None and est.vllm_problem is None
    assert est.fits(card), f"{name}: {est.peak_gb:.1f} GB > {card * (1 - HEADROOM):.1f} GB usable"


@pytest.mark.parametrize("name", [n for n in GPU_PRESETS if n not in PUBLISHED])
def test_expected_peak_is_the_current_estimate(name):
    cfg = load_config(name)
    est = estimate(cfg)  # at min_gpu_gb, which sizes the vLLM reservation
    assert est.peak_gb == pytest.approx(cfg.preset.expected_peak_gb, rel=0.05), est.peak_gb


def test_gsm8k_presets_use_the_hub_dataset():
    for name in GPU_PRESETS:
        if name in HUB_DATASET_PRESETS:
            continue
        d = load_config(name).data
        assert d.source == "gsm8k" and not d.data_files


def test_chinese_gsm8k_preset():
    cfg = load_config("gpu16-qwen7b-qlora-zh")
    d = cfg.data
    assert (d.source, d.dataset, d.question_field, d.answer_field, d.gold_format) == (
        "hub",
        "swulling/gsm8k_chinese",
        "question_zh-cn",
        "answer_only",
        "number",
    )
    assert not d.data_files and "<answer>" in cfg.prompt.system_prompt and "采用" in cfg.prompt.system_prompt
    base = load_config("gpu16-qwen7b-qlora")
    assert cfg.model == base.model and cfg.train == base.train and cfg.rewards == base.rewards


@pytest.mark.parametrize("name", ["gpu24-qwen05b-g16", "gpu24-qwen05b-b8g8"])
def test_qwen05b_recipe(name):
    cfg = load_config(name)
    t = cfg.train
    assert cfg.model.name == "Qwen/Qwen2.5-0.5B-Instruct" and not cfg.model.lora
    assert cfg.reward_weights() == FIVE
    assert (t.learning_rate, t.lr_scheduler_type, t.warmup_ratio) == (5e-6, "cosine", 0.1)
    assert (t.max_completion_length, t.max_grad_norm, t.bf16, cfg.model.dtype) == (200, 0.1, True, "bfloat16")
    expected = {"gpu24-qwen05b-g16": (16, 16, 4), "gpu24-qwen05b-b8g8": (8, 8, 4)}[name]
    assert (t.num_generations, t.per_device_train_batch_size, t.gradient_accumulation_steps) == expected


def test_b8g8_extends_g16():
    raw = tomllib.loads((preset_dir() / "gpu24-qwen05b-b8g8.toml").read_text())
    assert raw["extends"] == "gpu24-qwen05b-g16"
    a, b = load_config("gpu24-qwen05b-g16"), load_config("gpu24-qwen05b-b8g8")
    assert a.model == b.model and a.rewards == b.rewards and b.preset.name == "gpu24-qwen05b-b8g8"


def test_qwen15b_on_24gb():
    cfg = load_config("gpu24-qwen15b-ckpt")
    t = cfg.train
    assert cfg.model.gradient_checkpointing and not cfg.model.lora
    assert (t.num_generations, t.per_device_train_batch_size, t.max_completion_length, t.epsilon) == (4, 4, 128, 0.2)


def test_qwen7b_qlora_on_t4():
    cfg = load_config("gpu16-qwen7b-qlora")
    m, t = cfg.model, cfg.train
    assert m.load_in_4bit and m.lora and m.lora_r == 32 and m.dtype == "float16" and t.bf16 is False
    assert set(m.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (t.num_generations, t.max_steps, t.optim) == (6, 250, "paged_adamw_8bit")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert any(d.startswith("bitsandbytes") for d in pyproject["project"]["optional-dependencies"]["quant"])


def test_two_stage_r1_grpo_stage():
    cfg = load_config("gpu80-qwen7b-r1-grpo")
    t = cfg.train
    assert (t.num_generations, t.beta, t.learning_rate, t.max_steps) == (4, 0.04, 5e-7, 1000)
    assert cfg.prompt.format == "think"
    assert cfg.rewards["length_penalty"] == {"weight": 1.0, "min_tokens": 500, "max_tokens": 800}
    assert "think_format" in cfg.rewards and t.max_completion_length > 800
    assert "TODO" not in cfg.preset.recipe and "SFT" in cfg.preset.recipe and cfg.sft.enabled


def test_bigger_cards_get_bigger_models_or_groups():
    assert load_config("gpu40-qwen15b-full").model.name.endswith("1.5B-Instruct")
    assert load_config("gpu40-qwen3b-lora").model.lora
    assert load_config("gpu80-qwen7b-lora").model.lora
    assert load_config("gpu80-qwen15b-g16").train.num_generations == 16


QWEN3 = {"0.6B": "gpu24-qwen3-06b", "1.7B": "gpu24-qwen3-17b", "4B": "gpu40-qwen3-4b", "8B": "gpu80-qwen3-8b"}


@pytest.mark.parametrize("size,stem", sorted(QWEN3.items()))
def test_qwen3_presets_switch_thinking_through_the_chat_template(size, stem, tmp_path):
    """Each Qwen3 size ships thinking on and off; the switch reaches TRL's GRPOConfig as chat_template_kwargs,
    and the prompt format and rewards read what that mode writes."""
    from grpo_tui.engine.train.grpo_args import grpo_args

    think, plain = load_config(f"{stem}-think"), load_config(f"{stem}-nothink")
    for cfg, on in ((think, True), (plain, False)):
        assert cfg.model.name == f"Qwen/Qwen3-{size}"
        assert cfg.train.trl_extra["chat_template_kwargs"] == {"enable_thinking": on}
        assert grpo_args(cfg, tmp_path, "cpu").chat_template_kwargs == {"enable_thinking": on}
    assert think.prompt.format == "think" and {"correctness_think", "think_format"} <= set(think.rewards)
    assert plain.prompt.format == "reasoning" and "correctness" in plain.rewards
    assert not {"correctness_think", "think_format"} & set(plain.rewards)
    assert think.train.max_completion_length > plain.train.max_completion_length  # thinking needs room
    assert think.model == plain.model
