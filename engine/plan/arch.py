"""The numbers of a decoder-only model that its training memory depends on.

Two ways to get them, one result type:

- `arch_from_model_config`: any architecture transformers knows. The model is built from
  its config on the meta device (no memory, no weights) and its parameters are counted:
  dense or mixture-of-experts, tied or untied, whatever the layout. Needs torch.
- `dense_arch`: the Llama/Qwen2/Qwen3 layout computed from a handful of config numbers,
  without torch. It serves the offline fallback table (`model_source.FALLBACK_CONFIGS`)
  and the tiny random model; tests/test_memory_estimate.py checks that it agrees with the
  meta-device count for every entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# peft's "all-linear" adapts every nn.Linear but the output layer.
ALL_LINEAR = "all-linear"
# Number of experts and experts per token, under the names model configs use.
EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
EXPERT_TOPK_KEYS = ("num_experts_per_tok", "moe_topk", "experts_per_token", "num_experts_per_token")


@dataclass(frozen=True)
class Linear:
    """The nn.Linear modules of one name across all decoder layers (what LoRA targets by name)."""

    name: str  # e.g. "q_proj"
    in_features: int  # summed over the layers
    out_features: int  # summed over the layers


@dataclass(frozen=True)
class Arch:
    """A decoder-only model as memory sees it. For a dense model active_params == params."""

    name: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # the config's intermediate_size (one expert's for Mixtral)
    vocab: int
    tied: bool
    params: int  # every parameter: the weights in memory
    active_params: int  # what one token passes through: top-k routed + shared experts
    quantizable: int  # weights of nn.Linear modules but the LM head: what 4-bit loading packs
    layer_params: int  # the largest decoder layer, every expert: what ZeRO-3 gathers at once
    mlp_width: int  # SwiGLU width one token passes through (k experts' widths for MoE)
    linears: tuple[Linear, ...] = ()
    qk_norm: bool = False  # RMSNorm on q and k per head (Qwen3)
    experts: int = 0  # routed experts per MoE layer (0: dense)
    experts_per_token: int = 0

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def _targeted(self, targets: list[str]) -> list[Linear]:
        if targets == [ALL_LINEAR]:
            return list(self.linears)
        return [lin for lin in self.linears if lin.name in targets]

    def lora_params(self, r: int, targets: list[str]) -> int:
        """Adapter parameters: r x (in + out) for every targeted module."""
        return sum(r * (lin.in_features + lin.out_features) for lin in self._targeted(targets))

    def lora_in_features(self, targets: list[str]) -> float:
        """Per layer: input features of the adapted modules (what the adapters save per token)."""
        return sum(lin.in_features for lin in self._targeted(targets)) / self.layers


def _get(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def dense_arch(name: str, config: dict[str, Any]) -> Arch:
    """A dense Llama/Qwen2/Qwen3 decoder from its config.json numbers, counted by formula (no torch)."""
    c = config.get("text_config", config)
    h, layers, heads = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["num_attention_heads"])
    kv_heads = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or h // heads)
    i, vocab, tied = int(c["intermediate_size"]), int(c["vocab_size"]), bool(c.get("tie_word_embeddings", False))
    model_type = c.get("model_type", "llama")
    bias = bool(c.get("attention_bias", model_type == "qwen2"))
    qk_norm = model_type == "qwen3"
    q, kv = heads * hd, kv_heads * hd
    shapes = {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }
    linear = sum(a * b for a, b in shapes.values())
    layer = linear + (q + 2 * kv if bias else 0) + 2 * h + (2 * hd if qk_norm else 0)  # + biases and norms
    params = vocab * h * (1 if tied else 2) + layers * layer + h  # + the final norm
    return Arch(
        name=name,
        model_type=model_type,
        hidden=h,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=hd,
        intermediate=i,
        vocab=vocab,
        tied=tied,
        params=params,
        active_params=params,
        quantizable=layers * linear,
        layer_params=layer,
        mlp_width=i,
        qk_norm=qk_norm,
        linears=tuple(Linear(n, layers * a, layers * b) for n, (a, b) in shapes.items()),
    )


def _decoder_layers(model: Any, count: int) -> Any:
    """The ModuleList of decoder layers: the longest one with num_hidden_layers entries."""
    import torch.nn as nn

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if not lists:
        raise ValueError(f"no list of {count} decoder layers in {type(model).__name__}")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def _is_expert(param_name: str) -> bool:
    # routed experts live under an `experts` module (fused 3-D tensors or one module per expert);
    # `shared_expert(s)` run for every token and are not routed
    return ".experts." in f".{param_name}."


def _is_attention(param_name: str) -> bool:
    return any(part in param_name for part in ("attn", "attention"))


def arch_from_model_config(config: Any, name: str) -> Arch:
    """Count a transformers config's model on the meta device: total, active and quantizable parameters.

    Raises ValueError (with the reason) when transformers can't build it as a causal LM.
    """
    import torch
    import torch.nn as nn
    from transformers import AutoModelForCausalLM

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    t = text.to_dict()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    h, n_layers = int(t["hidden_size"]), int(t["num_hidden_layers"])
    layers = _decoder_layers(model, n_layers)
    experts = int(_get(t, *EXPERT_COUNT_KEYS, default=0) or 0)
    top_k = int(_get(t, *EXPERT_TOPK_KEYS, default=0) or 0)
    expert_total, mlp_active, layer_max = 0, 0.0, 0
    for layer in layers:
        layer_max = max(layer_max, sum(p.numel() for p in layer.parameters()))
        for pname, p in layer.named_parameters():
            routed = _is_expert(pname)
            expert_total += p.numel() if routed else 0
            if p.dim() >= 2 and not _is_attention(pname):
                mlp_active += p.numel() * (top_k / experts if routed and experts and top_k else 1.0)
    if not expert_total:
        experts = top_k = 0
    active = params - expert_total + round(expert_total * top_k / experts) if experts and top_k else params
    head = model.get_output_embeddings()
    linears: dict[str, list[int]] = {}
    quantizable = 0
    for mname, module in model.named_modules():
        if type(module) is nn.Linear and module is not head:  # what bitsandbytes and peft's all-linear replace
            quantizable += module.weight.numel()
            acc = linears.setdefault(mname.rsplit(".", 1)[-1], [0, 0])
            acc[0] += module.in_features
            acc[1] += module.out_features
    heads = int(t["num_attention_heads"])
    return Arch(
        name=name,
        model_type=str(t.get("model_type", "")),
        hidden=h,
        layers=n_layers,
        heads=heads,
        kv_heads=int(t.get("num_key_value_heads") or heads),
        head_dim=int(t.get("head_dim") or h // heads),
        intermediate=int(t.get("intermediate_size") or 0),
        vocab=int(t["vocab_size"]),
        tied=head is None or head.weight is model.get_input_embeddings().weight,
        params=params,
        active_params=active,
        quantizable=quantizable,
        layer_params=layer_max,
        mlp_width=round(mlp_active / (3 * h * n_layers)),  # SwiGLU: three h x width matrices
        linears=tuple(Linear(n, a, b) for n, (a, b) in linears.items()),
        qk_norm=any(pname.endswith("q_norm.weight") for pname, _ in layers[0].named_parameters()),
        experts=experts,
        experts_per_token=top_k,
    )
