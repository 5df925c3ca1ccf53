"""The memory estimator: its physics, the published figures, fit advice and the preset choice.

No GPU is needed: the activation term is checked against what autograd really saves
(saved-tensor hooks on a small Qwen2 on the CPU), and the totals against the memory
figures the recipes published, each under the settings it was measured with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_tui.engine.plan import memory as me
from grpo_tui.engine.config import load_config
from grpo_tui.engine.gpu import visible_gpus
from grpo_tui.engine.plan.memory import GiB, KNOWN_ARCHS, choose_preset, estimate, fit_advice, lookup_arch
from grpo_tui.tui.console.presets import main as presets_main


def within(value: float, target: float, tol: float = 0.25) -> bool:
    return abs(value - target) <= tol * target


# ------------------------------------------------------------ architecture table

@pytest.mark.parametrize("key", sorted(KNOWN_ARCHS))
def test_param_formula_matches_the_model_cards(key):
    arch = KNOWN_ARCHS[key]
    assert arch.params == arch.published_params


@pytest.mark.parametrize("name,key", [("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b"),
                                      ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
                                      ("qwen2.5-3b", "qwen2.5-3b"),
                                      ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
                                      ("smollm2-135m-instruct", "smollm2-135m")])
def test_hub_ids_resolve_to_the_table(name, key):
    assert lookup_arch(name) == KNOWN_ARCHS[key]


def test_local_config_json_is_read(tmp_path):
    a = KNOWN_ARCHS["qwen2.5-1.5b"]
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": a.hidden, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "intermediate_size": a.intermediate,
        "vocab_size": a.vocab, "tie_word_embeddings": a.tied}))
    local = lookup_arch(str(tmp_path))
    assert local.params == a.params
    cfg = load_config("gpu24-qwen15b-ckpt", [f'model.name="{tmp_path}"'])
    assert estimate(cfg).peak_gb == pytest.approx(estimate(load_config("gpu24-qwen15b-ckpt")).peak_gb)
    # a LoRA checkpoint directory names its base model
    lora_dir = tmp_path / "adapter"
    lora_dir.mkdir()
    (lora_dir / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct"}))
    assert lookup_arch(str(lora_dir)) == a


def test_unknown_hub_model_is_not_guessed():
    cfg = load_config("gpu24-qwen05b-g16", ['model.name="someorg/Mystery-9B"'])
    est = estimate(cfg)
    assert est.peak_gb is None and "unknown model size" in est.unknown
    assert est.fits(24) is None
    assert "unknown model size" in fit_advice(cfg, 24)[0]


# ------------------------------------------------------------ the activation term, measured

def _saved_bytes_per_token_layer(lora: bool) -> tuple[float, object]:
    """Bytes autograd saves per token per decoder layer (2-layer minus 1-layer model), on the CPU."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    h, i, B, T = 128, 352, 2, 64
    arch = me.Arch("probe", h, 0, 4, 2, i, 256, True, qkv_bias=True)

    def saved(layers: int) -> int:
        torch.manual_seed(0)
        cfg = Qwen2Config(hidden_size=h, intermediate_size=i, num_hidden_layers=layers, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True)
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).train()
        if lora:
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0,
                                                     target_modules=list(me.ALL_LINEAR), task_type="CAUSAL_LM"))
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        ids = torch.randint(0, 256, (B, T))
        mask = torch.ones(B, T, dtype=torch.long)
        mask[0, :5] = 0  # left padding, as GRPO batches have
        backbone = model.get_base_model().model if lora else model.model
        embeds = backbone.embed_tokens(ids).detach().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=lora):
            backbone(inputs_embeds=embeds, attention_mask=mask)
        return sum(n for ptr, n in storages.items() if ptr not in params)

    return (saved(2) - saved(1)) / (B * T), arch


def test_activation_formula_matches_autograd():
    measured, a = _saved_bytes_per_token_layer(lora=False)
    e = 2
    formula = 8 * a.hidden + 4 * e * a.hidden + 4 * e * a.q_dim + 4 * e * a.intermediate
    assert within(measured, formula, 0.10), (measured, formula)


def test_lora_activation_extra_is_bounded_by_the_estimate():
    base, a = _saved_bytes_per_token_layer(lora=False)
    with_lora, _ = _saved_bytes_per_token_layer(lora=True)
    extra_per_feature = (with_lora - base) / a.lora_in_features(list(me.ALL_LINEAR))
    # the estimator charges 1.0 B per adapted input feature under autocast without dropout
    assert 0.3 <= extra_per_feature <= 1.0, extra_per_feature


# ------------------------------------------------------------ published figures

def test_recipe_001_qwen05b_g16_about_17gb():
    """Seed 001: 16 completions per micro-batch (TRL 0.14 sampled G per prompt), ~17 GB on a 3090.

    TRL 0.14 kept logits for the completion positions, up-cast to fp32 by accelerate,
    and a per-row fp32 log-softmax. The shipped preset on TRL 1.16 (chunked head) is
    held to the same figure.
    """
    cfg = load_config("gpu24-qwen05b-g16")
    as_measured = estimate(cfg, 24, logits="materialized", logits_positions="completion")
    shipped = estimate(cfg, 24)
    assert within(as_measured.peak_gb, 17.0), as_measured.peak_gb
    assert within(shipped.peak_gb, 17.0), shipped.peak_gb
    assert shipped.fits(24)


def test_recipe_004_qwen05b_b8g8_about_18gb():
    """Seed 004: batch 8, G=8 on TRL 0.15-0.16, 18 GB on a 4090.

    Reproduced only when its transformers (<= 4.48) ignored TRL's `logits_to_keep`, so
    the fp32 logits covered prompt and completion. With completion-only logits the same
    physics gives ~12 GB, and the shipped preset on TRL 1.16 ~11 GB: 8 completions per
    micro-batch need less than the 16 of recipe 001, whatever the write-up says.
    """
    cfg = load_config("gpu24-qwen05b-b8g8")
    as_measured = estimate(cfg, 24, logits="materialized", logits_positions="sequence")
    assert within(as_measured.peak_gb, 18.0), as_measured.peak_gb
    shipped = estimate(cfg, 24)
    assert shipped.peak_gb < estimate(load_config("gpu24-qwen05b-g16"), 24).peak_gb
    assert shipped.fits(24)


def test_recipe_003_qwen7b_qlora_about_9_4gb():
    """Seed 003 (Unsloth): 4-bit 7B, LoRA r=32 without dropout, checkpointing, paged 8-bit AdamW, G=6.

    Measured with fp16 autocast (same byte sizes as bf16) and without peft's fp32 up-cast
    of the embeddings, which Unsloth skips. Both logits paths stay within the band.
    """
    cfg = load_config("gpu16-qwen7b-qlora", ['model.dtype="bfloat16"', "train.bf16=true"])
    for logits in ("materialized", "fused"):
        est = estimate(cfg, 16, kbit_upcast=False, logits=logits)
        assert within(est.peak_gb, 9.2) and within(est.peak_gb, 9.6), (logits, est.peak_gb)
    # grpo-tui's own engine up-casts embeddings and head to fp32 and has no fp16 autocast: more, still fits a T4
    shipped = estimate(load_config("gpu16-qwen7b-qlora"), 15)
    assert shipped.peak_gb > est.peak_gb and shipped.fits(15)


# ------------------------------------------------------------ terms behave physically

def test_terms_move_the_right_way():
    base = load_config("gpu24-qwen05b-g16")
    e0 = estimate(base, 24)
    ckpt = estimate(load_config("gpu24-qwen05b-g16", ["model.gradient_checkpointing=true"]), 24)
    assert ckpt.term("activations") < e0.term("activations") / 5
    no_ref = estimate(load_config("gpu24-qwen05b-g16", ["train.beta=0.0"]), 24)
    assert e0.term("reference model") == pytest.approx(KNOWN_ARCHS["qwen2.5-0.5b"].params * 2 / GiB)
    assert no_ref.term("reference model") == 0
    longer = estimate(load_config("gpu24-qwen05b-g16", ["train.max_completion_length=400"]), 24)
    assert longer.term("activations") > e0.term("activations")
    lora = estimate(load_config("gpu24-qwen05b-g16", ["model.lora=true"]), 24)
    assert lora.term("optimizer states") < e0.term("optimizer states") / 20
    assert lora.term("reference model") == 0  # adapters off = reference
    eight = estimate(load_config("gpu24-qwen05b-g16", ['train.optim="paged_adamw_8bit"']), 24)
    assert eight.term("optimizer states") == pytest.approx(e0.term("optimizer states") / 2)
    # the old, materialised logits are the big term the chunked head removed
    assert estimate(base, 24, logits="materialized").term("log-prob head") > 3 * e0.term("log-prob head")


def test_vllm_reservation_scales_with_the_card():
    cfg = load_config("gpu80-qwen7b-lora")
    on80 = estimate(cfg, 80)
    assert on80.vllm_gb == pytest.approx(0.3 * 80) and on80.fits(80)
    assert estimate(cfg, 80, vllm_available=False).peak_gb == pytest.approx(on80.peak_gb - 24, abs=0.01)
    small = estimate(cfg, 40)
    assert small.vllm_problem and "weights" in small.vllm_problem and not small.fits(40)


def test_cpu_presets_are_estimated_as_ram():
    est = estimate(load_config("tiny"))
    assert est.device == "cpu" and est.peak_gb < 1 and est.term("CUDA context") == 0
    assert est.fits(24) is None


# ------------------------------------------------------------ advice

def test_a_preset_that_cannot_fit_gets_a_warning_with_changes_that_work():
    cfg = load_config("gpu24-qwen05b-g16")
    lines = fit_advice(cfg, 12)
    assert lines and "12 GB" in lines[0] and "run out of memory" in lines[0]
    text = "\n".join(lines)
    assert "gradient checkpointing" in text and "--set model.gradient_checkpointing=true" in text
    # every suggested --set list loads and the ones marked "fits" do fit
    for line in lines[1:]:
        sets = [tok for tok in line.split() if "=" in tok and "." in tok.split("=")[0]]
        if not sets:
            continue
        est = estimate(load_config("gpu24-qwen05b-g16", sets), 12)
        if line.rstrip().endswith("(fits)"):
            assert est.fits(12), line
    assert fit_advice(cfg, 24) == []


def test_advice_combines_changes_when_one_is_not_enough():
    lines = fit_advice(load_config("gpu80-qwen15b-g16"), 12)
    assert any(line.strip().startswith("together:") for line in lines), lines
    assert any(w in "\n".join(lines) for w in ("LoRA", "completion length", "checkpointing"))


# ------------------------------------------------------------ choosing a preset

def test_choose_preset_without_gpu_is_the_cpu_demo():
    name, reason = choose_preset(None)
    assert name == "cpu-demo" and "no CUDA GPU" in reason


@pytest.mark.parametrize("gb,expected", [(23.6, "gpu24-qwen05b-g16-vllm"), (39.4, "gpu40-qwen15b-full"),
                                         (47.5, "gpu40-qwen15b-full"), (79.1, "gpu80-qwen7b-lora")])
def test_choose_preset_picks_the_class_of_the_card(gb, expected, monkeypatch):
    from grpo_tui.engine import preflight
    monkeypatch.setattr(preflight, "installed", lambda module: True)  # every optional package present
    name, reason = choose_preset(gb)
    assert name == expected, reason
    assert name in reason and "GB" in reason


def test_choose_preset_on_a_t4_depends_on_bitsandbytes(monkeypatch):
    from grpo_tui.engine import preflight
    monkeypatch.setattr(preflight, "installed", lambda module: False)
    name, reason = choose_preset(14.75)
    assert name == "cpu-demo" and "bitsandbytes" in reason
    monkeypatch.setattr(preflight, "installed", lambda module: module == "bitsandbytes")
    assert choose_preset(14.75)[0] == "gpu16-qwen7b-qlora"
    assert choose_preset(6.0)[0] == "cpu-demo"


def test_visible_gpus_shape():
    found = visible_gpus()
    assert found is None or (found.count >= 1 and isinstance(found.name, str) and found.total_gib > 0)


# ------------------------------------------------------------ the CLI

def test_presets_table_marks_fits(capsys):
    assert presets_main(["--gpu-mem", "24"]) == 0
    out = capsys.readouterr().out
    for name in ("gpu24-qwen05b-g16", "gpu16-qwen7b-qlora", "gpu80-qwen7b-r1-grpo", "cpu-demo", "tiny"):
        assert name in out
    assert "yes" in out and "no" in out and "cpu" in out


def test_presets_explain_and_warning(capsys):
    assert presets_main(["--gpu-mem", "16", "--explain", "gpu24-qwen05b-g16"]) == 0
    out = capsys.readouterr().out
    assert "activations" in out and "warning" in out and "--set" in out
    assert presets_main(["--explain", "no-such-preset"]) == 2


def test_estimator_imports_neither_torch_nor_textual():
    code = ("import sys, engine.plan.memory, tui.console.presets; "
            "bad = [m for m in ('torch', 'textual', 'transformers') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0
