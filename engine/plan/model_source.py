"""Which model a preset names, as an Arch: from its config through transformers, or the offline fallback.

The order, for `[model] name`:

1. `tiny-random`: the engine's own random Llama (engine.models.ensure_tiny_random), by formula.
2. A local directory: its config.json through `AutoConfig`; a LoRA checkpoint's adapter_config.json
   names its base model, which is looked up in turn.
3. A hub id: its config from the local Hugging Face cache through `AutoConfig` (offline).
4. Only for the hub ids the shipped presets name (and the offline SmolLM2): the config numbers
   below, so `grpo-tui presets` and pre-flight answer without the model downloaded and without torch.
5. Any other hub id: `AutoConfig` asks the hub, unless HF_HUB_OFFLINE is set, for at most
   HUB_LOOKUP_TIMEOUT_S (huggingface_hub retries an unreachable hub for about half a minute, a
   black-holed one for minutes; a size estimate is not worth that wait).

Steps 2, 3 and 5 build the model on the meta device (engine.plan.arch.arch_from_model_config),
so they import torch and transformers; a process that never meets such a model never does.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import Any

from grpo_tui.engine.offline_models import TINY
from grpo_tui.engine.plan.arch import Arch, dense_arch

HUB_LOOKUP_TIMEOUT_S = 20.0  # the most a size lookup waits on the hub (a config.json answers in about a second)


class UnknownArch(LookupError):
    """No architecture for a model name; the message says why and what to do."""


def _qwen25(h: int, layers: int, heads: int, kv: int, i: int, vocab: int, tied: bool) -> dict[str, Any]:
    return {
        "model_type": "qwen2",
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": i,
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
    }


def _qwen3(h: int, layers: int, heads: int, i: int, tied: bool) -> dict[str, Any]:
    return {
        "model_type": "qwen3",
        "hidden_size": h,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": i,
        "vocab_size": 151936,
        "tie_word_embeddings": tied,
        "attention_bias": False,
    }


# Offline fallback: the config.json numbers of the models the shipped presets name, keyed by the
# hub id's last part, lower case, without "-instruct". Not a source of truth: a config that can be
# had (cache, directory, hub) always wins.
FALLBACK_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": _qwen25(896, 24, 14, 2, 4864, 151936, True),
    "qwen2.5-1.5b": _qwen25(1536, 28, 12, 2, 8960, 151936, True),
    "qwen2.5-3b": _qwen25(2048, 36, 16, 2, 11008, 151936, True),
    "qwen2.5-7b": _qwen25(3584, 28, 28, 4, 18944, 152064, False),
    "qwen3-0.6b": _qwen3(1024, 28, 16, 3072, True),
    "qwen3-1.7b": _qwen3(2048, 28, 16, 6144, True),
    "qwen3-4b": _qwen3(2560, 36, 32, 9728, True),
    "qwen3-8b": _qwen3(4096, 36, 32, 12288, False),
    "smollm2-135m": {
        "model_type": "llama",
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
}
# Display names of the fallback entries (the model cards' spelling).
FALLBACK_NAMES = {
    "qwen2.5-0.5b": "Qwen2.5-0.5B",
    "qwen2.5-1.5b": "Qwen2.5-1.5B",
    "qwen2.5-3b": "Qwen2.5-3B",
    "qwen2.5-7b": "Qwen2.5-7B",
    "qwen3-0.6b": "Qwen3-0.6B",
    "qwen3-1.7b": "Qwen3-1.7B",
    "qwen3-4b": "Qwen3-4B",
    "qwen3-8b": "Qwen3-8B",
    "smollm2-135m": "SmolLM2-135M",
}


def fallback_key(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower().removesuffix("-instruct")


def fallback_arch(key: str) -> Arch:
    return dense_arch(FALLBACK_NAMES[key], FALLBACK_CONFIGS[key])


def tiny_random_arch(hidden: int, layers: int) -> Arch:
    """engine.models.ensure_tiny_random: Llama, 4 heads, 2 KV heads, MLP 2h, tied, the small test tokenizer."""
    from grpo_tui.engine.small_tokenizer import VOCAB_SIZE

    return dense_arch(
        f"tiny-random (h{hidden}, {layers} layers)",
        {
            "model_type": "llama",
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 2 * hidden,
            "vocab_size": VOCAB_SIZE,
            "tie_word_embeddings": True,
        },
    )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _cached_hub_config(repo: str) -> bool:
    """The hub repo's config.json is in the local cache (asked without importing transformers)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the hub library refuses is simply not cached
        return False


@functools.lru_cache(maxsize=64)
def arch_from_pretrained(name: str, local_only: bool) -> Arch:
    """AutoConfig for a directory or hub id, counted on the meta device. Cached per process."""
    from transformers import AutoConfig

    from grpo_tui.engine.plan.arch import arch_from_model_config

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local_only)
        return arch_from_model_config(config, name)
    except Exception as e:  # noqa: BLE001 - any failure means "size unknown", with transformers' reason
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnknownArch(f"can't read the config of {name!r} through transformers: {first}") from None


def arch_from_hub(name: str, timeout_s: float | None = None) -> Arch:
    """arch_from_pretrained asking the hub, or UnknownArch once timeout_s has passed without an answer.

    The lookup goes on in a daemon thread after a timeout (huggingface_hub has no cancel); its answer is
    cached for the next call."""
    timeout_s = HUB_LOOKUP_TIMEOUT_S if timeout_s is None else timeout_s
    result: dict[str, Any] = {}

    def ask() -> None:
        try:
            result["arch"] = arch_from_pretrained(name, False)
        except UnknownArch as e:
            result["error"] = e

    thread = threading.Thread(target=ask, name="hub-config-lookup", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "arch" in result:
        return result["arch"]
    if "error" in result:
        raise result["error"]
    raise UnknownArch(
        f"unknown model size: the Hugging Face hub did not answer within {timeout_s:g} s for the config of "
        f"{name!r}; download it once (`hf download {name} config.json`) or point [model] name (or --model) at a "
        "local directory holding its config.json"
    )


def _adapter_base(path: Path) -> str | None:
    try:
        return json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def resolve_arch(name: str, tiny_hidden: int = 64, tiny_layers: int = 2) -> Arch:
    """The Arch of `[model] name`, or UnknownArch saying why there is none."""
    if not name:
        raise UnknownArch("no model name")
    if name == TINY:
        return tiny_random_arch(tiny_hidden, tiny_layers)
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not path.is_dir():
        raise UnknownArch(f"unknown model size: {name!r} is not a directory")
    if path.is_dir():
        if not (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
            base = _adapter_base(path)
            if not base:
                raise UnknownArch(f"{path}/adapter_config.json names no base_model_name_or_path")
            return resolve_arch(base)
        return arch_from_pretrained(str(path.resolve()), True)
    key = fallback_key(name)
    if "/" in name and _cached_hub_config(name):
        try:
            return arch_from_pretrained(name, True)
        except UnknownArch:
            if key not in FALLBACK_CONFIGS:
                raise
    if key in FALLBACK_CONFIGS:
        return fallback_arch(key)
    if "/" in name and not _hub_offline():
        return arch_from_hub(name)
    where = (
        "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
        if "/" in name
        else "it is neither a local model directory nor a hub id"
    )
    raise UnknownArch(
        f"unknown model size: {name!r}: {where}; point [model] name (or --model) at a local "
        "directory holding its config.json, or download it once (`hf download "
        f"{name} config.json`)"
    )


def lookup_arch(name: str, tiny_hidden: int = 64, tiny_layers: int = 2) -> Arch | None:
    """resolve_arch, with None for an unknown model."""
    try:
        return resolve_arch(name, tiny_hidden, tiny_layers)
    except UnknownArch:
        return None
