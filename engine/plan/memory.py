"""Peak GPU memory of a preset, estimated before launch, and the preset that fits a GPU.

A preset that runs out of memory at step 3 costs an hour, so `grpo-tui` says
before launch whether a preset fits. The estimate adds up the tensors a GRPO
step keeps alive, term by term, from the model's architecture and the preset's
knobs; nothing is fitted to measurements. docs/presets.md derives each term.

    weights            the policy in its dtype; 4-bit NF4 for QLoRA (0.52 B/param)
    reference model    a second copy when beta > 0 (LoRA: the adapters are switched off instead)
    LoRA adapters      fp32 (peft up-casts adapter weights)
    gradients          one per trainable parameter, in its dtype
    optimizer states   AdamW: two moments in the parameter dtype; 8-bit: 2 B/param
    activations        what autograd saves per token and layer (24h + 8i bytes in bf16 for
                       Qwen2/Llama with SDPA), or only the layer inputs plus one layer
                       under gradient checkpointing
    backward buffers   gradients of one layer's intermediates in flight
    log-prob head      TRL 1.16 scores completions with a chunked LM head (no [B, T, V]
                       logits), whose backward keeps an fp32 [V, h] weight gradient when
                       the head is trained; older TRL materialised fp32 logits (`logits=`)
    generation         KV cache for the whole generation batch (prompt + completion)
                       plus prefill and sampling buffers, when transformers generates
    vLLM reservation   colocated vLLM takes `vllm_gpu_memory_utilization` x the GPU
    CUDA context       ~0.8 GB per process (context, cuBLAS workspace)

The peak is the largest of three phases: generation, the training backward,
and the optimizer step. GB here means GiB (2**30 bytes), as torch and
nvidia-smi count. No torch import at module level: `grpo-tui presets` stays fast.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import Config, PresetError, list_presets, load_config, validate
from grpo_tui.engine.preflight import missing_packages

GiB = 2 ** 30
CUDA_CONTEXT_GB = 0.8      # CUDA context + cuBLAS workspace of one process: 0.8 measured on an H100 (torch 2.11, cu130)
HEADROOM = 0.05            # fraction of the card kept free for allocator fragmentation
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)   # 4 bits + 8-bit absmax per 64 + fp32 per 256 absmax (double quant)
FUSED_TOKEN_TILE = 4096    # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
FUSED_VOCAB_TILE = 32768   # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
PROMPT_TOKENS = {"gsm8k": 256, "file": 256, "synthetic": 128}
ONE_SHOT_TOKENS = 64
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Presets `choose_preset` may pick, most capable first; each is taken only if the
# GPU is the class the preset is meant for and the estimate fits.
PREFERENCE = (
    "gpu80-qwen7b-lora",
    "gpu80-qwen15b-g16",
    "gpu40-qwen15b-full",
    "gpu40-qwen3b-lora",
    "gpu24-qwen05b-g16-vllm",   # the vLLM variants only where vllm is installed (preflight.missing_packages)
    "gpu24-qwen05b-g16",
    "gpu24-qwen15b-ckpt-vllm",
    "gpu24-qwen15b-ckpt",
    "gpu24-qwen05b-b8g8-vllm",
    "gpu24-qwen05b-b8g8",
    "gpu16-qwen7b-qlora",
)
CPU_FALLBACK = ("cpu-demo", "tiny")


# ------------------------------------------------------------ architectures

@dataclass(frozen=True)
class Arch:
    """The numbers of a dense decoder (Llama/Qwen2 layout) that memory depends on."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    head_dim: int = 0                    # 0: hidden // heads
    published_params: int | None = None  # from the model card; the formula is checked against it

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def layer_linear_params(self) -> int:
        return sum(a * b for a, b in self.module_shapes().values())

    @property
    def layer_params(self) -> int:
        bias = self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0
        return self.layer_linear_params + bias + 2 * self.hidden  # + two RMSNorm weights

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        return self.embed_params * (1 if self.tied else 2) + self.layers * self.layer_params + self.hidden

    def lora_params(self, r: int, targets: list[str]) -> int:
        shapes = self.module_shapes()
        return self.layers * sum(r * (a + b) for name, (a, b) in shapes.items() if name in targets)

    def lora_in_features(self, targets: list[str]) -> int:
        """Per layer: input features of the adapted modules (what the adapters save per token)."""
        return sum(a for name, (a, _) in self.module_shapes().items() if name in targets)


def _qwen25(name: str, h: int, layers: int, heads: int, kv: int, i: int, vocab: int, tied: bool, n: int) -> Arch:
    return Arch(name, h, layers, heads, kv, i, vocab, tied, qkv_bias=True, published_params=n)


# Numbers from each model's config.json; published_params from the model cards.
KNOWN_ARCHS: dict[str, Arch] = {
    "qwen2.5-0.5b": _qwen25("Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, True, 494_032_768),
    "qwen2.5-1.5b": _qwen25("Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, True, 1_543_714_304),
    "qwen2.5-3b": _qwen25("Qwen2.5-3B", 2048, 36, 16, 2, 11008, 151936, True, 3_085_938_688),
    "qwen2.5-7b": _qwen25("Qwen2.5-7B", 3584, 28, 28, 4, 18944, 152064, False, 7_615_616_512),
    "smollm2-135m": Arch("SmolLM2-135M", 576, 30, 9, 3, 1536, 49152, True, published_params=134_515_008),
}


def _tiny_random(hidden: int, layers: int) -> Arch:
    # engine.models.ensure_tiny_random: Llama, 4 heads, 2 KV heads, MLP 2h, the small test tokenizer.
    from grpo_tui.engine.small_tokenizer import VOCAB_SIZE
    return Arch(f"tiny-random (h{hidden}, {layers} layers)", hidden, layers, 4, 2, 2 * hidden, VOCAB_SIZE, True)


def arch_from_config_json(path: Path) -> Arch | None:
    """A local model directory's config.json (or a LoRA checkpoint's base model); None if unreadable."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists() and (path / "adapter_config.json").exists():
        try:
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError):
            return None
        return lookup_arch(base) if base else None
    try:
        c = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    c = c.get("text_config", c)
    try:
        h, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
        return Arch(
            name=path.name, hidden=h, layers=int(c["num_hidden_layers"]), heads=heads,
            kv_heads=int(c.get("num_key_value_heads") or heads), intermediate=int(c["intermediate_size"]),
            vocab=int(c["vocab_size"]), tied=bool(c.get("tie_word_embeddings", False)),
            qkv_bias=bool(c.get("attention_bias", c.get("model_type") == "qwen2")),
            head_dim=int(c.get("head_dim") or 0))
    except (KeyError, TypeError, ValueError):
        return None


def lookup_arch(name: str, tiny_hidden: int = 64, tiny_layers: int = 2) -> Arch | None:
    """Architecture for a model name: built-in table, local directory, or None (unknown size)."""
    if not name:
        return None
    if name == "tiny-random":
        return _tiny_random(tiny_hidden, tiny_layers)
    path = Path(name).expanduser()
    if path.is_dir():
        return arch_from_config_json(path)
    key = name.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in ("-instruct",):
        key = key.removesuffix(suffix)
    return KNOWN_ARCHS.get(key)


# ------------------------------------------------------------ the estimate

@dataclass
class Term:
    name: str
    bytes: float
    note: str = ""

    @property
    def gb(self) -> float:
        return self.bytes / GiB


@dataclass
class Estimate:
    """Peak memory of one preset on one device class. `peak_gb` is None when the model size is unknown."""

    preset: str
    model: str
    method: str                  # "full", "LoRA r32", "QLoRA r32"
    device: str                  # "gpu" (GPU memory) or "cpu" (host RAM)
    num_generations: int
    batch: int                   # completions per micro-batch
    completion_tokens: int
    prompt_tokens: int
    terms: list[Term] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # phase -> GiB
    peak_gb: float | None = None
    unknown: str | None = None   # why there is no estimate
    notes: list[str] = field(default_factory=list)
    vllm_gb: float = 0.0
    vllm_problem: str | None = None  # vLLM's share can't hold its weights

    @property
    def peak_phase(self) -> str | None:
        return max(self.phases, key=self.phases.get) if self.phases else None

    def term(self, name: str) -> float:
        return sum(t.gb for t in self.terms if t.name == name)

    def fits(self, gpu_gb: float | None) -> bool | None:
        """True/False against a card of gpu_gb (keeping HEADROOM free); None when it can't be said."""
        if self.device != "gpu" or gpu_gb is None or self.peak_gb is None:
            return None
        if self.vllm_problem:
            return False
        return self.peak_gb <= gpu_gb * (1 - HEADROOM)


def _dtype_bytes(dtype: str, device: str) -> int:
    if dtype in ("bfloat16", "float16"):
        return 2
    if dtype == "float32":
        return 4
    return 2 if device == "gpu" else 4  # auto: bf16 on a GPU, fp32 on a CPU


def device_class(cfg: Config) -> str:
    if cfg.preset.device in ("cpu", "gpu"):
        return cfg.preset.device
    return "gpu" if cfg.model.load_in_4bit or cfg.model.dtype in ("bfloat16", "float16") else "cpu"


def method_of(cfg: Config) -> str:
    m = cfg.model
    if not m.lora:
        return "full"
    return f"{'QLoRA' if m.load_in_4bit else 'LoRA'} r{m.lora_r}"


def prompt_tokens_for(cfg: Config) -> int:
    """Longest prompt a micro-batch pads to. GSM8K with the system prompt tops out near 256 tokens."""
    n = PROMPT_TOKENS.get(cfg.data.source, 256)
    return n + (ONE_SHOT_TOKENS if cfg.prompt.one_shot else 0)


def _optimizer_state_bytes(optim: str, state_dtype_bytes: int) -> tuple[float, float, str]:
    """(state bytes per trainable param, step-buffer bytes per trainable param, description)."""
    o = optim.lower()
    if "8bit" in o:
        return 2.0, 0.0, "two 8-bit moments (bitsandbytes)"
    if "adafactor" in o:
        return 0.0, 0.0, "factored second moment (negligible)"
    if o.startswith("sgd"):
        return 0.0, 0.0, "no state"
    if "lion" in o:
        return float(state_dtype_bytes), 0.0, "one moment"
    fused = "fused" in o
    return (2.0 * state_dtype_bytes, 0.0 if fused else float(state_dtype_bytes),
            f"two moments in {'fp32' if state_dtype_bytes == 4 else 'the parameter dtype'}")


def estimate(cfg: Config, gpu_gb: float | None = None, *, prompt_tokens: int | None = None,
             logits: str = "fused", logits_positions: str = "completion", kbit_upcast: bool = True,
             vllm_available: bool | None = None) -> Estimate:
    """Peak memory of a training step of `cfg`.

    gpu_gb: the card's total memory (GiB); sizes vLLM's reservation (else the preset's min_gpu_gb).
    prompt_tokens: longest prompt in a micro-batch (default by data source).
    logits: "fused" (TRL >= 1.x chunked log-prob head, what grpo-tui runs) or "materialized"
        (older TRL: the model returned [B, positions, V] logits that accelerate up-cast to fp32).
    logits_positions: with "materialized", "completion" (logits_to_keep) or "sequence" (prompt too).
    kbit_upcast: the engine runs peft's prepare_model_for_kbit_training on 4-bit models, which
        casts every non-4-bit parameter (embeddings, LM head, norms) to fp32.
    vllm_available: False counts no vLLM reservation even if the preset asks for vLLM (what-if:
        the engine itself refuses such a preset in pre-flight); None counts it as configured.
    """
    m, t = cfg.model, cfg.train
    device = device_class(cfg)
    on_gpu = device == "gpu"
    P = prompt_tokens if prompt_tokens is not None else prompt_tokens_for(cfg)
    C, B, G = t.max_completion_length, t.per_device_train_batch_size, t.num_generations
    est = Estimate(preset=cfg.preset.name or Path(cfg.source).stem, model=m.name, method=method_of(cfg),
                   device=device, num_generations=G, batch=B, completion_tokens=C, prompt_tokens=P)
    arch = lookup_arch(m.name, m.tiny_hidden_size, m.tiny_layers)
    if arch is None:
        est.unknown = (f"unknown model size: {m.name!r} is not in the built-in table "
                       f"({', '.join(a.name for a in KNOWN_ARCHS.values())}); "
                       "point [model] name at a local model directory and its config.json is read")
        return est
    est.model = arch.name if m.name == "tiny-random" else m.name
    terms: list[Term] = []

    def add(name: str, nbytes: float, note: str = "") -> float:
        terms.append(Term(name, nbytes, note))
        return nbytes

    h, L, V, i = arch.hidden, arch.layers, arch.vocab, arch.intermediate
    wb = _dtype_bytes(m.dtype, device)
    bf16 = t.bf16 if t.bf16 is not None else (on_gpu and m.dtype in ("auto", "bfloat16"))
    autocast = on_gpu and bool(bf16)
    quant = m.load_in_4bit and on_gpu
    upcast = quant and kbit_upcast
    # Activations follow the residual stream: fp32 when peft up-cast the embeddings of a 4-bit model.
    e = 4 if (wb == 4 or upcast) else 2
    targets = list(ALL_LINEAR) if m.lora_target_modules == ["all-linear"] else list(m.lora_target_modules)

    # -- sharding across processes ([distributed]): per-GPU share of each model-state term
    d = cfg.distributed
    n_proc = d.num_processes if on_gpu else 1
    zero3 = n_proc > 1 and d.backend in ("deepspeed-zero3", "fsdp2")
    zero2 = n_proc > 1 and (zero3 or d.backend == "deepspeed-zero2")
    w_share = 1 / n_proc if zero3 else 1.0          # ZeRO-3 / FSDP shard the weights too
    s_share = 1 / n_proc if zero2 else 1.0          # ZeRO-2 and up shard gradients and optimizer states
    offload = zero2 and d.cpu_offload               # states (ZeRO-3: also params) live in CPU memory
    shard_note = f" / {n_proc} GPUs ({d.backend})" if n_proc > 1 and d.backend != "ddp" else ""

    # -- weights
    n_params = arch.params
    if quant:
        lin = L * arch.layer_linear_params
        other = n_params - lin
        ob = 4 if upcast else wb
        weights = add("weights", lin * NF4_BYTES + other * ob,
                      f"{lin / 1e9:.2f}B linear params in NF4 + {other / 1e9:.2f}B "
                      f"(embeddings, head, norms) in {'fp32 (peft up-cast)' if ob == 4 else 'fp16/bf16'}")
    else:
        if zero3:  # the sharded weights plus one layer gathered in full for its forward/backward
            w_gpu = 0.0 if offload else n_params * wb * w_share
            weights = add("weights", w_gpu + arch.layer_params * wb,
                          f"{n_params / 1e9:.2f}B params x {wb} B{shard_note}"
                          + (" (offloaded to CPU)" if offload else "") + " + one gathered layer")
        else:
            weights = add("weights", n_params * wb, f"{n_params / 1e9:.2f}B params x {wb} B")
    ref = 0.0
    if t.beta > 0 and not m.lora:
        ref = add("reference model", n_params * wb * w_share, f"beta = {t.beta} > 0 loads a second copy{shard_note if zero3 else ''}")
    # -- trainable parameters, gradients, optimizer
    if m.lora:
        n_train = arch.lora_params(m.lora_r, targets)
        tb = 4  # peft casts adapter weights to fp32 (autocast_adapter_dtype)
        adapters = add("LoRA adapters", n_train * tb, f"{n_train / 1e6:.1f}M params in fp32")
    else:
        n_train, tb, adapters = n_params, wb, 0.0
    grads = add("gradients", n_train * tb * s_share,
                (f"{n_train / 1e6:.0f}M x {tb} B" if m.lora else f"{tb} B per param") + (shard_note if zero2 else ""))
    state_b, step_b, state_note = _optimizer_state_bytes(t.optim, tb)
    states = add("optimizer states", 0.0 if offload else n_train * state_b * s_share,
                 f"{t.optim}: {state_note}" + (shard_note if zero2 else "") + (" (offloaded to CPU)" if offload else ""))
    step_buf = 0.0 if offload else n_train * step_b * s_share  # foreach AdamW keeps one temporary the size of a moment

    # -- activations of one micro-batch (B sequences of P + C tokens)
    T = P + C
    tokens = B * T
    lora_c = 0.0
    if m.lora:
        # bytes per adapted input feature: what lora_A saves (bf16 under autocast, else its fp32 input)
        # plus CUDA's 1-byte dropout mask; measured with saved-tensor hooks (tests/test_memory_estimate.py)
        lora_c = (1.0 if autocast else 2.5) + (1.0 if m.lora_dropout > 0 else 0.0)
    # Per token and layer (Qwen2/Llama, SDPA): two RMSNorms keep an fp32 copy of their input (4h)
    # and two e-byte tensors (2eh); attention keeps q, the GQA-repeated k and v, and its output
    # (4e x q_dim); the SwiGLU MLP keeps gate, up, silu(gate) and their product (4e x i).
    layer = 8 * h + 4 * e * h + 4 * e * arch.q_dim + 4 * e * i
    if m.lora:
        layer += lora_c * arch.lora_in_features(targets)
    final_norm = 4 * h + 2 * e * h
    if m.gradient_checkpointing:
        act = add("activations", tokens * (L * e * h + layer + final_norm),
                  f"checkpointing: {L} layer inputs + 1 recomputed layer, {tokens:,} tokens")
    else:
        act = add("activations", tokens * (L * layer + final_norm),
                  f"{layer / 1024:.0f} KiB per token per layer x {L} layers x {tokens:,} tokens")
    bwd = add("backward buffers", tokens * e * (2 * h + 3 * i), "one layer's gradients in flight")

    # -- the log-prob head
    head_trained = not m.lora
    ec = 2 if (autocast or wb == 2) else 4
    if logits == "fused":
        N = B * C
        head = add("log-prob head",
                   min(N, FUSED_TOKEN_TILE) * min(V, FUSED_VOCAB_TILE) * ec + N * h * (2 * e + 4)
                   + (V * h * (4 + wb) if head_trained else 0),
                   "chunked (TRL 1.16): one logits tile, scored hidden rows"
                   + (f", fp32 [V, h] head gradient ({V * h * 4 / GiB:.2f} GB) + its cast" if head_trained else ""))
    elif logits == "materialized":
        pos = C + 1 if logits_positions == "completion" else T
        head = add("log-prob head", B * pos * V * 8,
                   f"materialised [{B}, {pos}, {V}] logits in fp32 + fp32 log-softmax (older TRL)")
    else:
        raise ValueError(f"logits must be 'fused' or 'materialized', got {logits!r}")

    # -- generation
    spg = t.steps_per_generation or t.gradient_accumulation_steps
    gen_batch = B * spg
    ctx = add("CUDA context", CUDA_CONTEXT_GB * GiB if on_gpu else 0.0,
              "per process" if on_gpu else "")
    use_vllm = t.use_vllm and on_gpu and vllm_available is not False
    vllm = 0.0
    kv = gen_buf = 0.0
    if use_vllm and t.vllm_mode == "colocate":
        ref_gb = gpu_gb or cfg.preset.min_gpu_gb
        if ref_gb is None:
            est.notes.append("vLLM reservation unknown: give the GPU size (--gpu-mem)")
        else:
            vllm = add("vLLM reservation", t.vllm_gpu_memory_utilization * ref_gb * GiB,
                       f"{t.vllm_gpu_memory_utilization:.2f} x {ref_gb:g} GB (weights + KV cache inside)")
            v_weights = (L * arch.layer_linear_params * NF4_BYTES + (n_params - L * arch.layer_linear_params) * 2
                         if quant else n_params * 2)
            v_kv = gen_batch * T * 2 * L * arch.kv_dim * 2
            need = v_weights + v_kv + 1.0 * GiB  # + activations / CUDA graphs of the engine
            if vllm < need:
                est.vllm_problem = (f"vLLM's share ({vllm / GiB:.1f} GB) can't hold its copy of the weights "
                                    f"({v_weights / GiB:.1f} GB) plus the KV cache for {gen_batch} sequences; "
                                    f"raise train.vllm_gpu_memory_utilization to "
                                    f"{min(0.95, need / (ref_gb * GiB) + 0.01):.2f} or turn vLLM off")
        est.vllm_gb = vllm / GiB
    elif use_vllm:
        est.notes.append("vLLM server mode: generation runs on another GPU")
    else:
        kv = add("generation KV cache", gen_batch * T * 2 * L * arch.kv_dim * e,
                 f"{gen_batch} sequences x {T} tokens (transformers generate)")
        gen_buf = add("generation buffers", gen_batch * P * e * (2 * i + 2 * h) + gen_batch * V * 4 * 2,
                      "prefill MLP of one layer + fp32 sampling logits")
    if t.use_vllm and not use_vllm and on_gpu:
        est.notes.append("vLLM not installed: generation with transformers")
    if step_buf:
        add("optimizer step buffer", step_buf, "foreach AdamW temporary (optimizer step only)")

    static = weights + ref + adapters + states + ctx + vllm
    # Sleep mode (level 2 in TRL 1.16) discards vLLM's weights and KV cache after generation, so its
    # reservation counts only while generating; what stays (allocator pools, CUDA graphs) is not modelled.
    train_static = static - vllm if vllm and t.vllm_enable_sleep_mode else static
    if vllm and t.vllm_enable_sleep_mode:
        est.notes.append("vLLM sleep mode: its reservation is freed during backward and the optimizer step")
    phases = {
        "generation": static + kv + gen_buf,
        "backward": train_static + grads + act + bwd + head,
        "optimizer step": train_static + grads + step_buf,
    }
    est.terms = terms
    est.phases = {k: v / GiB for k, v in phases.items()}
    est.peak_gb = max(est.phases.values())
    return est


# ------------------------------------------------------------ advice

def _variant(cfg: Config, changes: dict[str, Any]) -> Config | None:
    new = copy.deepcopy(cfg)
    for key, value in changes.items():
        section, name = key.split(".")
        setattr(getattr(new, section), name, value)
    try:
        validate(new)
    except PresetError:
        return None
    return new


def _candidate_changes(cfg: Config) -> list[tuple[str, dict[str, Any], bool]]:
    """(what, changes, keeps_the_recipe) for every single change that lowers memory."""
    m, t = cfg.model, cfg.train
    out: list[tuple[str, dict[str, Any], bool]] = []
    if not m.gradient_checkpointing:
        out.append(("turn on gradient checkpointing", {"model.gradient_checkpointing": True}, True))
    if t.per_device_train_batch_size % 2 == 0:
        ch = {"train.per_device_train_batch_size": t.per_device_train_batch_size // 2,
              "train.gradient_accumulation_steps": t.gradient_accumulation_steps * 2}
        if t.steps_per_generation:
            ch["train.steps_per_generation"] = t.steps_per_generation * 2
        out.append(("halve the completions per micro-batch, doubling gradient accumulation "
                    "(same G, same prompts per step)", ch, True))
    if t.use_vllm and t.vllm_mode == "colocate":
        out.append(("turn off vLLM (generate with transformers)", {"train.use_vllm": False}, True))
    if not m.lora and "8bit" not in t.optim.lower():
        out.append(("use an 8-bit optimizer (needs bitsandbytes)", {"train.optim": "paged_adamw_8bit"}, False))
    if t.beta > 0 and not m.lora:
        out.append(("drop the KL term and its reference model", {"train.beta": 0.0}, False))
    if t.max_completion_length >= 128:
        out.append(("halve the completion length",
                    {"train.max_completion_length": t.max_completion_length // 2}, False))
    # TRL 1.16 holds activations for per_device_train_batch_size completions whatever G is, so a
    # smaller group only saves memory when the micro-batch can't be halved on its own.
    if t.per_device_train_batch_size % 2 and t.per_device_train_batch_size > 1 and t.num_generations >= 4:
        g = t.num_generations // 2
        ch = {"train.num_generations": g, "train.per_device_train_batch_size": g,
              "train.gradient_accumulation_steps": 1, "train.steps_per_generation": None}
        out.append((f"use smaller groups (G={g}, one group per micro-batch)", ch, False))
    if not m.lora:
        out.append(("train LoRA adapters instead of all weights", {"model.lora": True, "model.lora_r": 32}, False))
    elif not m.load_in_4bit:
        out.append(("load the base model in 4-bit (QLoRA; needs bitsandbytes)", {"model.load_in_4bit": True}, False))
    return out


def _sets(changes: dict[str, Any]) -> str:
    def lit(v: Any) -> str:
        if v is None:
            return "none"
        return str(v).lower() if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else repr(v))
    return " ".join(f"--set {k}={lit(v)}" for k, v in changes.items())


def fit_advice(cfg: Config, gpu_gb: float, **kw: Any) -> list[str]:
    """[] when the preset fits gpu_gb; else a warning line and what to change, each with its new estimate."""
    est = estimate(cfg, gpu_gb, **kw)
    if est.device != "gpu":
        return []
    if est.peak_gb is None:
        return [f"{est.preset}: can't tell whether it fits {gpu_gb:g} GB: {est.unknown}."]
    if est.fits(gpu_gb):
        return []
    budget = gpu_gb * (1 - HEADROOM)
    lines = [f"{est.preset} needs about {est.peak_gb:.1f} GB (estimate) but the GPU has {gpu_gb:g} GB "
             f"({budget:.1f} GB usable); it will likely run out of memory. To fit, change:"]
    if est.vllm_problem:
        lines.append(f"  - {est.vllm_problem}")
    singles = []
    for what, changes, keeps in _candidate_changes(cfg):
        new = _variant(cfg, changes)
        if new is None:
            continue
        e2 = estimate(new, gpu_gb, **kw)
        if e2.peak_gb is not None and e2.peak_gb < est.peak_gb - 0.05:
            singles.append((not e2.fits(gpu_gb), not keeps, e2.peak_gb, what, changes, e2))
    singles.sort(key=lambda s: (s[0], s[1], s[2]))
    for misses, _, peak, what, changes, _e2 in singles[:5]:
        lines.append(f"  - {what}: {_sets(changes)} -> {peak:.1f} GB{'' if misses else ' (fits)'}")
    if not any(not s[0] for s in singles):
        # No single change is enough: apply the biggest saving until it fits (at most 5 changes).
        cur, applied = cfg, []
        for _ in range(5):
            best = None
            for what, changes, keeps in _candidate_changes(cur):
                new = _variant(cur, changes)
                if new is None:
                    continue
                p = estimate(new, gpu_gb, **kw).peak_gb
                if p is not None and (best is None or p < best[0]):
                    best = (p, what, changes, new)
            if best is None or best[0] >= estimate(cur, gpu_gb, **kw).peak_gb - 0.05:
                break
            cur = best[3]
            applied.append(best)
            if estimate(cur, gpu_gb, **kw).fits(gpu_gb):
                break
        if applied:
            final = estimate(cur, gpu_gb, **kw)
            verdict = "fits" if final.fits(gpu_gb) else "still does not fit"
            lines.append(f"  together: {'; '.join(a[1] for a in applied)} -> {final.peak_gb:.1f} GB ({verdict}): "
                         + " ".join(_sets(a[2]) for a in applied))
        else:
            lines.append("  no change in reach fits this preset; pick a smaller model preset.")
    return lines


# ------------------------------------------------------------ preset choice

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
            return name, (f"{gpu_total_gb:.0f} GB GPU: {name} is the largest recipe that fits "
                          f"(estimated peak {est.peak_gb:.1f} GB, {method_of(cfg)} {est.model}){passed_over}")
        skipped.append(f"{name} needs ~{est.peak_gb:.1f} GB")
    why = "; ".join(skipped) if skipped else "none is made for this size"
    return fallback, f"no GPU preset fits {gpu_total_gb:.0f} GB ({why}): {fallback} runs on the CPU"
