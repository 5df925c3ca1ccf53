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

from grpo_tui.engine.config import load_config
from grpo_tui.engine.gpu import visible_gpus
from grpo_tui.engine.plan import memory as me
from grpo_tui.engine.plan import model_source
from grpo_tui.engine.plan.advice import fit_advice
from grpo_tui.engine.plan.arch import arch_from_model_config, dense_arch
from grpo_tui.engine.plan.memory import GiB, estimate, lookup_arch
from grpo_tui.engine.plan.model_source import FALLBACK_CONFIGS, fallback_arch, resolve_arch
from grpo_tui.engine.preset_choice import choose_preset
from grpo_tui.tui.console.presets import main as presets_main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
MIXTRAL, QWEN3_MOE = FIXTURES / "mixtral-8x7b", FIXTURES / "qwen3-30b-a3b"
# Parameter counts from the model cards (the Qwen3 cards round: 0.6B is 0.596B).
PUBLISHED_PARAMS = {
    "qwen2.5-0.5b": 494_032_768,
    "qwen2.5-1.5b": 1_543_714_304,
    "qwen2.5-3b": 3_085_938_688,
    "qwen2.5-7b": 7_615_616_512,
    "smollm2-135m": 134_515_008,
    "qwen3-0.6b": 0.6e9,
    "qwen3-1.7b": 1.7e9,
    "qwen3-4b": 4.0e9,
    "qwen3-8b": 8.2e9,
}


def within(value: float, target: float, tol: float = 0.25) -> bool:
    return abs(value - target) <= tol * target


@pytest.fixture
def offline_hub(monkeypatch):
    """No config in the Hugging Face cache and no hub: only directories and the fallback table answer."""
    monkeypatch.setattr(model_source, "_cached_hub_config", lambda repo: False)
    monkeypatch.setattr(model_source, "_hub_offline", lambda: True)


# ------------------------------------------------------------ architectures


@pytest.mark.parametrize("key", sorted(FALLBACK_CONFIGS))
def test_fallback_table_counts_as_the_model_cards_say(key):
    published = PUBLISHED_PARAMS[key]
    params = fallback_arch(key).params
    assert params == published if isinstance(published, int) else within(params, published, 0.05)


@pytest.mark.parametrize("key", sorted(FALLBACK_CONFIGS))
def test_fallback_formula_agrees_with_the_meta_device_count(key):
    """The torch-free formula of the offline table gives what transformers builds from the same config."""
    from transformers import AutoConfig

    table = fallback_arch(key)
    counted = arch_from_model_config(AutoConfig.for_model(**FALLBACK_CONFIGS[key]), table.name)
    for field in (
        "params",
        "active_params",
        "quantizable",
        "layer_params",
        "mlp_width",
        "tied",
        "qk_norm",
        "q_dim",
        "kv_dim",
        "layers",
        "vocab",
    ):
        assert getattr(table, field) == getattr(counted, field), field
    assert sorted(map(tuple, map(vars, table.linears))) == sorted(map(tuple, map(vars, counted.linears)))


@pytest.mark.parametrize(
    "name,key",
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
        ("qwen2.5-3b", "qwen2.5-3b"),
        ("Qwen/Qwen3-8B", "qwen3-8b"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
        ("smollm2-135m-instruct", "smollm2-135m"),
    ],
)
def test_shipped_hub_ids_fall_back_to_the_table_offline(name, key, offline_hub):
    assert lookup_arch(name) == fallback_arch(key)


def test_a_cached_config_wins_over_the_table(monkeypatch, tmp_path):
    """A hub id whose config.json is in the local cache is read through AutoConfig, not the table."""
    cfg = dict(FALLBACK_CONFIGS["qwen2.5-0.5b"], num_hidden_layers=2)  # a config the table does not hold
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setattr(model_source, "_cached_hub_config", lambda repo: True)
    real = model_source.arch_from_pretrained.__wrapped__
    monkeypatch.setattr(model_source, "arch_from_pretrained", lambda name, local_only: real(str(tmp_path), local_only))
    arch = resolve_arch("Qwen/Qwen2.5-0.5B-Instruct")
    assert arch.layers == 2 and arch.params < fallback_arch("qwen2.5-0.5b").params


def test_an_unreadable_cached_config_falls_back_to_the_table_for_shipped_ids_only(monkeypatch):
    def unreadable(name, local_only):
        raise model_source.UnknownArch(f"can't read the config of {name!r}")

    monkeypatch.setattr(model_source, "_cached_hub_config", lambda repo: True)
    monkeypatch.setattr(model_source, "arch_from_pretrained", unreadable)
    assert resolve_arch("Qwen/Qwen3-4B") == fallback_arch("qwen3-4b")
    with pytest.raises(model_source.UnknownArch, match="can't read the config"):
        resolve_arch("someorg/Mystery-9B")


def test_a_hub_that_does_not_answer_leaves_the_size_unknown_within_the_bound(monkeypatch):
    import threading
    import time

    release = threading.Event()

    def hanging(name, local_only):  # a black-holed hub: huggingface_hub would retry for minutes
        release.wait(30)
        raise model_source.UnknownArch("gave up")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model_source, "_cached_hub_config", lambda repo: False)
    monkeypatch.setattr(model_source, "arch_from_pretrained", hanging)
    monkeypatch.setattr(model_source, "HUB_LOOKUP_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(model_source.UnknownArch, match=r"did not answer within 0.5 s .*hf download someorg/X-9B"):
            resolve_arch("someorg/X-9B")
        assert time.monotonic() - t0 < 5
        assert lookup_arch("someorg/X-9B") is None
    finally:
        release.set()


def test_a_hub_answer_within_the_bound_is_used(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model_source, "_cached_hub_config", lambda repo: False)
    monkeypatch.setattr(model_source, "arch_from_pretrained", lambda name, local_only: fallback_arch("qwen3-4b"))
    assert resolve_arch("someorg/X-9B") == fallback_arch("qwen3-4b")


def test_local_config_json_is_read_through_transformers(tmp_path, offline_hub):
    (tmp_path / "config.json").write_text(json.dumps(FALLBACK_CONFIGS["qwen2.5-1.5b"]))
    local = lookup_arch(str(tmp_path))
    assert local.params == fallback_arch("qwen2.5-1.5b").params
    cfg = load_config("gpu24-qwen15b-ckpt", [f'model.name="{tmp_path}"'])
    assert estimate(cfg).peak_gb == pytest.approx(estimate(load_config("gpu24-qwen15b-ckpt")).peak_gb)
    # a LoRA checkpoint directory names its base model
    lora_dir = tmp_path / "adapter"
    lora_dir.mkdir()
    (lora_dir / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct"}))
    assert lookup_arch(str(lora_dir)) == fallback_arch("qwen2.5-1.5b")


def test_unknown_hub_model_is_not_guessed(offline_hub):
    cfg = load_config("gpu24-qwen05b-g16", ['model.name="someorg/Mystery-9B"'])
    est = estimate(cfg)
    assert est.peak_gb is None and "unknown model size" in est.unknown and "HF_HUB_OFFLINE" in est.unknown
    assert est.fits(24) is None
    assert "unknown model size" in fit_advice(cfg, 24)[0]


# ------------------------------------------------------------ mixture of experts


@pytest.mark.parametrize(
    "path,total,active,experts", [(MIXTRAL, 46.7e9, 12.9e9, (8, 2)), (QWEN3_MOE, 30.5e9, 3.3e9, (128, 8))]
)
def test_moe_counts_every_expert_and_the_active_ones(path, total, active, experts):
    arch = resolve_arch(str(path))
    assert within(arch.params, total, 0.05) and within(arch.active_params, active, 0.05), arch
    assert (arch.experts, arch.experts_per_token) == experts and arch.is_moe and not arch.tied


def test_moe_weights_count_all_experts_and_activations_the_routed_ones():
    """Mixtral vs a dense model of the same attention and one expert's width: weights x ~6.5, activations x ~2."""
    arch = resolve_arch(str(MIXTRAL))
    dense_cfg = {k: v for k, v in json.loads((MIXTRAL / "config.json").read_text()).items()}
    dense_cfg["model_type"] = "llama"
    dense = dense_arch("dense", dense_cfg)
    assert within(arch.params / dense.params, 46.7 / 7.24, 0.05)
    assert arch.mlp_width == pytest.approx(2 * dense.mlp_width, abs=8)  # two experts per token (+ the router)
    sets = ["model.lora=true", "model.gradient_checkpointing=true"]
    moe = estimate(load_config("gpu24-qwen05b-b8g8", [f'model.name="{MIXTRAL}"', *sets]), 80)
    assert moe.term("weights") == pytest.approx(arch.params * 2 / GiB)
    assert moe.peak_gb > 80 and not moe.fits(80)


def test_presets_model_json_on_moe_configs(capsys):
    assert presets_main(["--model", str(MIXTRAL), "--gpu-mem", "80", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert within(doc["params"], 46.7e9, 0.05) and within(doc["active_params"], 12.9e9, 0.05)
    recipes = {r["recipe"]: r for r in doc["recipes"]}
    assert {"full", "LoRA r32", "LoRA r32 + checkpointing", "QLoRA r32 + checkpointing"} <= set(recipes)
    assert recipes["LoRA r32 + checkpointing"]["fits"] is False and recipes["LoRA r32 + checkpointing"]["peak_gb"] > 80
    assert all(r["peak_gb"] > 0 and r["fits"] is False for r in doc["recipes"])
    assert presets_main(["--model", str(QWEN3_MOE), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert within(doc["params"], 30.5e9, 0.05) and doc["experts"] == 128
    assert all(r["fits"] is None for r in doc["recipes"])  # no card given


def test_presets_model_table_says_what_fits(capsys, offline_hub):
    assert presets_main(["--model", "Qwen/Qwen3-8B", "--gpu-mem", "24"]) == 0
    out = capsys.readouterr().out
    assert "8.19B parameters" in out and "QLoRA r32 + checkpointing" in out and "fits 24 GB:" in out
    fits_line = next(line for line in out.splitlines() if line.startswith("fits 24 GB:"))
    assert "LoRA r32 + checkpointing" in fits_line and "full," not in fits_line
    assert presets_main(["--model", str(MIXTRAL), "--gpu-mem", "80"]) == 0
    assert "none of these fits 80 GB" in capsys.readouterr().out


def test_presets_model_unknown_exits_2(capsys, offline_hub):
    assert presets_main(["--model", "someorg/Mystery-9B", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown model size" in captured.err


# ------------------------------------------------------------ the activation term, measured


def _saved_bytes_per_token_layer(lora: bool, model_type: str = "qwen2") -> tuple[float, object]:
    """Bytes autograd saves per token per decoder layer (2-layer minus 1-layer model), on the CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    h, i, B, T = 128, 352, 2, 64
    shape = {
        "model_type": model_type,
        "hidden_size": h,
        "intermediate_size": i,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "tie_word_embeddings": True,
    }
    if model_type == "qwen3":
        shape["head_dim"] = 32
    arch = dense_arch("probe", {**shape, "num_hidden_layers": 1})

    def saved(layers: int) -> int:
        torch.manual_seed(0)
        cfg = AutoConfig.for_model(**{**shape, "num_hidden_layers": layers})
        model = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).train()
        if lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(
                    r=8, lora_alpha=8, lora_dropout=0.0, target_modules=list(me.ALL_LINEAR), task_type="CAUSAL_LM"
                ),
            )
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
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=lora),
        ):
            backbone(inputs_embeds=embeds, attention_mask=mask)
        return sum(n for ptr, n in storages.items() if ptr not in params)

    return (saved(2) - saved(1)) / (B * T), arch


def _gpu_bf16_step(arch, lora: bool = False):
    """The estimator's Step for `arch` on a GPU in bf16 (what the saved-tensor probe runs)."""
    cfg = load_config("gpu24-qwen05b-g16", ["model.lora=true"] if lora else [])
    return me.step_of(cfg, arch)


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3"])
def test_activation_formula_matches_autograd(model_type):
    from grpo_tui.engine.plan.terms import layer_activation_bytes

    measured, a = _saved_bytes_per_token_layer(lora=False, model_type=model_type)
    formula = layer_activation_bytes(_gpu_bf16_step(a))
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
    assert e0.term("reference model") == pytest.approx(fallback_arch("qwen2.5-0.5b").params * 2 / GiB)
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


@pytest.mark.parametrize(
    "gb,expected",
    [
        (23.6, "gpu24-qwen05b-g16-vllm"),
        (39.4, "gpu40-qwen15b-full"),
        (47.5, "gpu40-qwen15b-full"),
        (79.1, "gpu80-qwen7b-lora"),
    ],
)
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


def test_estimator_imports_neither_torch_nor_textual(tmp_path):
    """Importing the estimator, explaining a preset and sizing a shipped model's recipes while no model config is
    cached load no torch: the offline table answers. (Loading a preset that names a trl.GRPOConfig field imports
    trl to check its type; the presets used here name none.)"""
    code = (
        "import sys, grpo_tui.engine.plan.memory, grpo_tui.tui.console.presets as p; "
        "assert p.main(['--gpu-mem', '16', '--explain', 'gpu24-qwen05b-g16']) == 0; "
        "assert p.main(['--gpu-mem', '24', '--model', 'Qwen/Qwen3-8B']) == 0; "
        "bad = [m for m in ('torch', 'textual', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_estimate_imports_no_preflight():
    """plan.memory <- preflight: the estimator needs nothing from pre-flight (no import cycle)."""
    code = "import sys, grpo_tui.engine.plan.memory; sys.exit(int('grpo_tui.engine.preflight' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_estimate_is_a_short_orchestrator():
    import inspect

    assert len(inspect.getsource(me.estimate).splitlines()) < 80
