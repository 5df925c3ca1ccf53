"""The shipped preset `grpo-tui` starts when none is named: the most capable one that fits the GPU."""

from __future__ import annotations

from grpo_tui.engine.config import PresetError, list_presets, load_config
from grpo_tui.engine.plan.memory import estimate, method_of
from grpo_tui.engine.preflight import missing_packages

# Presets `choose_preset` may pick, most capable first; each is taken only if the
# GPU is the class the preset is meant for and the estimate fits.
PREFERENCE = (
    "gpu80-qwen7b-lora",
    "gpu80-qwen15b-g16",
    "gpu40-qwen15b-full",
    "gpu40-qwen3b-lora",
    "gpu24-qwen05b-g16-vllm",  # the vLLM variants only where vllm is installed (preflight.missing_packages)
    "gpu24-qwen05b-g16",
    "gpu24-qwen15b-ckpt-vllm",
    "gpu24-qwen15b-ckpt",
    "gpu24-qwen05b-b8g8-vllm",
    "gpu24-qwen05b-b8g8",
    "gpu16-qwen7b-qlora",
)
CPU_FALLBACK = ("cpu-demo", "tiny")


def choose_preset(gpu_total_gb: float | None) -> tuple[str, str]:
    """(preset name, reason): the most capable shipped preset that fits the GPU; the CPU demo without one."""
    shipped = set(list_presets())
    fallback = next((p for p in CPU_FALLBACK if p in shipped), CPU_FALLBACK[0])
    if gpu_total_gb is None:
        return fallback, f"no CUDA GPU found: {fallback} runs on the CPU"
    skipped = []
    for name in PREFERENCE:
        if name not in shipped:
            continue
        try:
            cfg = load_config(name)
        except PresetError:
            continue
        if cfg.preset.min_gpu_gb and gpu_total_gb < cfg.preset.min_gpu_gb * 0.9:
            continue  # made for a bigger class of card
        missing = missing_packages(cfg)
        if missing:  # the engine would refuse it in pre-flight: no silent fallback
            skipped.append(f"{name}: {missing[0].message}")
            continue
        est = estimate(cfg, gpu_total_gb)
        if est.fits(gpu_total_gb):
            passed_over = f"; passed over: {'; '.join(skipped)}" if skipped else ""
            return name, (
                f"{gpu_total_gb:.0f} GB GPU: {name} is the largest recipe that fits "
                f"(estimated peak {est.peak_gb:.1f} GB, {method_of(cfg)} {est.model}){passed_over}"
            )
        skipped.append(f"{name} needs ~{est.peak_gb:.1f} GB")
    why = "; ".join(skipped) if skipped else "none is made for this size"
    return fallback, f"no GPU preset fits {gpu_total_gb:.0f} GB ({why}): {fallback} runs on the CPU"
