"""One function per memory term of a GRPO step; engine.plan.memory.estimate adds them up per phase.

Each function takes the step's shape (`Step`, derived once from the preset) and returns a Term:
bytes plus a note saying how it was counted. docs/presets.md derives each formula.
Weights memory counts every parameter (all experts of a mixture-of-experts model); activations,
per-token buffers and the generation prefill count what one token passes through (top-k experts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grpo_tui.engine.config import Config
from grpo_tui.engine.plan.arch import Arch

GiB = 2**30
CUDA_CONTEXT_GB = 0.8  # CUDA context + cuBLAS workspace of one process (docs/benchmarks.md)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + fp32 per 256 absmax (double quant)
FUSED_TOKEN_TILE = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
FUSED_VOCAB_TILE = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
VLLM_ENGINE_OVERHEAD = GiB  # vLLM's own activations and CUDA graphs beside weights and KV cache


@dataclass
class Term:
    name: str
    bytes: float
    note: str = ""

    @property
    def gb(self) -> float:
        return self.bytes / GiB


@dataclass(frozen=True)
class Sharding:
    """Per-GPU share of the model-state terms under [distributed]."""

    processes: int
    zero2: bool  # gradients and optimizer states sharded (ZeRO-2 and up)
    zero3: bool  # the weights too (ZeRO-3, FSDP2)
    offload: bool  # states (ZeRO-3: also weights) in CPU memory
    note: str  # " / 2 GPUs (deepspeed-zero3)" or ""

    @property
    def weights_share(self) -> float:
        return 1 / self.processes if self.zero3 else 1.0

    @property
    def states_share(self) -> float:
        return 1 / self.processes if self.zero2 else 1.0


@dataclass(frozen=True)
class Step:
    """The numbers of one training step of a preset that the memory terms depend on."""

    arch: Arch
    on_gpu: bool
    weight_bytes: int  # bytes per weight in the model's dtype
    act_bytes: int  # bytes per activation (the residual stream's dtype)
    autocast: bool  # bf16 autocast on a GPU
    quantized: bool  # 4-bit NF4 base weights
    upcast: bool  # peft up-cast the non-4-bit parameters of a 4-bit model to fp32
    lora: bool
    lora_r: int
    lora_dropout: float
    targets: list[str]
    checkpointing: bool
    beta: float
    optim: str
    prompt_tokens: int  # longest prompt in a micro-batch
    completion_tokens: int
    batch: int  # completions per micro-batch
    gen_batch: int  # completions generated at once
    sharding: Sharding

    @property
    def tokens(self) -> int:
        return self.batch * (self.prompt_tokens + self.completion_tokens)

    @property
    def trainable(self) -> int:
        return self.arch.lora_params(self.lora_r, self.targets) if self.lora else self.arch.params

    @property
    def trainable_bytes(self) -> int:
        return 4 if self.lora else self.weight_bytes  # peft casts adapter weights to fp32 (autocast_adapter_dtype)


@dataclass
class Generation:
    """The generation phase: its terms, vLLM's reservation and what the estimate should say about it."""

    terms: list[Term] = field(default_factory=list)
    vllm_bytes: float = 0.0
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def sharding_of(cfg: Config, on_gpu: bool) -> Sharding:
    d = cfg.distributed
    n = d.num_processes if on_gpu else 1
    zero3 = n > 1 and d.backend in ("deepspeed-zero3", "fsdp2")
    zero2 = n > 1 and (zero3 or d.backend == "deepspeed-zero2")
    note = f" / {n} GPUs ({d.backend})" if n > 1 and d.backend != "ddp" else ""
    return Sharding(n, zero2, zero3, zero2 and d.cpu_offload, note)


def _b(n: float) -> str:
    return f"{n / 1e9:.2f}B"


# ------------------------------------------------------------------ model state


def weights(s: Step) -> Term:
    a, wb, sh = s.arch, s.weight_bytes, s.sharding
    if s.quantized:
        other = a.params - a.quantizable
        ob = 4 if s.upcast else wb
        where = "fp32 (peft up-cast)" if ob == 4 else "fp16/bf16"
        return Term(
            "weights",
            a.quantizable * NF4_BYTES + other * ob,
            f"{_b(a.quantizable)} linear params in NF4 + {_b(other)} (embeddings, head, norms"
            f"{', experts' if a.is_moe else ''}) in {where}",
        )
    if sh.zero3:  # the sharded weights plus one layer gathered in full for its forward/backward
        on_gpu = 0.0 if sh.offload else a.params * wb * sh.weights_share
        return Term(
            "weights",
            on_gpu + a.layer_params * wb,
            f"{_b(a.params)} params x {wb} B{sh.note}"
            + (" (offloaded to CPU)" if sh.offload else "")
            + " + one gathered layer",
        )
    return Term("weights", a.params * wb, f"{_b(a.params)} params x {wb} B")


def reference_model(s: Step) -> Term | None:
    """beta > 0 loads a second copy; with LoRA the adapters are switched off instead."""
    if s.beta <= 0 or s.lora:
        return None
    sh = s.sharding
    return Term(
        "reference model",
        s.arch.params * s.weight_bytes * sh.weights_share,
        f"beta = {s.beta} > 0 loads a second copy{sh.note if sh.zero3 else ''}",
    )


def lora_adapters(s: Step) -> Term | None:
    if not s.lora:
        return None
    return Term("LoRA adapters", s.trainable * 4, f"{s.trainable / 1e6:.1f}M params in fp32")


def gradients(s: Step) -> Term:
    sh, n, tb = s.sharding, s.trainable, s.trainable_bytes
    how = f"{n / 1e6:.0f}M x {tb} B" if s.lora else f"{tb} B per param"
    return Term("gradients", n * tb * sh.states_share, how + (sh.note if sh.zero2 else ""))


def optimizer_bytes(optim: str, state_dtype_bytes: int) -> tuple[float, float, str]:
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
    return (
        2.0 * state_dtype_bytes,
        0.0 if fused else float(state_dtype_bytes),
        f"two moments in {'fp32' if state_dtype_bytes == 4 else 'the parameter dtype'}",
    )


def optimizer_states(s: Step) -> Term:
    sh = s.sharding
    per_param, _, how = optimizer_bytes(s.optim, s.trainable_bytes)
    nbytes = 0.0 if sh.offload else s.trainable * per_param * sh.states_share
    return Term(
        "optimizer states",
        nbytes,
        f"{s.optim}: {how}" + (sh.note if sh.zero2 else "") + (" (offloaded to CPU)" if sh.offload else ""),
    )


def optimizer_step_buffer(s: Step) -> Term | None:
    """foreach AdamW keeps one temporary the size of a moment during the optimizer step."""
    sh = s.sharding
    _, per_param, _ = optimizer_bytes(s.optim, s.trainable_bytes)
    nbytes = 0.0 if sh.offload else s.trainable * per_param * sh.states_share
    return Term("optimizer step buffer", nbytes, "foreach AdamW temporary (optimizer step only)") if nbytes else None


# ------------------------------------------------------------------ the backward


def layer_activation_bytes(s: Step) -> float:
    """What autograd saves per token in one decoder layer (Qwen2/Llama/Qwen3 with SDPA).

    Two RMSNorms keep an fp32 copy of their input (4h) and two e-byte tensors (2eh); attention keeps
    q, the GQA-repeated k and v, and its output (4e x q_dim); the SwiGLU MLP keeps gate, up,
    silu(gate) and their product (4e x width, the width of the k experts a token is routed to).
    Qwen3's per-head q/k norms keep an fp32 copy and one e-byte tensor of q and k. LoRA: what lora_A saves
    per adapted input feature (bf16 under autocast, else its fp32 input) and the 1-byte dropout mask.
    """
    a, e = s.arch, s.act_bytes
    h = a.hidden
    layer = 8 * h + 4 * e * h + 4 * e * a.q_dim + 4 * e * a.mlp_width
    if a.qk_norm:
        layer += (4 + e) * (a.q_dim + a.kv_dim)
    if s.lora:
        per_feature = (1.0 if s.autocast else 2.5) + (1.0 if s.lora_dropout > 0 else 0.0)
        layer += per_feature * a.lora_in_features(s.targets)
    return layer


def activations(s: Step) -> Term:
    a, e, tokens = s.arch, s.act_bytes, s.tokens
    layer = layer_activation_bytes(s)
    final_norm = 4 * a.hidden + 2 * e * a.hidden
    if s.checkpointing:
        return Term(
            "activations",
            tokens * (a.layers * e * a.hidden + layer + final_norm),
            f"checkpointing: {a.layers} layer inputs + 1 recomputed layer, {tokens:,} tokens",
        )
    return Term(
        "activations",
        tokens * (a.layers * layer + final_norm),
        f"{layer / 1024:.0f} KiB per token per layer x {a.layers} layers x {tokens:,} tokens",
    )


def backward_buffers(s: Step) -> Term:
    a = s.arch
    return Term(
        "backward buffers", s.tokens * s.act_bytes * (2 * a.hidden + 3 * a.mlp_width), "one layer's gradients in flight"
    )


def logprob_head(s: Step, logits: str, positions: str) -> Term:
    """TRL 1.16 scores completions with a chunked LM head (no [B, T, V] logits); its backward keeps an
    fp32 [V, h] weight gradient when the head is trained. Older TRL materialised fp32 logits."""
    a, B, C = s.arch, s.batch, s.completion_tokens
    h, V = a.hidden, a.vocab
    if logits == "fused":
        head_trained = not s.lora
        logit_bytes = 2 if (s.autocast or s.weight_bytes == 2) else 4
        N = B * C
        tile = min(N, FUSED_TOKEN_TILE) * min(V, FUSED_VOCAB_TILE) * logit_bytes
        return Term(
            "log-prob head",
            tile + N * h * (2 * s.act_bytes + 4) + (V * h * (4 + s.weight_bytes) if head_trained else 0),
            "chunked (TRL 1.16): one logits tile, scored hidden rows"
            + (f", fp32 [V, h] head gradient ({V * h * 4 / GiB:.2f} GB) + its cast" if head_trained else ""),
        )
    if logits == "materialized":
        pos = C + 1 if positions == "completion" else s.prompt_tokens + C
        return Term(
            "log-prob head",
            B * pos * V * 8,
            f"materialised [{B}, {pos}, {V}] logits in fp32 + fp32 log-softmax (older TRL)",
        )
    raise ValueError(f"logits must be 'fused' or 'materialized', got {logits!r}")


def cuda_context(s: Step) -> Term:
    return Term("CUDA context", CUDA_CONTEXT_GB * GiB if s.on_gpu else 0.0, "per process" if s.on_gpu else "")


# ------------------------------------------------------------------ generation


def _kv_bytes(s: Step, bytes_per_value: int) -> float:
    a = s.arch
    return s.gen_batch * (s.prompt_tokens + s.completion_tokens) * 2 * a.layers * a.kv_dim * bytes_per_value


def kv_cache(s: Step) -> Term:
    return Term(
        "generation KV cache",
        _kv_bytes(s, s.act_bytes),
        f"{s.gen_batch} sequences x {s.prompt_tokens + s.completion_tokens} tokens (transformers generate)",
    )


def generation_buffers(s: Step) -> Term:
    a, e, n = s.arch, s.act_bytes, s.gen_batch
    return Term(
        "generation buffers",
        n * s.prompt_tokens * e * (2 * a.mlp_width + 2 * a.hidden) + n * a.vocab * 4 * 2,
        "prefill MLP of one layer + fp32 sampling logits",
    )


def vllm_reservation(s: Step, fraction: float, card_gb: float) -> tuple[Term, str | None]:
    """Colocated vLLM takes `fraction` of the card; the problem when that can't hold its weights and KV cache."""
    a = s.arch
    reserved = fraction * card_gb * GiB
    term = Term("vLLM reservation", reserved, f"{fraction:.2f} x {card_gb:g} GB (weights + KV cache inside)")
    v_weights = a.quantizable * NF4_BYTES + (a.params - a.quantizable) * 2 if s.quantized else a.params * 2
    need = v_weights + _kv_bytes(s, 2) + VLLM_ENGINE_OVERHEAD
    if reserved >= need:
        return term, None
    return term, (
        f"vLLM's share ({reserved / GiB:.1f} GB) can't hold its copy of the weights "
        f"({v_weights / GiB:.1f} GB) plus the KV cache for {s.gen_batch} sequences; "
        f"raise train.vllm_gpu_memory_utilization to "
        f"{min(0.95, need / (card_gb * GiB) + 0.01):.2f} or turn vLLM off"
    )


def generation(s: Step, cfg: Config, gpu_gb: float | None, vllm_available: bool | None) -> Generation:
    """Colocated vLLM's reservation, or transformers' KV cache and buffers; vLLM server mode costs nothing here."""
    t = cfg.train
    out = Generation()
    use_vllm = t.use_vllm and s.on_gpu and vllm_available is not False
    if use_vllm and t.vllm_mode == "colocate":
        card = gpu_gb or cfg.preset.min_gpu_gb
        if card is None:
            out.notes.append("vLLM reservation unknown: give the GPU size (--gpu-mem)")
        else:
            term, out.problem = vllm_reservation(s, t.vllm_gpu_memory_utilization, card)
            out.terms.append(term)
            out.vllm_bytes = term.bytes
    elif use_vllm:
        out.notes.append("vLLM server mode: generation runs on another GPU")
    else:
        out.terms += [kv_cache(s), generation_buffers(s)]
    if t.use_vllm and not use_vllm and s.on_gpu:
        out.notes.append("vLLM not installed: generation with transformers")
    return out
