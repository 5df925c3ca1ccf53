"""Peak GPU memory of a preset, estimated before launch.

A preset that runs out of memory at step 3 costs an hour, so `grpo-tui` says
before launch whether a preset fits. The estimate adds up the tensors a GRPO
step keeps alive, term by term (engine/plan/terms.py, one function each), from
the model's architecture (engine/plan/model_source.py) and the preset's knobs;
nothing is fitted to measurements. docs/presets.md derives each term.

    weights            the policy in its dtype, every expert of a MoE model; 4-bit NF4 for QLoRA
    reference model    a second copy when beta > 0 (LoRA: the adapters are switched off instead)
    LoRA adapters      fp32 (peft up-casts adapter weights)
    gradients          one per trainable parameter, in its dtype
    optimizer states   AdamW: two moments in the parameter dtype; 8-bit: 2 B/param
    activations        what autograd saves per token and layer (the experts a token is routed to),
                       or only the layer inputs plus one layer under gradient checkpointing
    backward buffers   gradients of one layer's intermediates in flight
    log-prob head      TRL's chunked LM head (or older TRL's materialised fp32 logits)
    generation         KV cache and prefill buffers when transformers generates,
                       or colocated vLLM's `vllm_gpu_memory_utilization` x the GPU
    CUDA context       per process (context, cuBLAS workspace)

The peak is the largest of three phases: generation, the training backward,
and the optimizer step. GB here means GiB (2**30 bytes), as torch and
nvidia-smi count. No torch import here: `grpo-tui presets` and pre-flight stay
fast unless a model's config has to be read through transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from grpo_tui.engine.config import Config
from grpo_tui.engine.offline_models import TINY
from grpo_tui.engine.plan import terms
from grpo_tui.engine.plan.arch import Arch
from grpo_tui.engine.plan.model_source import UnknownArch, lookup_arch, resolve_arch
from grpo_tui.engine.plan.terms import FUSED_TOKEN_TILE, FUSED_VOCAB_TILE, NF4_BYTES, GiB, Step, Term
from grpo_tui.engine.train.batch_shape import completions_per_generation

__all__ = [
    "Arch",
    "Estimate",
    "FUSED_TOKEN_TILE",
    "FUSED_VOCAB_TILE",
    "GiB",
    "HEADROOM",
    "NF4_BYTES",
    "Term",
    "estimate",
    "lookup_arch",
    "method_of",
    "step_of",
]

HEADROOM = 0.05  # fraction of the card kept free for allocator fragmentation
PROMPT_TOKENS = {"gsm8k": 256, "file": 256, "synthetic": 128}
ONE_SHOT_TOKENS = 64
# What "all-linear" adapts on the dense layouts; the Arch's own module list decides for any model.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Estimate:
    """Peak memory of one preset on one device class. `peak_gb` is None when the model size is unknown."""

    preset: str
    model: str
    method: str  # "full", "LoRA r32", "QLoRA r32"
    device: str  # "gpu" (GPU memory) or "cpu" (host RAM)
    num_generations: int
    batch: int  # completions per micro-batch
    completion_tokens: int
    prompt_tokens: int
    terms: list[Term] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # phase -> GiB
    peak_gb: float | None = None
    unknown: str | None = None  # why there is no estimate
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


def step_of(cfg: Config, arch: Arch, prompt_tokens: int | None = None, kbit_upcast: bool = True) -> Step:
    """The shape of one training step of `cfg` on `arch`, in the numbers the memory terms take."""
    m, t = cfg.model, cfg.train
    device = device_class(cfg)
    on_gpu = device == "gpu"
    wb = _dtype_bytes(m.dtype, device)
    bf16 = t.bf16 if t.bf16 is not None else (on_gpu and m.dtype in ("auto", "bfloat16"))
    quant = m.load_in_4bit and on_gpu
    upcast = quant and kbit_upcast
    return Step(
        arch=arch,
        on_gpu=on_gpu,
        weight_bytes=wb,
        # the residual stream is fp32 when peft up-cast the embeddings of a 4-bit model
        act_bytes=4 if (wb == 4 or upcast) else 2,
        autocast=on_gpu and bool(bf16),
        quantized=quant,
        upcast=upcast,
        lora=m.lora,
        lora_r=m.lora_r,
        lora_dropout=m.lora_dropout,
        targets=list(m.lora_target_modules),
        checkpointing=m.gradient_checkpointing,
        beta=t.beta,
        optim=t.optim,
        prompt_tokens=prompt_tokens if prompt_tokens is not None else prompt_tokens_for(cfg),
        completion_tokens=t.max_completion_length,
        batch=t.per_device_train_batch_size,
        gen_batch=completions_per_generation(cfg),
        sharding=terms.sharding_of(cfg, on_gpu),
    )


def estimate(
    cfg: Config,
    gpu_gb: float | None = None,
    *,
    prompt_tokens: int | None = None,
    logits: str = "fused",
    logits_positions: str = "completion",
    kbit_upcast: bool = True,
    vllm_available: bool | None = None,
) -> Estimate:
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
    est = Estimate(
        preset=cfg.preset.name or Path(cfg.source).stem,
        model=m.name,
        method=method_of(cfg),
        device=device,
        num_generations=t.num_generations,
        batch=t.per_device_train_batch_size,
        completion_tokens=t.max_completion_length,
        prompt_tokens=prompt_tokens if prompt_tokens is not None else prompt_tokens_for(cfg),
    )
    try:
        arch = resolve_arch(m.name, m.tiny_hidden_size, m.tiny_layers)
    except UnknownArch as e:
        est.unknown = str(e)
        return est
    s = step_of(cfg, arch, prompt_tokens, kbit_upcast)
    est.model = arch.name if m.name == TINY else m.name
    weights, grads, states = terms.weights(s), terms.gradients(s), terms.optimizer_states(s)
    ref, adapters, step_buf = terms.reference_model(s), terms.lora_adapters(s), terms.optimizer_step_buffer(s)
    acts, bwd = terms.activations(s), terms.backward_buffers(s)
    head, ctx = terms.logprob_head(s, logits, logits_positions), terms.cuda_context(s)
    gen = terms.generation(s, cfg, gpu_gb, vllm_available)
    est.terms = [x for x in (weights, ref, adapters, grads, states, acts, bwd, head, ctx, *gen.terms, step_buf) if x]
    est.notes += gen.notes
    est.vllm_gb, est.vllm_problem = gen.vllm_bytes / GiB, gen.problem

    static = sum(x.bytes for x in (weights, ref, adapters, states, ctx) if x) + gen.vllm_bytes
    # Sleep mode (level 2 in TRL 1.16) discards vLLM's weights and KV cache after generation, so its
    # reservation counts only while generating; what stays (allocator pools, CUDA graphs) is not modelled.
    sleeps = bool(gen.vllm_bytes) and t.vllm_enable_sleep_mode
    train_static = static - gen.vllm_bytes if sleeps else static
    if sleeps:
        est.notes.append("vLLM sleep mode: its reservation is freed during backward and the optimizer step")
    generating = [x.bytes for x in gen.terms if x.name != "vLLM reservation"]
    phases = {
        "generation": sum(generating, static),
        "backward": train_static + grads.bytes + acts.bytes + bwd.bytes + head.bytes,
        "optimizer step": train_static + grads.bytes + (step_buf.bytes if step_buf else 0.0),
    }
    est.phases = {k: v / GiB for k, v in phases.items()}
    est.peak_gb = max(est.phases.values())
    return est
